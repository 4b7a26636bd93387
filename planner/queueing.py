"""Queueing math: Erlang C, M/G/c waiting-time mean and quantiles, and the decode fixed point.

This module knows nothing of LLMs.  It works in arrival rates (1/s), service times (s),
squared coefficients of variation and server counts; the search layer maps a serving
candidate onto these (prefill instances are the servers of an M/G/c queue whose service time
is a batched prefill step; decode pools use :func:`fixed_point_on_curve`).  Only the math
lives here.

Every function except :func:`fixed_point_on_curve` takes numpy arrays (or scalars) that
broadcast against each other and returns float64 arrays of the broadcast shape, with no
Python loop over elements.  An unstable queue (utilization ``rho = lambda * E[S] / c >= 1``)
is not an error: its probability of waiting is 1 and its waiting times are ``+inf``.
Numpy floating-point warnings are silenced locally where such values are produced on purpose.

``scipy.stats`` is deliberately not imported (it costs ~0.3 s of CLI start-up);
``scipy.special`` gives the same log-space Poisson terms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import gammainc, gammaincc, gammaln, hyp1f1

from planner import capped_gamma

Array = np.ndarray
ArrayLike = np.ndarray | float

#: :func:`max_arrival_rate_per_s` never returns a utilization above ``1 - STABILITY_MARGIN``.
STABILITY_MARGIN = 1e-9


def _as_float_arrays(*values: ArrayLike) -> tuple[Array, ...]:
    """Broadcast the inputs against each other as float64 arrays."""
    return tuple(np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in values)))


def log_erlang_c(servers: ArrayLike, offered_load: ArrayLike) -> Array:
    """Natural log of the M/M/c probability of waiting, ``ln C(c, a)`` (dimensionless, <= 0).

    Parameters
    ----------
    servers : array_like, shape (N,) or broadcastable
        Number of servers ``c`` (>= 1; a non-integer value uses the gamma-function continuation).
    offered_load : array_like, shape (N,) or broadcastable
        Offered load ``a = lambda * E[S]`` in erlangs (>= 0).

    Returns
    -------
    ndarray
        ``ln C(c, a)``; ``0`` (C = 1) where ``a >= c``, ``-inf`` where ``a = 0``.

    Notes
    -----
    With ``X ~ Poisson(a)`` and ``rho = a / c``,

        C(c, a) = P(X = c) / (1 - rho) / (P(X <= c - 1) + P(X = c) / (1 - rho))

    so ``ln C = -log1p(exp(ln P(X <= c-1) - ln P(X = c) + ln(1 - rho)))``, evaluated with
    ``logaddexp``.  ``ln P(X = c) = c ln a - a - ln Gamma(c + 1)`` and
    ``P(X <= c - 1) = Q(c, a)``, the regularized upper incomplete gamma function, which is
    >= e^-1 for ``a <= c`` and so never underflows.  Accurate to a few ulps of ``ln C`` from
    ``c = 1`` to beyond ``c = 10^5``, with no overflow of ``a^c / c!``.

    References
    ----------
    A. O. Allen, *Probability, Statistics, and Queueing Theory*, 2nd ed., Academic Press,
    1990, section 5.2 (M/M/c, Erlang's C formula).
    """
    c, a = _as_float_arrays(servers, offered_load)
    return _log_erlang_c(c, a, gammaln(c + 1.0))


def _log_erlang_c(c: Array, a: Array, log_c_factorial: Array) -> Array:
    """:func:`log_erlang_c` given ``ln Gamma(c + 1)`` (computed once per bisection, not per step)."""
    with np.errstate(all="ignore"):
        rho = a / c
        log_pmf_c = c * np.log(a) - a - log_c_factorial
        log_cdf_below = np.log(gammaincc(c, a))
        log_c = -np.logaddexp(0.0, log_cdf_below - log_pmf_c + np.log1p(-rho))
    return np.where(rho >= 1.0, 0.0, log_c)


def erlang_c(servers: ArrayLike, offered_load: ArrayLike) -> Array:
    """M/M/c probability that an arrival waits, ``C(c, a)`` (dimensionless, in [0, 1]).

    Parameters
    ----------
    servers : array_like, shape (N,) or broadcastable
        Number of servers ``c`` (>= 1).
    offered_load : array_like, shape (N,) or broadcastable
        Offered load ``a = lambda * E[S]`` in erlangs (>= 0).

    Returns
    -------
    ndarray
        ``C(c, a)``; exactly 1 where ``a >= c``.

    Notes
    -----
    ``exp`` of :func:`log_erlang_c`; see there for the formula.
    """
    return np.exp(log_erlang_c(servers, offered_load))


def md_c_wait_factor(servers: ArrayLike, utilization: ArrayLike) -> Array:
    """Cosmetatos's M/D/c correction ``f >= 1``: ``Wq(M/D/c) = f Wq(M/M/c) / 2`` (dimensionless).

    ``f = 1 + (1 - rho) (c - 1) (sqrt(4 + 5c) - 2) / (16 rho c)``: 1 for one server (M/D/1 is
    exactly half M/M/1), rising as the load falls and the servers grow (``+inf`` at ``rho = 0``).

    References
    ----------
    G. P. Cosmetatos, "Some approximate equilibrium results for the multi-server queue (M/G/r)",
    *Operational Research Quarterly* 27(3), 1976, pp. 615-620.
    """
    c, rho = _as_float_arrays(servers, utilization)
    with np.errstate(all="ignore"):
        return 1.0 + (1.0 - rho) / rho * _md_c_servers_term(c)


def _md_c_servers_term(c: Array) -> Array:
    """The servers' part of :func:`md_c_wait_factor`: ``(c - 1) (sqrt(4 + 5c) - 2) / (16 c)``."""
    with np.errstate(all="ignore"):
        return (c - 1.0) * (np.sqrt(4.0 + 5.0 * c) - 2.0) / (16.0 * c)


def _wait_scale_s(arrival_rate_per_s: Array, service_mean_s: Array, servers: Array,
                  arrival_cv2: Array, service_cv2: Array) -> tuple[Array, Array]:
    """Return ``(ln C, E[Wq | Wq > 0])``, the conditional mean wait in seconds (inf where rho >= 1).

    ``E[Wq | Wq > 0] = (ca2 + cs2) / 2 / (c mu - lambda) * kappa`` with Kimura's system interpolation
    between M/M/c and M/D/c (Cosmetatos) written as a factor on Allen-Cunneen:
    ``kappa = 1 / (cs2 + (1 - cs2) / f)``, ``f`` = :func:`md_c_wait_factor` (1 for cs2 = 1 or c = 1).
    The one place the waiting-time model lives: every function of this module goes through it.
    """
    lam, s, c, ca2, cs2 = _as_float_arrays(arrival_rate_per_s, service_mean_s, servers, arrival_cv2, service_cv2)
    return _wait_scale_from(lam * s, s, c, cs2, 0.5 * (ca2 + cs2) * s, gammaln(c + 1.0), _md_c_servers_term(c))


def _wait_scale_from(a: Array, s: Array, c: Array, cs2: Array, half_cv2_s: Array, log_c_factorial: Array,
                     md_c_term: Array) -> tuple[Array, Array]:
    """:func:`_wait_scale_s` at offered load ``a``, given the terms that do not depend on it."""
    with np.errstate(all="ignore"):
        rho = a / c
        f = 1.0 + (1.0 - rho) / rho * md_c_term  # md_c_wait_factor
        kappa = np.where(a > 0.0, 1.0 / (cs2 + (1.0 - cs2) / f), 1.0)  # C = 0 at a = 0: any finite kappa
        scale_s = half_cv2_s / (c - a) * kappa  # (ca2 + cs2) E[S] / 2 / (c - a)
    return _log_erlang_c(c, a, log_c_factorial), np.where(a >= c, np.inf, scale_s)


def mgc_wait_mean_s(arrival_rate_per_s: ArrayLike, service_mean_s: ArrayLike, service_cv2: ArrayLike,
                    servers: ArrayLike, arrival_cv2: ArrayLike = 1.0) -> Array:
    """Mean waiting time in queue (before service) of a GI/G/c FIFO queue, in seconds.

    Parameters
    ----------
    arrival_rate_per_s : array_like, shape (N,) or broadcastable
        Arrival rate ``lambda`` (1/s, >= 0).
    service_mean_s : array_like
        Mean service time ``E[S] = 1 / mu`` (s, > 0).
    service_cv2 : array_like
        Squared coefficient of variation of the service time ``cs2 = Var[S] / E[S]^2``
        (0 deterministic, 1 exponential).
    servers : array_like
        Number of servers ``c`` (>= 1).
    arrival_cv2 : array_like, default 1.0
        Squared coefficient of variation of the inter-arrival times ``ca2`` (1 for Poisson).

    Returns
    -------
    ndarray
        ``Wq`` in seconds; ``+inf`` where ``rho = lambda E[S] / c >= 1``.

    Notes
    -----
    Kimura's system interpolation between M/M/c and M/D/c, with Cosmetatos's M/D/c mean::

        Wq(M/M/c) = C(c, a) / (c mu - lambda)                       (exact)
        Wq(M/D/c) = f Wq(M/M/c) / 2,   f = md_c_wait_factor(c, rho)  (Cosmetatos)
        Wq        = (1 + cs2) Wq(M/M/c) Wq(M/D/c) / (2 cs2 Wq(M/D/c) + (1 - cs2) Wq(M/M/c))
                  = C(c, a) / (c mu - lambda) * (ca2 + cs2) / 2 * kappa,
        kappa     = 1 / (cs2 + (1 - cs2) / f)

    i.e. Allen-Cunneen (``kappa = 1``) times the M/D/c correction, weighted towards deterministic
    service as ``cs2 -> 0``; ``ca2`` enters as in Allen-Cunneen (the interpolation is for Poisson
    arrivals).  Exact for M/M/c (``cs2 = 1``), for M/G/1 (``f = 1``: Pollaczek-Khinchine) and so for
    M/D/1; Allen-Cunneen alone leaves out that at moderate load and ``c > 1`` the M/D/c wait is more
    than half the M/M/c one (f = 1.30 at c = 16, rho = 0.58).  Against a simulation (c = 1..256,
    rho = 0.3..0.95, gamma service of CV 0..1.4) it is within ~12 % of the simulated mean; for
    lognormal service (cs2 = 2) and c > 1 it is pessimistic by up to ~15 % at moderate load.

    References
    ----------
    T. Kimura, "Approximations for multi-server queues: system interpolations", *Queueing Systems*
    17, 1994, pp. 347-382.
    G. P. Cosmetatos, "Some approximate equilibrium results for the multi-server queue (M/G/r)",
    *Operational Research Quarterly* 27(3), 1976, pp. 615-620.
    A. O. Allen, *Probability, Statistics, and Queueing Theory*, 2nd ed., 1990, section 6.4.
    """
    log_c, scale_s = _wait_scale_s(arrival_rate_per_s, service_mean_s, servers, arrival_cv2, service_cv2)
    with np.errstate(invalid="ignore"):
        wait_s = np.exp(log_c) * scale_s
    return np.where(np.isinf(scale_s), np.inf, wait_s)


def mgc_wait_quantile_s(p: ArrayLike, arrival_rate_per_s: ArrayLike, service_mean_s: ArrayLike,
                        service_cv2: ArrayLike, servers: ArrayLike, arrival_cv2: ArrayLike = 1.0) -> Array:
    """The p-quantile of the waiting time in queue of a GI/G/c FIFO queue, in seconds.

    Parameters
    ----------
    p : array_like, shape (N,) or broadcastable
        Quantile level in (0, 1), e.g. 0.9 for p90.
    arrival_rate_per_s, service_mean_s, service_cv2, servers, arrival_cv2 : array_like
        As in :func:`mgc_wait_mean_s`.

    Returns
    -------
    ndarray
        ``t_p`` in seconds (>= 0); ``+inf`` where ``rho >= 1``.

    Notes
    -----
    The waiting time is taken as an atom at 0 of mass ``1 - C`` (Erlang C: the M/M/c probability
    of waiting, for any service law) plus an exponential conditional wait whose mean makes the
    whole mean :func:`mgc_wait_mean_s`::

        P(W > t) = C(c, a) exp(-t / m),   m = Wq / C = (ca2 + cs2) kappa / (2 (c mu - lambda))
        t_p      = max(0, ln(C / (1 - p)) * m)

    Exact for M/M/c (``P(W > t) = C exp(-(c mu - lambda) t)``).  Otherwise the exponential
    conditional wait is the heavy-traffic shape (exact as ``rho -> 1``) and Whitt's (1993)
    approximation of the conditional delay; its mean carries the M/D/c correction of
    :func:`mgc_wait_mean_s`, which Allen-Cunneen's ``m`` leaves out: with residences of CV 0.381
    over 16 slots at 9.3 erlangs that form's p99 was 26 % under a simulation, this one is 8 %
    under.  Over c = 1..256, rho = 0.3..0.95, service CV 0..1 (quantiles above 0.05 E[S]) the
    most optimistic errors for c >= 8 are -11 % (p50), -12 % (p90), -15 % (p99); with one or two
    servers and near-deterministic service the quantile near the atom is off (M/D/1 at rho = 0.6:
    p50 -40 %; the far tail is pessimistic, p99 of M/D/1 at rho = 0.3 +28 %).  It cannot represent
    the sub-exponential tail of heavy-tailed (e.g. lognormal) service at extreme quantiles.  The
    DES cross-check in ``tests/validation/test_queueing_des.py`` states the error per regime.

    Non-decreasing in ``lambda``: for ``cs2 < 1`` ``kappa`` falls with the load, but ``C`` and
    ``1 / (c mu - lambda)`` rise faster; checked on a dense grid (c = 1..16,384, cs2 = 0..10,
    p = 0.5..0.999) and by ``tests/property/test_queueing_props.py``.

    References
    ----------
    As :func:`mgc_wait_mean_s`, and W. Whitt, "Approximations for the GI/G/m queue", *Production
    and Operations Management* 2(2), 1993, pp. 114-161 (exponential approximation of the
    conditional delay).
    """
    log_c, scale_s = _wait_scale_s(arrival_rate_per_s, service_mean_s, servers, arrival_cv2, service_cv2)
    return _wait_quantile_from(np.asarray(p, dtype=np.float64), log_c, scale_s)


def _wait_quantile_from(q: Array, log_c: Array, scale_s: Array) -> Array:
    """``t_q = max(0, ln(C / (1 - q))) * scale`` (s), inf where the queue is unstable (scale inf)."""
    with np.errstate(all="ignore"):
        excess = np.maximum(log_c - np.log1p(-q), 0.0)  # ln(C / (1 - p)), 0 when C <= 1 - p
        wait_s = np.where(excess > 0.0, excess * scale_s, 0.0)
    return np.where(np.isinf(scale_s), np.inf, wait_s)


_Extra = tuple[tuple[Array, Array, Array, Array], Array, int]


def _extra_gamma(mean: Array, cv: Array, cap_sd: Array) -> _Extra:
    """X's ``((k, beta, cap, ln F), F, how)`` (:func:`planner.capped_gamma.params`; ``F`` the mass below the
    cap): ``how`` 0 where no X is capped, 1 where every X with a spread is, 2 mixed (the tail's fast paths)."""
    params = capped_gamma.params(mean, cv, cap_sd)
    capped = np.isfinite(params[2])
    how = 0 if not np.any(capped) else 1 if np.all(capped | (cv <= 0.0)) else 2
    return params, np.exp(params[3]), how


def _wait_plus_gamma_tail(t_s: Array, log_c: Array, scale_s: Array, extra: _Extra) -> Array:
    """``P(W + X > t)``: W the M/G/c wait (atom ``1 - C`` at 0, tail ``C exp(-t / scale)``), X an
    independent gamma time of shape ``k`` and rate ``beta``, truncated at ``cap`` and renormalised by
    its mass ``F`` below it (``extra``, :func:`_extra_gamma`; uncapped: ``cap = inf``, ``F = 1``).

    ``P = P(X > t) + C J`` with ``J = E[exp(-theta (t - X)); X <= t]``, ``theta = 1 / scale``.
    Uncapped: ``J = exp(-theta t) (beta / (beta - theta))^k P(k, (beta - theta) t)`` for
    ``theta < beta`` (P the regularized lower incomplete gamma function); else, with
    ``x = (theta - beta) t >= 0``, ``J = (beta t)^k exp(-beta t) / Gamma(k + 1) M(1, k + 1, -x)``
    (Kummer's function, in (0, 1]).  Capped: the integral stops at ``u = min(t, cap)``, so
    ``J = exp(-theta (t - u)) J_uncapped(u) / F`` and ``P(X > t) = max(1 - P(k, beta t) / F, 0)``.
    Both in log space.  1 where ``t <= 0`` or the queue is unstable.
    """
    (k, beta, cap_s, log_mass), mass, how = extra
    theta = 1.0 / scale_s
    d = beta - theta
    with np.errstate(all="ignore"):
        u = np.minimum(t_s, cap_s) if how else t_s  # = t_s where uncapped
        log_j_lo = -theta * u + k * (np.log(beta) - np.log(d)) + np.log(gammainc(k, d * u))
        log_j_hi = (k * np.log(beta * u) - beta * u - gammaln(k + 1.0)
                    + np.log(hyp1f1(1.0, k + 1.0, np.minimum(d, 0.0) * u)))
        log_j = np.where(d > 0.0, log_j_lo, log_j_hi)
        if how == 0:
            over = gammaincc(k, beta * t_s)
        else:
            log_j_capped = log_j - theta * (t_s - u) - log_mass
            over_capped = np.maximum(1.0 - gammainc(k, beta * t_s) / mass, 0.0)
            capped = np.isfinite(cap_s)
            log_j = log_j_capped if how == 1 else np.where(capped, log_j_capped, log_j)
            over = over_capped if how == 1 else np.where(capped, over_capped, gammaincc(k, beta * t_s))
        tail = over + np.exp(log_c + log_j)
    return np.where((t_s <= 0.0) | np.isinf(scale_s), 1.0, np.minimum(tail, 1.0))


def gamma_quantile(p: ArrayLike, mean: ArrayLike, cv: ArrayLike, cap_sd: ArrayLike = np.inf) -> Array:
    """The p-quantile of a gamma variable of the given mean and coefficient of variation (the mean where cv = 0),
    capped ``cap_sd`` standard deviations above its mean (:mod:`planner.capped_gamma`; inf: uncapped)."""
    return capped_gamma.quantile(*_as_float_arrays(p, mean, cv, cap_sd))


def mgc_wait_plus_gamma_quantile_s(p: ArrayLike, arrival_rate_per_s: ArrayLike, service_mean_s: ArrayLike,
                                   service_cv2: ArrayLike, servers: ArrayLike, extra_mean_s: ArrayLike,
                                   extra_cv: ArrayLike, arrival_cv2: ArrayLike = 1.0, iterations: int = 60, *,
                                   extra_cap_sd: ArrayLike = np.inf) -> Array:
    """The p-quantile of ``W + X`` (s): W the wait of a GI/G/c FIFO queue, X an independent gamma time.

    Parameters
    ----------
    p, arrival_rate_per_s, service_mean_s, service_cv2, servers, arrival_cv2 : array_like
        As in :func:`mgc_wait_quantile_s`.
    extra_mean_s, extra_cv : array_like
        Mean (s, > 0) and coefficient of variation (>= 0) of X; ``extra_cv = 0`` is a constant X.
    extra_cap_sd : array_like, default inf
        X's cap in standard deviations above its mean (:mod:`planner.capped_gamma`; inf: a gamma).

    Returns
    -------
    ndarray
        ``t_p`` in seconds; ``+inf`` where ``rho >= 1``.

    Notes
    -----
    W as in :func:`mgc_wait_quantile_s`; X gamma (shape ``1 / extra_cv^2``).  With X the customer's
    own service time (independent of its wait under FIFO) ``W + X`` is the sojourn time: exact for
    M/M/1 (exponential with rate ``mu - lambda``) and M/M/c (a test checks both).  The p-quantile
    of a sum is not the sum of the p-quantiles nor the waiting quantile plus the mean: for a long
    service spread (prompts of CV 0.43 over many prefill chunks) the customer's own service sets
    it.  Solved by bisection on t between ``max(w_p, x_p)`` and ``w_(1+p)/2 + x_(1+p)/2`` (union
    bound), on the closed-form tail of ``_wait_plus_gamma_tail``.
    """
    q, lam, s, cs2, c, m, v, ca2, z = _as_float_arrays(p, arrival_rate_per_s, service_mean_s, service_cv2, servers,
                                                       extra_mean_s, extra_cv, arrival_cv2, extra_cap_sd)
    if not np.any(v > 0.0):  # a constant X: the waiting quantile plus X
        return mgc_wait_quantile_s(q, lam, s, cs2, c, ca2) + m
    log_c, scale_s = _wait_scale_s(lam, s, c, ca2, cs2)
    with np.errstate(all="ignore"):
        extra = _extra_gamma(m, v, z)
        x_p = capped_gamma.quantile(q, m, v, z, extra[0])
        x_hi = capped_gamma.quantile(0.5 * (1.0 + q), m, v, z, extra[0])
        lo = np.maximum(mgc_wait_quantile_s(q, lam, s, cs2, c, ca2), x_p)
        hi = mgc_wait_quantile_s(0.5 * (1.0 + q), lam, s, cs2, c, ca2) + x_hi
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            over = _wait_plus_gamma_tail(mid, log_c, scale_s, extra) > 1.0 - q
            lo, hi = np.where(over, mid, lo), np.where(over, hi, mid)
    out = np.where(v > 0.0, hi, mgc_wait_quantile_s(q, lam, s, cs2, c, ca2) + m)
    return np.where(np.isinf(scale_s), np.inf, out)


def max_arrival_rate_per_s(wait_budget_s: ArrayLike, p: ArrayLike, service_mean_s: ArrayLike,
                           service_cv2: ArrayLike, servers: ArrayLike, iterations: int = 60, *,
                           arrival_cv2: ArrayLike = 1.0, extra_mean_s: ArrayLike = 0.0,
                           extra_cv: ArrayLike = 0.0, extra_cap_sd: ArrayLike = np.inf,
                           budget_slope_s: ArrayLike = 0.0, slope_scale: ArrayLike = 1.0) -> Array:
    """Largest arrival rate whose p-quantile waiting time (plus X) fits the budget, in 1/s.

    Parameters
    ----------
    wait_budget_s : array_like, shape (N,) or broadcastable
        Budget for the p-quantile of ``W + X`` (s; X = 0 by default: the waiting time in queue);
        may be ``+inf``.
    p : array_like
        Quantile level in (0, 1).
    service_mean_s, service_cv2, servers, arrival_cv2 : array_like
        As in :func:`mgc_wait_mean_s`.
    extra_mean_s, extra_cv : array_like, default 0
        X, an independent gamma time added to the wait (:func:`mgc_wait_plus_gamma_quantile_s`);
        with ``extra_cv = 0`` everywhere X is the constant ``extra_mean_s``, taken off the budget.
    extra_cap_sd : array_like, default inf
        X's cap in standard deviations above its mean (:mod:`planner.capped_gamma`; inf: a gamma).
    budget_slope_s, slope_scale : array_like, default 0 and 1
        A part of the budget taken by a term that grows with the load: at utilization ``rho`` the
        budget is ``wait_budget_s - budget_slope_s * min(1, slope_scale * rho)`` (non-increasing in
        ``rho``, so the feasible rates stay an interval).
    iterations : int, default 60
        Bisection steps (on the utilization in ``[0, 1 - STABILITY_MARGIN]``).

    Returns
    -------
    ndarray
        ``lambda*`` (1/s) with ``mgc_wait_quantile_s(p, lambda*, ...) <= wait_budget_s``.
        ``0`` where the budget is negative (or NaN); ``(1 - STABILITY_MARGIN) * c / E[S]``
        (the stability limit less 1e-9 relative) where even that rate meets the budget, in
        particular for a budget of ``+inf``.

    Notes
    -----
    The quantile is non-decreasing in ``lambda`` (see :func:`mgc_wait_quantile_s`), so the
    feasible rates form an interval ``[0, lambda*]``.  The bisection keeps
    a feasible lower end and an infeasible upper end for a fixed number of steps over the
    elements with a budget the stability limit misses (the Python loop is over iterations,
    never over elements).  Every element
    bisects the same dyadic grid of utilizations, so the result is exactly non-decreasing in
    the budget; it is non-decreasing in ``servers`` because at a fixed utilization the
    quantile falls as ``c`` grows.  After 60 steps the utilization is resolved to float64
    precision.
    """
    budget_s, q, s, cs2, c, ca2, m, v, z = _as_float_arrays(wait_budget_s, p, service_mean_s, service_cv2,
                                                            servers, arrival_cv2, extra_mean_s, extra_cv, extra_cap_sd)
    slope_s, slope_k = np.asarray(budget_slope_s, dtype=float), np.asarray(slope_scale, dtype=float)
    sloped = bool(np.any(slope_s != 0.0))
    spread = bool(np.any(v > 0.0))
    extra = _extra_gamma(m, v, z) if spread else None
    total_s, budget_s = budget_s, budget_s - m if np.any(m != 0.0) else budget_s  # X constant: off the budget
    # mgc_wait_quantile_s(q, rho c / s, s, cs2, c, ca2) <= budget: the same functions on the same floats,
    # with the terms that do not depend on rho computed once
    half_cv2_s, log_c_factorial, md_c_term = 0.5 * (ca2 + cs2) * s, gammaln(c + 1.0), _md_c_servers_term(c)
    terms = {"q": q, "s": s, "cs2": cs2, "c": c, "v": v, "total_s": total_s, "budget_s": budget_s,
             "half_cv2_s": half_cv2_s, "log_c_factorial": log_c_factorial, "md_c_term": md_c_term,
             "slope_s": slope_s, "slope_k": slope_k, "extra": extra}
    shape = np.broadcast_shapes(budget_s.shape, slope_s.shape, slope_k.shape)  # the result's, as the bisection's

    def meets_budget(rho: Array, t: dict[str, Any]) -> Array:  # called under np.errstate(all="ignore")
        log_c, scale_s = _wait_scale_from(rho * t["c"] / t["s"] * t["s"], t["s"], t["c"], t["cs2"], t["half_cv2_s"],
                                          t["log_c_factorial"], t["md_c_term"])
        taken = t["slope_s"] * np.minimum(1.0, t["slope_k"] * rho) if sloped else 0.0
        ok = _wait_quantile_from(t["q"], log_c, scale_s) <= t["budget_s"] - taken
        if spread:  # P(W + X > budget) <= 1 - p where X varies
            ok = np.where(t["v"] > 0.0, _wait_plus_gamma_tail(t["total_s"] - taken, log_c, scale_s, t["extra"])
                          <= 1.0 - t["q"], ok)
        return ok

    rho_max = 1.0 - STABILITY_MARGIN
    # Only the elements with a budget are priced (a negative or NaN one gives 0: 98% of the largest call of
    # an 8-pod plan), and only those the stability limit misses are bisected: every function above is
    # elementwise (the fast-path flags are the whole array's), so each element's floats are its own.
    keep = np.broadcast_to(budget_s >= 0.0, shape)
    part = _elements(terms, keep)
    with np.errstate(all="ignore"):
        at_max = meets_budget(np.full(np.count_nonzero(keep), rho_max), part)
        lo = np.zeros(len(at_max))
        todo = ~at_max
        if np.any(todo):  # where even the stability limit meets the budget the bisection is moot
            sub, n = _elements(part, todo), int(np.count_nonzero(todo))
            lo_t, hi_t = np.zeros(n), np.full(n, rho_max)
            for _ in range(iterations):
                mid = 0.5 * (lo_t + hi_t)
                ok = meets_budget(mid, sub)
                lo_t, hi_t = np.where(ok, mid, lo_t), np.where(ok, hi_t, mid)
            lo[todo] = lo_t
    rho = np.zeros(shape)
    rho[keep] = np.where(at_max, rho_max, lo)
    return rho * c / s


def _elements(terms: dict[str, Any], mask: Array) -> dict[str, Any]:
    """The elements ``mask`` of every array of ``terms`` broadcast to the mask's shape (nested tuples too;
    ints and flags kept), 1-D each."""
    def cut(x: Any) -> Any:
        if isinstance(x, tuple):
            return tuple(cut(y) for y in x)
        return np.broadcast_to(x, mask.shape)[mask] if isinstance(x, np.ndarray) else x
    return {k: cut(x) for k, x in terms.items()}


def fixed_point_on_curve(batches: Array, tpots: Array, arrival_rate_per_s: float, output_tokens: float,
                         dies: float) -> tuple[float, float]:
    """Smallest fixed point of ``b = lambda L_out TPOT(b) / dies`` on a piecewise-linear TPOT curve.

    Parameters
    ----------
    batches, tpots : array_like, shape (K,)
        Increasing batches per die (from 0) and the TPOT (s) at each; linear in between.
    arrival_rate_per_s : float
        Request arrival rate ``lambda`` to the pool (1/s, >= 0).
    output_tokens : float
        Mean tokens generated per request ``L_out`` (one decode step each).
    dies : float
        Dies sharing the load (> 0).

    Returns
    -------
    (float, float)
        ``(b, TPOT(b))``, or ``(inf, inf)`` when no fixed point lies on the curve (overloaded).

    Notes
    -----
    Each request stays ``L_out * TPOT(b)`` seconds, so by Little's law the sequences per die
    satisfy ``b = lambda * L_out * TPOT(b) / dies``; with TPOT non-decreasing in ``b``, the
    smallest fixed point is the operating point reached from an empty pool.
    Exact for the interpolated curve and free of scipy.optimize (whose import costs ~0.2 s of
    CLI start-up): on segment ``i`` with ``TPOT = t_i + s_i (b - b_i)`` the fixed point is
    ``b = c (t_i - s_i b_i) / (1 - c s_i)`` with ``c = lambda L_out / dies``; the first segment
    whose root lies inside it wins.
    """
    b = np.asarray(batches, dtype=float)
    t = np.asarray(tpots, dtype=float)
    c = arrival_rate_per_s * output_tokens / dies
    slope = np.diff(t) / np.diff(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = c * (t[:-1] - slope * b[:-1]) / (1.0 - c * slope)
    inside = (root >= b[:-1] - 1e-12) & (root <= b[1:] + 1e-12) & np.isfinite(root)
    if not inside.any():
        return np.inf, np.inf
    i = int(np.argmax(inside))
    x = float(root[i])
    return x, float(np.interp(x, b, t))
