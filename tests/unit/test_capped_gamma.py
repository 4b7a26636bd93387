"""The capped gamma (planner.capped_gamma) and the capped own-prefill time in planner.queueing.

Independent references: the truncated density integrated numerically (``scipy.integrate.quad`` over
``scipy.stats.gamma.pdf / cdf(cap)``), the convolution of the M/G/c wait with that density, and the
values the uncapped code gave before the cap existed (pinned, bit for bit).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from planner import capped_gamma as cg
from planner import goodput as gp
from planner.queueing import gamma_quantile, max_arrival_rate_per_s, mgc_wait_plus_gamma_quantile_s

# MLPerf Llama-3.1-405B and Llama-2-70B prompts (../shared/reference/mlperf/README.md): mean, CV, max
MLPERF = [(9428.6, 0.431, 19988.0), (222.3, 0.771, 1021.0)]


def _cap_sd(mean: float, cv: float, cap: float) -> float:
    return (cap / mean - 1.0) / cv


def _truncated(mean: float, cv: float, cap_sd: float):
    """(pdf, cap) of the capped gamma, from scipy.stats and the solved (k, beta) only."""
    k, beta, cap, _ = (float(x) for x in cg.params(mean, cv, cap_sd))
    dist = stats.gamma(k, scale=1.0 / beta)
    mass = dist.cdf(cap)
    return (lambda x: dist.pdf(x) / mass), cap


@pytest.mark.parametrize(("mean", "cv", "cap"), [*MLPERF, (1.0, 1.5, 8.0), (2.0, 0.2, 2.5)])
def test_the_capped_gamma_keeps_the_mean_and_cv_given(mean, cv, cap) -> None:
    pdf, c = _truncated(mean, cv, _cap_sd(mean, cv, cap))
    assert c == pytest.approx(cap, rel=1e-12)
    m0 = integrate.quad(pdf, 0.0, c, limit=200)[0]
    m1 = integrate.quad(lambda x: x * pdf(x), 0.0, c, limit=200)[0]
    m2 = integrate.quad(lambda x: x * x * pdf(x), 0.0, c, limit=200)[0]
    assert m0 == pytest.approx(1.0, rel=1e-8)
    assert m1 == pytest.approx(mean, rel=1e-8)
    assert math.sqrt(m2 / m1**2 - 1.0) == pytest.approx(cv, rel=1e-7)


@pytest.mark.parametrize(("mean", "cv", "cap"), MLPERF)
@pytest.mark.parametrize("p", [0.5, 0.9, 0.99])
def test_capped_quantiles_integrate_to_their_level(mean, cv, cap, p) -> None:
    z = _cap_sd(mean, cv, cap)
    pdf, _ = _truncated(mean, cv, z)
    x = float(cg.quantile(p, mean, cv, z))
    assert integrate.quad(pdf, 0.0, x, limit=200)[0] == pytest.approx(p, abs=1e-9)


def test_mlperf_405b_p99_prompt_is_below_the_gamma_and_the_cap() -> None:
    # uncapped gamma (shape 1 / 0.431^2 = 5.38): p99 = 21,345 tokens, above the dataset's longest (19,988);
    # capped with the same mean and CV: 19,180
    mean, cv, cap = MLPERF[0]
    z = _cap_sd(mean, cv, cap)
    k = 1.0 / cv**2
    assert float(gamma_quantile(0.99, mean, cv)) == pytest.approx(stats.gamma(k, scale=mean / k).ppf(0.99), rel=1e-10)
    assert float(gamma_quantile(0.99, mean, cv)) > cap
    assert float(gamma_quantile(0.99, mean, cv, z)) == pytest.approx(19180.3, rel=1e-5)


@pytest.mark.parametrize("cv", [0.05, 0.431, 0.771, 1.5])
@pytest.mark.parametrize("over", [1.002, 1.5, 10.0])
def test_no_quantile_is_above_the_cap(cv, over) -> None:
    z = cg.min_cap_sd(cv) * over
    p = np.array([0.5, 0.9, 0.99, 0.999999, 1.0])
    x = cg.quantile(p, 1.0, cv, z)
    assert np.all(x <= (1.0 + cv * z) * (1 + 1e-12)) and np.all(np.diff(x) > 0)
    mean, got = cg.mean_and_cv(*cg.params(1.0, cv, z)[:3])
    assert float(mean) == pytest.approx(1.0, rel=1e-9) and float(got) == pytest.approx(cv, rel=1e-7)


def test_a_far_cap_is_the_gamma_and_no_cap_is_bit_for_bit_the_gamma() -> None:
    z = np.array([40.0, np.inf])
    far, none = cg.quantile(0.99, 2.0, 0.431, z)
    k = 1.0 / 0.431**2
    assert far == pytest.approx(none, rel=1e-9)
    assert none == pytest.approx(stats.gamma(k, scale=2.0 / k).ppf(0.99), rel=1e-12)
    assert float(cg.quantile(0.99, 2.0, 0.0, 3.0)) == 2.0  # no spread: the mean, whatever the cap


def test_uncapped_queueing_equals_the_code_before_the_cap_bit_for_bit() -> None:
    # values the functions returned before input_max_tokens existed (planner/queueing.py at 8302c9d, after
    # the M/D/c correction of the wait and before the cap)
    assert float(mgc_wait_plus_gamma_quantile_s(0.99, 0.3, 1.0, 0.2, 4.0, 2.0, 0.43)) == 4.520788761027664
    assert float(mgc_wait_plus_gamma_quantile_s(0.9, 3.0, 1.0, 0.5, 4, 1.0, 0.4)) == 2.3782866927682806
    assert float(mgc_wait_plus_gamma_quantile_s(0.99, 10.0, 0.5, 0.1, 32, 3.0, 0.8)) == 11.13129590775433
    assert float(max_arrival_rate_per_s(3.0, 0.99, 1.0, 0.2, 4.0, 40, extra_mean_s=1.0, extra_cv=0.43)) == \
        2.6690418681331334
    assert float(max_arrival_rate_per_s(6.0, 0.99, 2.0, 0.145, 16.0, 40, extra_mean_s=1.0, extra_cv=0.43)) == \
        7.488387976669793
    assert float(gamma_quantile(0.99, 2.0, 0.431)) == 4.527614545428594
    assert float(mgc_wait_plus_gamma_quantile_s(0.99, 0.3, 1.0, 0.2, 4.0, 2.0, 0.43, extra_cap_sd=np.inf)) == \
        4.520788761027664


@pytest.mark.parametrize(("lam", "servers", "p"), [(0.3, 4.0, 0.99), (1.8, 4.0, 0.9), (12.0, 16.0, 0.99)])
def test_wait_plus_capped_prefill_matches_the_convolution(lam, servers, p) -> None:
    # W: atom 1 - C at 0, C theta exp(-theta w) (planner.queueing's wait); X the capped gamma, mean 1 s, CV 0.431,
    # capped at the MLPerf 405B z.  P(W + X > t) = P(X > t) + C int_0^min(t, cap) exp(-theta (t - x)) f(x) dx.
    from planner.queueing import _wait_scale_s

    s, cs2, mean, cv = 1.0, 0.2, 1.0, 0.431
    z = _cap_sd(*MLPERF[0])
    t = float(mgc_wait_plus_gamma_quantile_s(p, lam, s, cs2, servers, mean, cv, extra_cap_sd=z))
    log_c, scale = (float(a) for a in _wait_scale_s(np.array(lam), np.array(s), np.array(servers), np.array(1.0),
                                                      np.array(cs2)))
    pdf, cap = _truncated(mean, cv, z)
    upper = min(t, cap)
    above = integrate.quad(pdf, upper, cap, limit=200)[0] if t < cap else 0.0
    conv = integrate.quad(lambda x: math.exp(-(t - x) / scale) * pdf(x), 0.0, upper, limit=200)[0]
    assert above + math.exp(log_c) * conv == pytest.approx(1.0 - p, rel=1e-6)
    # the rate that just meets t as the budget is the rate asked for (at low load the quantile hardly moves
    # with the rate, so a 1e-9 looser budget moves the rate by ~1e-5)
    rate = float(max_arrival_rate_per_s(t * (1 + 1e-9), p, s, cs2, servers, 60, extra_mean_s=mean, extra_cv=cv,
                                        extra_cap_sd=z))
    assert rate == pytest.approx(lam, rel=1e-4)


def test_a_cap_shortens_the_own_prefill_and_ttft_part() -> None:
    # a prompt spanning many chunks (prefill CV = input CV): the p99 own prefill falls with the cap by the
    # quantile ratio (19,180 / 21,345 of the mean's), and the TTFT-limited rate can only rise
    class Slo:
        ttft_s, ttft_percentile, tpot_s, tpot_percentile = 6.0, 99.0, 0.175, None

    z = _cap_sd(*MLPERF[0])
    args = (0.99, 0.431, np.array([0.2]), np.array([2.0]), np.array([4.0]), np.zeros(1), 0.431)
    (_, plain), (_, capped) = gp.ttft_parts_s(*args), gp.ttft_parts_s(*args, input_cap_sd=z)
    assert float((capped / plain)[0]) == pytest.approx(
        float(cg.quantile(0.99, 1.0, 0.431, z) / gamma_quantile(0.99, 1.0, 0.431)), rel=1e-12)
    rate = [float(gp.ttft_limited_rate_per_s(Slo, 0.431, np.array([2.0]), np.array([4.0]), np.zeros(1), 0.431, cap)[0])
            for cap in (np.inf, z)]
    assert rate[1] > rate[0] > 0


def test_a_cap_closer_than_the_family_allows_is_refused() -> None:
    with pytest.raises(ValueError, match="min_cap_sd"):
        cg.shape_and_cap_rate(0.5, cg.min_cap_sd(0.5) * 0.99)
