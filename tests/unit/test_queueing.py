"""Closed-form checks of planner.queueing, worked by hand in the comments.

Reference implementations written here, independent of the module:
- ``_erlang_c_exact``: Erlang C in exact rational arithmetic (``fractions``) for c <= 50;
- ``_erlang_c_recursive``: the float Erlang B recursion ``B_k = a B_{k-1} / (k + a B_{k-1})``
  (numerically stable, O(c)) converted by ``C = B / (1 - rho (1 - B))``, for large c.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from fractions import Fraction

import numpy as np
import pytest

from planner.queueing import (
    STABILITY_MARGIN,
    erlang_c,
    fixed_point_on_curve,
    log_erlang_c,
    max_arrival_rate_per_s,
    md_c_wait_factor,
    mgc_wait_mean_s,
    mgc_wait_plus_gamma_quantile_s,
    mgc_wait_quantile_s,
)


def _erlang_c_exact(c: int, a: Fraction) -> Fraction:
    term, below = Fraction(1), Fraction(0)  # term = a^k / k!
    for k in range(c):
        below += term
        term = term * a / (k + 1)
    top = term * c / (c - a)
    return top / (below + top)


def _erlang_c_recursive(c: int, a: float) -> float:
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b / (1.0 - a / c * (1.0 - b))


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --- Erlang C -------------------------------------------------------------------------------

def test_mm1_probability_of_waiting_is_rho(no_warnings) -> None:
    # M/M/1: C(1, a) = a (PASTA: an arrival waits iff the server is busy, P = rho).
    rho = np.array([0.0, 0.1, 0.5, 0.9, 0.999])
    np.testing.assert_allclose(erlang_c(1, rho), rho, rtol=1e-14, atol=0)


def test_mm2_known_value(no_warnings) -> None:
    # c = 2, a = 1: sum_{k<2} a^k/k! = 2; a^2/2! * c/(c-a) = 0.5 * 2 = 1; C = 1 / (2 + 1) = 1/3.
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3, rel=1e-14)
    # Textbook table value C(10, 8) = 0.4092 (exact rational: 0.40918015079644...).
    assert erlang_c(10, 8.0) == pytest.approx(0.4091801507964435, rel=1e-13)


@pytest.mark.parametrize("c", [1, 2, 3, 5, 8, 13, 21, 34, 50])
def test_erlang_c_matches_exact_rational(c: int, no_warnings) -> None:
    rhos = [Fraction(1, 1000), Fraction(1, 10), Fraction(1, 2), Fraction(4, 5), Fraction(9, 10),
            Fraction(99, 100), Fraction(9999, 10000)]
    exact = np.array([float(_erlang_c_exact(c, r * c)) for r in rhos])
    got = erlang_c(c, np.array([float(r * c) for r in rhos]))
    np.testing.assert_allclose(got, exact, rtol=1e-12, atol=0)


@pytest.mark.parametrize("c", [100, 1000, 20_000, 100_000])
def test_erlang_c_matches_erlang_b_recursion_for_large_c(c: int, no_warnings) -> None:
    rhos = np.array([0.9, 0.99, 0.999, 0.9999])
    expected = np.array([_erlang_c_recursive(c, r * c) for r in rhos])
    # The recursion itself accumulates ~c ulps; 1e-9 relative is well above both errors.
    np.testing.assert_allclose(erlang_c(c, rhos * c), expected, rtol=1e-9, atol=0)


def test_huge_c_is_finite_and_a_probability(no_warnings) -> None:
    c = np.array([20_000, 20_000, 100_000, 100_000, 100_000])
    a = np.array([0.99 * 20_000, 0.5 * 20_000, 1e-3, 0.0, 99_999.0])
    got = erlang_c(c, a)
    assert np.all(np.isfinite(got)) and np.all((got >= 0) & (got <= 1))
    assert 0.0 < got[0] < 1.0
    assert got[3] == 0.0 and log_erlang_c(100_000, 0.0) == -np.inf


def test_unstable_gives_one_and_inf_without_warnings(no_warnings) -> None:
    c = np.array([1, 4, 4, 100_000, 3])
    a = np.array([1.0, 4.0, 7.5, 100_000.0, 2.0])  # rho = 1, 1, 1.875, 1, 2/3
    np.testing.assert_array_equal(erlang_c(c, a)[:4], 1.0)
    assert erlang_c(c, a)[4] < 1.0
    lam, s = a, np.ones(5)  # E[S] = 1 s, so lambda = a
    for wait in (mgc_wait_mean_s(lam, s, 1.0, c), mgc_wait_quantile_s(0.9, lam, s, 0.0, c)):
        np.testing.assert_array_equal(np.isinf(wait), [True, True, True, True, False])
    np.testing.assert_array_equal(max_arrival_rate_per_s(np.inf, 0.9, 1.0, 1.0, 0), 0.0)


def test_broadcasting_and_shapes() -> None:
    c = np.array([[1], [2], [4]])
    a = np.array([0.1, 0.5, 0.9, 0.99])
    assert erlang_c(c, a).shape == (3, 4)
    assert mgc_wait_quantile_s(np.array([0.5, 0.9]), 0.5, 1.0, 1.0, c).shape == (3, 2)
    assert erlang_c(1, 0.5).shape == ()
    scalar = np.array([[float(erlang_c(int(ci), float(ai))) for ai in a] for ci in c[:, 0]])
    np.testing.assert_array_equal(erlang_c(c, a), scalar)


# --- waiting time ---------------------------------------------------------------------------

def test_mm1_mean_wait(no_warnings) -> None:
    # mu = 2/s (E[S] = 0.5 s), lambda = 1/s: rho = 0.5, Wq = rho / (mu - lambda) = 0.5 / 1 = 0.5 s.
    lam = np.array([0.2, 1.0, 1.8])
    mu = 2.0
    expected = (lam / mu) / (mu - lam)
    np.testing.assert_allclose(mgc_wait_mean_s(lam, 1 / mu, 1.0, 1), expected, rtol=1e-13)
    assert float(mgc_wait_mean_s(1.0, 0.5, 1.0, 1)) == pytest.approx(0.5, rel=1e-14)


def test_mm2_and_mg1_mean_wait(no_warnings) -> None:
    # M/M/2, E[S] = 1 s, lambda = 1/s: Wq = C / (c mu - lambda) = (1/3) / (2 - 1) = 1/3 s.
    assert float(mgc_wait_mean_s(1.0, 1.0, 1.0, 2)) == pytest.approx(1 / 3, rel=1e-14)
    # M/D/1 (Pollaczek-Khinchine, exact): Wq = rho E[S] (1 + cs2) / (2 (1 - rho)); rho = 0.8,
    # E[S] = 2 s, cs2 = 0: 0.8 * 2 * 1 / (2 * 0.2) = 4 s.
    assert float(mgc_wait_mean_s(0.4, 2.0, 0.0, 1)) == pytest.approx(4.0, rel=1e-13)
    # No arrivals, no wait; D/D/c (ca2 = cs2 = 0) never waits while stable.
    assert float(mgc_wait_mean_s(0.0, 1.0, 1.0, 3)) == 0.0
    assert float(mgc_wait_mean_s(2.0, 1.0, 0.0, 3, arrival_cv2=0.0)) == 0.0


@pytest.mark.parametrize("p", [0.5, 0.9, 0.99])
def test_mm1_wait_quantile_exact(p: float, no_warnings) -> None:
    # M/M/1: P(W > t) = rho exp(-(mu - lambda) t), so t_p = ln(rho / (1 - p)) / (mu - lambda)
    # when rho > 1 - p and 0 otherwise.  E.g. mu = 1, rho = 0.8, p = 0.9: ln(8) / 0.2 = 10.397 s.
    mu = 1.0
    lam = np.array([0.01, 0.05, 0.3, 0.5, 0.8, 0.95, 0.999])
    rho = lam / mu
    with np.errstate(divide="ignore"):
        expected = np.where(rho > 1 - p, np.log(rho / (1 - p)) / (mu - lam), 0.0)
    np.testing.assert_allclose(mgc_wait_quantile_s(p, lam, 1 / mu, 1.0, 1), expected, rtol=1e-12, atol=1e-15)
    if p == 0.9:
        assert float(mgc_wait_quantile_s(0.9, 0.8, 1.0, 1.0, 1)) == pytest.approx(5 * math.log(8), rel=1e-13)


def test_mmc_wait_quantile_exact(no_warnings) -> None:
    # M/M/c: P(W > t) = C exp(-(c mu - lambda) t) exactly; c = 8, E[S] = 0.25 s, lambda = 28/s.
    c, s, lam, p = 8, 0.25, 28.0, 0.95
    C = _erlang_c_recursive(c, lam * s)
    expected = math.log(C / (1 - p)) / (c / s - lam)
    assert float(mgc_wait_quantile_s(p, lam, s, 1.0, c)) == pytest.approx(expected, rel=1e-12)


def test_quantile_distribution_has_the_mean_wait(no_warnings) -> None:
    # The tail is C exp(-t / theta) with theta = Wq / C, so the (1 - C/e)-quantile is theta.
    lam, s, cs2, c = np.array([9.0, 12.0, 15.0]), 1.0, np.array([0.0, 0.5, 2.0]), 16
    C = erlang_c(c, lam * s)
    theta = mgc_wait_mean_s(lam, s, cs2, c) / C
    np.testing.assert_allclose(mgc_wait_quantile_s(1 - C / math.e, lam, s, cs2, c), theta, rtol=1e-10)


def test_cosmetatos_md_c_factor_by_hand(no_warnings) -> None:
    # f = 1 + (1 - rho)(c - 1)(sqrt(4 + 5c) - 2) / (16 rho c); c = 1: f = 1 (M/D/1 = M/M/1 / 2, exact).
    # c = 16, rho = 0.58: 1 + 0.42 * 15 * (sqrt(84) - 2) / (16 * 0.58 * 16) = 1 + 45.1404 / 148.48 = 1.30401.
    np.testing.assert_array_equal(md_c_wait_factor(1, np.array([0.1, 0.5, 0.99])), 1.0)
    assert float(md_c_wait_factor(16, 0.58)) == pytest.approx(1.30401, abs=1e-5)
    assert float(md_c_wait_factor(16, 1.0)) == 1.0  # heavy traffic: M/D/c = M/M/c / 2


def test_kimura_interpolation_by_hand(no_warnings) -> None:
    # M/M/2, E[S] = 1 s, lambda = 1/s: Wq(M/M/2) = 1/3 s; f(2, 0.5) = 1 + 0.5 * (sqrt(14) - 2) / 16
    # = 1.0544268, Wq(M/D/2) = f / 2 * 1/3 = 0.1757378 s.  Kimura: Wq(M/G/2) = (1 + cs2) Wmm Wmd /
    # (2 cs2 Wmd + (1 - cs2) Wmm); cs2 = 0.5: 1.5 * (1/3) * 0.1757378 / (0.1757378 + 0.1666667) = 0.256622.
    wmm = 1 / 3
    wmd = 0.5 * wmm * (1 + 0.5 * (math.sqrt(14) - 2) / 16)
    assert wmd == pytest.approx(0.1757378, rel=1e-6)
    assert float(mgc_wait_mean_s(1.0, 1.0, 0.0, 2)) == pytest.approx(wmd, rel=1e-13)
    assert float(mgc_wait_mean_s(1.0, 1.0, 0.5, 2)) == pytest.approx(0.256622, rel=1e-5)
    kimura = (1 + 2.0) * wmm * wmd / (2 * 2.0 * wmd + (1 - 2.0) * wmm)  # cs2 = 2: extrapolated, below Allen-Cunneen
    assert float(mgc_wait_mean_s(1.0, 1.0, 2.0, 2)) == pytest.approx(kimura, rel=1e-13)
    assert kimura < 1.5 * wmm
    # Erlang C stays the probability of waiting: the tail's C/e-point is the conditional mean Wq / C
    assert float(mgc_wait_quantile_s(1 - 1 / (3 * math.e), 1.0, 1.0, 0.5, 2)) == pytest.approx(3 * 0.256622, rel=1e-5)


def test_wait_quantile_monotone_in_rate_and_servers_on_a_grid(no_warnings) -> None:
    # More load never shortens the wait (the bisection of max_arrival_rate_per_s needs it), more slots
    # at the same rate never lengthen it; dense grids, for the near-deterministic service where the
    # M/D/c factor falls with the load.
    rho = np.linspace(0.001, 0.999, 999)[:, None, None]
    cs2 = np.array([0.0, 0.145, 0.5, 1.0, 2.0])[None, :, None]
    p = np.array([0.5, 0.9, 0.99, 0.999])[None, None, :]
    for c in (1, 2, 4, 16, 64, 256, 1024):
        t = mgc_wait_quantile_s(p, rho * c, 1.0, cs2, c)
        assert np.all(np.diff(t, axis=0) >= -1e-12 * t[1:]), c
        assert np.all(np.diff(mgc_wait_mean_s(rho * c, 1.0, cs2, c), axis=0) >= 0), c
    c = np.arange(10, 200, dtype=float)[:, None, None]
    t = mgc_wait_quantile_s(p, 9.3, 1.0, cs2, c)
    assert np.all(np.diff(t, axis=0) <= 1e-12 * t[:-1])


# --- max arrival rate -----------------------------------------------------------------------

@pytest.mark.parametrize("c, cs2, p", [(1, 1.0, 0.9), (4, 0.0, 0.99), (16, 2.0, 0.5), (1000, 0.3, 0.9)])
def test_max_arrival_rate_inverts_the_quantile(c: int, cs2: float, p: float, no_warnings) -> None:
    s = 0.7
    budget = np.array([1e-3, 0.05, 0.3, 1.0, 7.0, 100.0]) * s
    lam = max_arrival_rate_per_s(budget, p, s, cs2, c)
    assert np.all(lam < c / s)
    np.testing.assert_allclose(mgc_wait_quantile_s(p, lam, s, cs2, c), budget, rtol=1e-6)


def test_max_arrival_rate_edges(no_warnings) -> None:
    c, s, p = 4, 0.5, 0.9
    lam = max_arrival_rate_per_s(np.array([-1.0, np.nan, 0.0, np.inf]), p, s, 1.0, c)
    assert lam[0] == 0.0 and lam[1] == 0.0
    # Zero budget: the quantile is 0 while C(c, a) <= 1 - p, so lambda* sits where C = 1 - p.
    assert float(erlang_c(c, lam[2] * s)) == pytest.approx(1 - p, rel=1e-9)
    # Infinite budget: the stability limit c / E[S] = 8/s less 1e-9 relative.
    assert lam[3] == (1 - STABILITY_MARGIN) * c / s


def _max_rate_whole_array(budget, p, s, cs2, c, iterations, m, v, z, slope_s, slope_k):
    """The bisection of max_arrival_rate_per_s as it was before it priced only the elements with a budget
    (every element, every step): the plain path its fast path must equal bit for bit."""
    from planner import queueing as qu

    budget, q, s, cs2, c, ca2, m, v, z = qu._as_float_arrays(budget, p, s, cs2, c, 1.0, m, v, z)
    slope_s, slope_k = np.asarray(slope_s, dtype=float), np.asarray(slope_k, dtype=float)
    sloped, spread = bool(np.any(slope_s != 0.0)), bool(np.any(v > 0.0))
    extra = qu._extra_gamma(m, v, z) if spread else None
    total, budget = budget, budget - m if np.any(m != 0.0) else budget
    half, lcf, md = 0.5 * (ca2 + cs2) * s, qu.gammaln(c + 1.0), qu._md_c_servers_term(c)

    def meets(rho):
        log_c, scale = qu._wait_scale_from(rho * c / s * s, s, c, cs2, half, lcf, md)
        taken = slope_s * np.minimum(1.0, slope_k * rho) if sloped else 0.0
        ok = qu._wait_quantile_from(q, log_c, scale) <= budget - taken
        if spread:
            ok = np.where(v > 0.0, qu._wait_plus_gamma_tail(total - taken, log_c, scale, extra) <= 1.0 - q, ok)
        return ok

    rho_max = 1.0 - STABILITY_MARGIN
    lo, hi = np.zeros_like(budget), np.full_like(budget, rho_max)
    with np.errstate(all="ignore"):
        at_max = meets(np.full_like(budget, rho_max))
        if not np.all(at_max):
            for _ in range(iterations):
                mid = 0.5 * (lo + hi)
                ok = meets(mid)
                lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
        rho = np.where(at_max, rho_max, lo)
    return np.where(budget >= 0.0, rho, 0.0) * c / s


def test_max_arrival_rate_prices_only_elements_with_a_budget_bit_for_bit() -> None:
    # Negative, NaN, zero, tiny and infinite budgets (before and after a constant X comes off them),
    # a load-dependent slope, X with and without a spread, capped and not: the elements priced alone
    # give every bit the whole-array bisection gives.
    rng = np.random.default_rng(3)
    n = 240
    budget = rng.choice([-1.0, np.nan, 0.0, 1e-4, np.inf, 0.4, 2.0, 9.0], n) * rng.uniform(0.5, 1.5, n)
    s, c = rng.uniform(0.05, 2.0, n), rng.choice([1.0, 2.0, 8.0, 64.0, 1024.0], n)
    cs2, p = rng.uniform(0.0, 2.0, n), rng.choice([0.5, 0.9, 0.99], n)
    m, v = rng.choice([0.0, 0.2, 1.0], n), np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.1, 1.2, n))
    cases = [dict(m=0.0, v=0.0, z=np.inf, slope_s=0.0, slope_k=1.0),
             dict(m=m, v=0.0, z=np.inf, slope_s=0.0, slope_k=1.0),
             dict(m=m, v=v, z=np.inf, slope_s=rng.uniform(0.0, 0.5, n), slope_k=rng.uniform(0.5, 3.0, n)),
             dict(m=m, v=v, z=np.where(rng.random(n) < 0.5, 3.0, np.inf), slope_s=0.0, slope_k=1.0),
             dict(m=m, v=v, z=4.0, slope_s=0.1, slope_k=2.0)]
    for kw in cases:
        fast = max_arrival_rate_per_s(budget, p, s, cs2, c, 40, extra_mean_s=kw["m"], extra_cv=kw["v"],
                                      extra_cap_sd=kw["z"], budget_slope_s=kw["slope_s"], slope_scale=kw["slope_k"])
        plain = _max_rate_whole_array(budget, p, s, cs2, c, 40, **kw)
        assert fast.shape == plain.shape
        assert np.array_equal(fast.view(np.int64), plain.view(np.int64))
        assert 0 < int(np.count_nonzero(fast)) < n  # both kinds of element are there
    for b in (-1.0, 0.3, np.inf):  # scalars: a 0-d result, as before
        fast, plain = max_arrival_rate_per_s(b, 0.9, 0.5, 1.0, 4.0, 40), _max_rate_whole_array(
            b, 0.9, 0.5, 1.0, 4.0, 40, 0.0, 0.0, np.inf, 0.0, 1.0)
        assert np.shape(fast) == np.shape(plain) == () and np.array_equal(np.float64(fast).view(np.int64),
                                                                            np.float64(plain).view(np.int64))
    # a scalar budget against a slope per element: the result takes the slopes' shape, as the bisection did
    slopes = np.array([0.0, 0.1, 0.3, 0.6])
    fast = max_arrival_rate_per_s(0.5, 0.9, 0.5, 1.0, 4.0, 40, budget_slope_s=slopes, slope_scale=2.0)
    plain = _max_rate_whole_array(0.5, 0.9, 0.5, 1.0, 4.0, 40, 0.0, 0.0, np.inf, slopes, 2.0)
    assert fast.shape == plain.shape == (4,) and np.array_equal(fast.view(np.int64), plain.view(np.int64))
    assert len(set(fast.tolist())) == 4


# --- wait plus an independent gamma time (the sojourn time when it is the own service) ---------

def test_mm1_sojourn_time_is_exponential(no_warnings) -> None:
    # M/M/1: the time in system W + S is exponential with rate mu - lambda (Kleinrock, Queueing
    # Systems I, eq. 3.23): t_p = -ln(1 - p) / (mu - lambda).  S exponential = gamma of CV 1.
    lam, mu, p = 0.7, 1.0, np.array([0.5, 0.9, 0.99])
    np.testing.assert_allclose(mgc_wait_plus_gamma_quantile_s(p, lam, 1 / mu, 1.0, 1, 1 / mu, 1.0),
                               -np.log1p(-p) / (mu - lam), rtol=1e-9)
    # ... and the largest rate whose p99 time in system fits T: lambda = mu - ln(100) / T (0 if negative)
    budget = np.array([4.0, 10.0, 50.0])
    lam_max = max_arrival_rate_per_s(budget, 0.99, 1 / mu, 1.0, 1, extra_mean_s=1 / mu, extra_cv=1.0)
    np.testing.assert_allclose(lam_max, np.maximum(mu - math.log(100) / budget, 0.0), rtol=1e-9, atol=1e-12)


def test_mmc_sojourn_time_closed_form(no_warnings) -> None:
    # M/M/c (Gross & Harris, Fundamentals of Queueing Theory, eq. 2.38): with a = lambda / mu, C = C(c, a),
    # P(T > t) = exp(-mu t) (1 + C (1 - exp(-mu (c - 1 - a) t)) / (c - 1 - a)); solved here by bisection.
    lam, c, mu = 3.2, 4, 1.0
    a, C = lam / mu, float(erlang_c(4, 3.2))
    for p in (0.5, 0.9, 0.99):
        lo, hi = 0.0, 100.0
        for _ in range(200):
            t = 0.5 * (lo + hi)
            tail = math.exp(-mu * t) * (1 + C * (1 - math.exp(-mu * (c - 1 - a) * t)) / (c - 1 - a))
            lo, hi = (t, hi) if tail > 1 - p else (lo, t)
        assert float(mgc_wait_plus_gamma_quantile_s(p, lam, 1 / mu, 1.0, c, 1 / mu, 1.0)) == pytest.approx(lo, rel=1e-9)


def test_wait_plus_gamma_limits(no_warnings) -> None:
    # a constant X (CV 0) adds to the waiting quantile; at zero load only X is left (its gamma quantile)
    lam, s, cs2, c = 3.0, 1.0, 0.5, 4
    assert float(mgc_wait_plus_gamma_quantile_s(0.9, lam, s, cs2, c, 2.5, 0.0)) == pytest.approx(
        float(mgc_wait_quantile_s(0.9, lam, s, cs2, c)) + 2.5, rel=1e-12)
    # X gamma of shape 4 (CV 0.5) and mean 2: its median is 2 * 3.672061 / 4 (Abramowitz & Stegun 26.4, chi^2_8)
    assert float(mgc_wait_plus_gamma_quantile_s(0.5, 0.0, s, cs2, c, 2.0, 0.5)) == pytest.approx(
        2.0 * 3.6720607 / 4.0, rel=1e-6)
    # the quantile of the sum lies between the larger of the two quantiles and their sum at (1 + p) / 2
    q = float(mgc_wait_plus_gamma_quantile_s(0.99, lam, s, cs2, c, 1.0, 0.4))
    assert max(float(mgc_wait_quantile_s(0.99, lam, s, cs2, c)), 1.0) < q
    assert q < float(mgc_wait_quantile_s(0.995, lam, s, cs2, c)) + 1.0 * (1 + 0.4 * 3.0)
    # unstable: inf
    assert np.isinf(mgc_wait_plus_gamma_quantile_s(0.9, 5.0, s, cs2, c, 1.0, 0.4))


# --- the decode fixed point -----------------------------------------------------------------

def _fixed_point_by_brent(rate: float, output_tokens: float, dies: float, tpot_of_batch, batch_cap: float,
                          cells: int = 64) -> tuple[float, float]:
    """Reference: smallest root of ``b - rate L TPOT(b) / dies`` on [0, cap], bracketed on a grid of
    ``cells`` cells and refined with Brent's method (independent of the module's closed form)."""
    from scipy.optimize import brentq

    demand = rate * output_tokens / dies

    def gap(b: float) -> float:
        return b - demand * tpot_of_batch(b)

    grid = np.linspace(0.0, batch_cap, cells + 1)
    crossed = np.flatnonzero(np.array([gap(float(b)) for b in grid]) >= 0.0)
    if crossed.size == 0:
        return np.inf, np.inf
    i = int(crossed[0])
    b = 0.0 if i == 0 else float(brentq(gap, grid[i - 1], grid[i], xtol=1e-12, rtol=4 * np.finfo(float).eps))
    return b, float(tpot_of_batch(b))


def _linear_tpot(b):
    return 0.01 + 1e-4 * b  # 10 ms base step, +0.1 ms per sequence


def test_decode_fixed_point_linear() -> None:
    # lambda = 100/s, 200 output tokens, 10 dies: b = 100 * 200 * TPOT(b) / 10 = 2000 TPOT(b)
    # = 20 + 0.2 b, so b = 25 and TPOT = 12.5 ms.  Little: 100 * 200 * 0.0125 / 10 = 25.
    batches = np.linspace(0.0, 100.0, 11)
    b, tpot = fixed_point_on_curve(batches, _linear_tpot(batches), 100.0, 200.0, 10.0)
    assert b == pytest.approx(25.0, rel=1e-10) and tpot == pytest.approx(0.0125, rel=1e-10)


def test_decode_fixed_point_overloaded_and_idle() -> None:
    upto_20 = np.linspace(0.0, 20.0, 5)
    assert fixed_point_on_curve(upto_20, _linear_tpot(upto_20), 100.0, 200.0, 10.0) == (np.inf, np.inf)
    # 2000 * 1e-4 = 0.2; with 5x the load the slope is 1: TPOT grows as fast as b, no fixed point.
    wide = np.linspace(0.0, 1e6, 5)
    assert fixed_point_on_curve(wide, _linear_tpot(wide), 500.0, 200.0, 10.0) == (np.inf, np.inf)
    assert fixed_point_on_curve(upto_20, _linear_tpot(upto_20), 0.0, 200.0, 10.0) == (0.0, 0.01)


def test_decode_fixed_point_takes_the_smallest_of_two() -> None:
    # TPOT = 0.01 + 1e-6 b^2, b = 2000 TPOT: 0.002 b^2 - b + 20 = 0,
    # b = (1 -/+ sqrt(1 - 0.16)) / 0.004 = 20.87 or 479.1; the pool settles at the smaller one.
    # Knots every 0.5 sequences: the chord is within 2e-6 * 0.5^2 / 8 = 6.25e-8 s of the parabola,
    # which moves the root by at most 2000 * 6.25e-8 / (1 - 2000 * 2e-6 * 20.87) = 1.4e-4 (7e-6 relative).
    batches = np.linspace(0.0, 1000.0, 2001)
    b, tpot = fixed_point_on_curve(batches, 0.01 + 1e-6 * batches**2, 100.0, 200.0, 10.0)
    assert b == pytest.approx((1 - math.sqrt(0.84)) / 0.004, rel=1e-5)
    assert _fixed_point_by_brent(100.0, 200.0, 10.0, lambda x: 0.01 + 1e-6 * x * x, 1000.0)[0] == \
        pytest.approx((1 - math.sqrt(0.84)) / 0.004, rel=1e-10)


def test_import_is_light() -> None:
    """scipy.stats and scipy.optimize stay out of the import path (CLI start-up time).

    A fresh interpreter: in the test process other tests have loaded scipy.stats already.
    """
    code = ("import sys, planner.queueing; "
            "print(sorted(m for m in ('scipy.stats', 'scipy.optimize') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_fixed_point_on_a_linear_tpot_curve():
    # TPOT(b) = 0.02 + 0.001 b; demand c = lambda L / dies = 10 * 100 / 50 = 20 per second of TPOT.
    # b = 20 (0.02 + 0.001 b)  ->  b (1 - 0.02) = 0.4  ->  b = 0.4 / 0.98.
    batches = np.linspace(0.0, 64.0, 9)
    tpots = 0.02 + 0.001 * batches
    b, tpot = fixed_point_on_curve(batches, tpots, 10.0, 100.0, 50.0)
    assert b == pytest.approx(0.4 / 0.98, rel=1e-12)
    assert tpot == pytest.approx(0.02 + 0.001 * 0.4 / 0.98, rel=1e-12)


def test_fixed_point_on_curve_agrees_with_the_general_solver():
    batches = np.array([0.0, 8.0, 16.0, 32.0, 64.0])
    tpots = np.array([0.010, 0.012, 0.016, 0.030, 0.070])
    for rate in (100.0, 400.0, 900.0):
        a = fixed_point_on_curve(batches, tpots, rate, 50.0, 10.0)
        b = _fixed_point_by_brent(rate, 50.0, 10.0, lambda x: float(np.interp(x, batches, tpots)), 64.0)
        assert a[0] == pytest.approx(b[0], rel=1e-9) and a[1] == pytest.approx(b[1], rel=1e-9)


def test_fixed_point_on_curve_overloaded_is_inf():
    b, tpot = fixed_point_on_curve(np.array([0.0, 10.0]), np.array([0.05, 0.06]), 1e6, 100.0, 1.0)
    assert b == np.inf and tpot == np.inf
