"""A gamma distribution capped at a maximum: truncated at the cap and renormalised, of a given mean and CV.

Request lengths are modelled as gamma of the workload's mean and coefficient of variation; a
dataset with a longest request (MLPerf caps its prompts) has no mass above it.  The mean and CV
a dataset states are those of the capped data, so both are kept: the shape ``k`` and rate
``beta`` of the untruncated gamma are re-solved so that, truncated at the cap and renormalised,
it has that mean and CV.  Only the shape of the tail changes (its quantiles, its mass above a
time), never the two moments the rest of the planner reads.

Parameterised by the mean ``m``, the CV ``v`` and the cap in standard deviations above the mean,
``z = (cap / m - 1) / v``: an affine map of the length (a prefill time linearised in the prompt)
keeps ``z``, so one ``z`` serves every time derived from the prompt length.  ``z = inf`` is the
gamma itself (shape ``1 / v^2``, rate ``k / m``), computed as before the cap existed.

Notes
-----
With ``y = beta * cap`` (P the regularised lower incomplete gamma function, M Kummer's function;
``P(a, y) = y^a e^-y M(1, a + 1, y) / Gamma(a + 1)``, DLMF 8.5.1):

- mass below the cap: ``F = P(k, y)``;
- ``E[X] / cap = (k / y) P(k + 1, y) / P(k, y) = k / (k + 1) M(1, k + 2, y) / M(1, k + 1, y)``;
- ``E[X^2] / cap^2 = k (k + 1) / y^2 P(k + 2, y) / P(k, y) = k / (k + 2) M(1, k + 3, y) / M(1, k + 1, y)``;
- p-quantile: ``gammaincinv(k, p F) / beta`` (never above the cap).

The Kummer forms hold where ``P(k, y)`` would underflow (the cap far below the gamma's bulk).
Existence: as ``y -> 0`` the truncated gamma tends to the power law ``x^(k-1)`` on ``[0, cap]``
(mean ``k / (k + 1)`` of the cap, CV^2 ``1 / (k (k + 2))``), the most spread member of the family
at a given mean and cap; so a capped gamma of CV ``v`` needs ``z > v + sqrt(1 + v^2)``
(:func:`min_cap_sd`): a cap closer to the mean than that, at that CV, is no gamma's (two spikes,
e.g. a two-bin histogram, can be).  Along the curve of mean ``m`` the CV falls monotonically from
that limit to 0 as ``k`` grows (checked numerically over ``v`` = 0.02-3 and caps 1.001-10x the
smallest), so the solution is unique: Newton's method on ``(log k, log y)`` from the uncapped gamma
finds it (~1 ms), and nested bisection (on ``log k`` for the CV, inside it on ``log(y / k)`` for the
mean) where Newton does not converge (caps within ~5% of the smallest).

References: N. L. Johnson, S. Kotz, N. Balakrishnan, Continuous Univariate Distributions vol. 1,
2nd ed., Wiley 1994, ch. 17 (truncated gamma); DLMF 8.5.1 (incomplete gamma as Kummer's function).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammainc, gammaincinv, gammaln, hyp1f1

Array = np.ndarray
ArrayLike = np.ndarray | float

# Bisection steps: log k spans < 40 and log(y / k) < 30, so 2**-60 of it is below float64 resolution.
_STEPS = 60
# Newton steps of :func:`_solve` (converged in ~6 from the uncapped gamma for caps >= ~1.2x the smallest).
_NEWTON_STEPS = 12
# Solved (k, y) by (cv, cap_sd): a plan asks for the same few prefill CVs at one cap many times.  Emptied
# when it reaches _SOLVED_MAX entries, so a long-lived process (a test session, a service) stays bounded.
_SOLVED: dict[tuple[float, float], tuple[float, float]] = {}
_SOLVED_MAX = 4096


def min_cap_sd(cv: float) -> float:
    """The cap (standard deviations above the mean) below which no capped gamma has CV ``cv``: ``v + sqrt(1 + v^2)``."""
    return float(cv + np.sqrt(1.0 + cv * cv))


def _moments_over_cap(k: Array, y: Array) -> tuple[Array, Array]:
    """``(E[X] / cap, E[X^2] / cap^2)`` of a gamma of shape ``k`` truncated at ``y`` over its rate."""
    series = y < k
    ys, yi = np.where(series, y, 0.0), np.where(series, k, y)  # each form only where it is used (M slows at large y)
    with np.errstate(all="ignore"):
        m0 = hyp1f1(1.0, k + 1.0, ys)
        kummer = (k / (k + 1.0) * hyp1f1(1.0, k + 2.0, ys) / m0, k / (k + 2.0) * hyp1f1(1.0, k + 3.0, ys) / m0)
        p0 = gammainc(k, yi)
        incomplete = (k / yi * gammainc(k + 1.0, yi) / p0, k * (k + 1.0) / yi**2 * gammainc(k + 2.0, yi) / p0)
    return np.where(series, kummer[0], incomplete[0]), np.where(series, kummer[1], incomplete[1])


def _cap_rate(k: Array, u: Array) -> Array:
    """``y = beta cap`` at which the gamma of shape ``k`` truncated at ``cap = u E[X]`` has mean ``E[X]``."""
    lo, hi = np.full_like(k, np.log(1e-12)), np.log(2.0 * u + 10.0)  # m1 ~ k/(k+1) > 1/u at lo; < 1/u at hi
    for _ in range(_STEPS):
        mid = 0.5 * (lo + hi)
        m1, _ = _moments_over_cap(k, k * np.exp(mid))
        high = ~(m1 <= 1.0 / u)  # the mean too close to the cap: move the cap out
        lo, hi = np.where(high, mid, lo), np.where(high, hi, mid)
    return k * np.exp(0.5 * (lo + hi))


def _bisect(cv: Array, cap_sd: Array) -> tuple[Array, Array]:
    """Shape ``k`` and ``y = beta cap`` by nested bisection (robust; the fallback of :func:`_solve`)."""
    u = 1.0 + cv * cap_sd
    ratio = 1.0 + cv * cv  # E[X^2] / E[X]^2
    lo, hi = np.log(1.0 / (u - 1.0)), np.log(100.0 / (cv * cv) + 100.0)
    for _ in range(_STEPS):
        mid = 0.5 * (lo + hi)
        k = np.exp(mid)
        m1, m2 = _moments_over_cap(k, _cap_rate(k, u))
        spread = ~(m2 / (m1 * m1) <= ratio)  # too spread: a larger shape
        lo, hi = np.where(spread, mid, lo), np.where(spread, hi, mid)
    k = np.exp(0.5 * (lo + hi))
    return k, _cap_rate(k, u)


def _residual(x: Array, u: Array, ratio: Array) -> Array:
    """Relative misfit of (mean, E[X^2]) at ``x = (log k, log y)``, shape (2, n)."""
    m1, m2 = _moments_over_cap(np.exp(x[0]), np.exp(x[1]))
    return np.stack([m1 * u - 1.0, m2 * u * u / ratio - 1.0])


def _solve(cv: Array, cap_sd: Array) -> tuple[Array, Array]:
    """Shape ``k`` and ``y = beta cap`` of the capped gamma of CV ``cv`` and cap ``cap_sd`` (finite, feasible).

    Newton's method on ``(log k, log y)`` from the uncapped gamma (``k = 1 / v^2``, ``y = k u``), with a
    finite-difference Jacobian and steps of at most 1 in either coordinate; pairs it leaves with a
    relative misfit above 1e-12 (caps near :func:`min_cap_sd`) are solved by nested bisection.
    """
    u = 1.0 + cv * cap_sd
    ratio = 1.0 + cv * cv
    k0 = 1.0 / (cv * cv)
    x = np.stack([np.log(k0), np.log(k0 * u)])
    h = 1e-7  # finite-difference step in log k and log y: ~sqrt(float64 eps), the usual forward-difference choice
    with np.errstate(all="ignore"):
        for _ in range(_NEWTON_STEPS):
            f = _residual(x, u, ratio)
            jk = (_residual(x + [[h], [0.0]], u, ratio) - f) / h
            jy = (_residual(x + [[0.0], [h]], u, ratio) - f) / h
            det = jk[0] * jy[1] - jy[0] * jk[1]
            step = np.stack([(f[0] * jy[1] - jy[0] * f[1]) / det, (jk[0] * f[1] - f[0] * jk[1]) / det])
            step = np.where(np.isfinite(step), np.clip(step, -1.0, 1.0), 0.0)
            x = x - step
        ok = np.all(np.abs(_residual(x, u, ratio)) < 1e-12, axis=0)
    k, y = np.exp(x[0]), np.exp(x[1])
    if not np.all(ok):
        kb, yb = _bisect(cv[~ok], cap_sd[~ok])
        k[~ok], y[~ok] = kb, yb
    return k, y


def shape_and_cap_rate(cv: ArrayLike, cap_sd: ArrayLike) -> tuple[Array, Array]:
    """Shape ``k`` of the untruncated gamma and ``y = beta * cap``, arrays of the broadcast shape.

    ``(1 / v^2, inf)`` where the cap is infinite (no cap) or ``cv = 0`` (a constant: nothing to cap).
    Solved once per distinct ``(cv, cap_sd)`` pair (vectorized over the pairs not seen before).
    """
    v, z = np.broadcast_arrays(np.asarray(cv, dtype=np.float64), np.asarray(cap_sd, dtype=np.float64))
    with np.errstate(divide="ignore"):
        k, y = np.array(1.0 / v**2, dtype=np.float64), np.full(v.shape, np.inf)
    capped = np.isfinite(z) & (v > 0.0)
    if not np.any(capped):
        return k, y
    vc, zc = v[capped], z[capped]
    if np.all(zc == zc[0]):  # one cap for every candidate (a scenario's): a 1-d unique is ~10x faster
        uv, index = np.unique(vc, return_inverse=True)
        pairs = np.stack([uv, np.full(uv.shape, zc[0])], axis=1)
    else:
        pairs, index = np.unique(np.stack([vc, zc], axis=1), axis=0, return_inverse=True)
    new = np.array([p for p in pairs.tolist() if tuple(p) not in _SOLVED]).reshape(-1, 2)
    if len(new):
        if np.any(new[:, 1] <= [min_cap_sd(c) for c in new[:, 0]]):
            raise ValueError("a cap closer to the mean than min_cap_sd(cv): no gamma capped there has that CV")
        ks, ys = _solve(new[:, 0], new[:, 1])
        if len(_SOLVED) + len(new) > _SOLVED_MAX:
            _SOLVED.clear()
        pairs_new = zip(new.tolist(), ks.tolist(), ys.tolist(), strict=True)
        _SOLVED.update({(a, b): (kk, yy) for (a, b), kk, yy in pairs_new})
    solved = np.array([_SOLVED[(a, b)] for a, b in pairs.tolist()])[index.reshape(-1)]
    k[capped], y[capped] = solved[:, 0], solved[:, 1]
    return k, y


def params(mean: ArrayLike, cv: ArrayLike, cap_sd: ArrayLike) -> tuple[Array, Array, Array, Array]:
    """``(k, beta, cap, log F)``: shape, rate (1/unit of ``mean``), cap and log of the mass below it.

    Uncapped: ``(1 / v^2, k / m, inf, 0)``, the same floats as the gamma of mean ``m`` and CV ``v``.
    """
    m, v, z = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (mean, cv, cap_sd)))
    k, y = shape_and_cap_rate(v, z)
    finite = np.isfinite(y)
    with np.errstate(all="ignore"):
        cap = np.where(finite, m * (1.0 + v * z), np.inf)
        beta = np.where(finite, y / cap, k / m)
        if not np.any(finite):
            return k, beta, cap, np.zeros(np.shape(y))
        series = finite & (y < k)
        ys, yi = np.where(series, y, 0.0), np.where(finite & ~series, y, 1.0)
        log_mass = np.where(series, k * np.log(ys) - ys - gammaln(k + 1.0) + np.log(hyp1f1(1.0, k + 1.0, ys)),
                            np.log(gammainc(k, yi)))
    return k, beta, cap, np.where(finite, log_mass, 0.0)


def quantile(p: ArrayLike, mean: ArrayLike, cv: ArrayLike, cap_sd: ArrayLike,
             given: tuple[Array, Array, Array, Array] | None = None) -> Array:
    """The p-quantile of the capped gamma (the gamma's where uncapped; the mean where ``cv = 0``).

    ``given``: :func:`params` of ``(mean, cv, cap_sd)`` when the caller has them already.
    """
    q, m, v, z = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (p, mean, cv, cap_sd)))
    k, beta, cap, log_mass = params(m, v, z) if given is None else given
    with np.errstate(all="ignore"):
        plain = gammaincinv(k, q) * m / k
        if not np.any(np.isfinite(cap)):
            return np.where(v > 0.0, plain, m)
        capped = np.minimum(gammaincinv(k, q * np.exp(log_mass)) / beta, cap)
    return np.where(v > 0.0, np.where(np.isfinite(cap), capped, plain), m)


def mean_and_cv(k: ArrayLike, beta: ArrayLike, cap: ArrayLike) -> tuple[Array, Array]:
    """Mean and CV of the gamma of shape ``k`` and rate ``beta`` truncated at ``cap`` (inf: not truncated)."""
    k, beta, cap = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (k, beta, cap)))
    m1, m2 = _moments_over_cap(k, beta * cap)
    finite = np.isfinite(cap)
    mean = np.where(finite, m1 * cap, k / beta)
    with np.errstate(invalid="ignore"):
        cv = np.where(finite, np.sqrt(np.maximum(m2 / (m1 * m1) - 1.0, 0.0)), 1.0 / np.sqrt(k))
    return mean, cv
