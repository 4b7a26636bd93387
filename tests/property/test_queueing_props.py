"""Hypothesis invariants of planner.queueing.

The profile is registered here (tests/conftest.py belongs to another module) and applied per
test as a decorator, so it does not change the global hypothesis settings.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.queueing import (
    erlang_c,
    max_arrival_rate_per_s,
    mgc_wait_mean_s,
    mgc_wait_quantile_s,
)

settings.register_profile("queueing-ci", derandomize=True, database=None, deadline=None, max_examples=200,
                          suppress_health_check=[HealthCheck.too_slow])
CI = settings.get_profile("queueing-ci")

# Floating-point slack for comparisons between two separately rounded evaluations.
REL = 1e-9

servers = st.integers(min_value=1, max_value=100_000)
small_servers = st.integers(min_value=1, max_value=2_000)
utilization = st.floats(min_value=0.0, max_value=0.9999)
quantile_level = st.floats(min_value=0.01, max_value=0.999)
service_s = st.floats(min_value=1e-4, max_value=100.0)
cv2 = st.floats(min_value=0.0, max_value=4.0)
budget_s = st.floats(min_value=0.0, max_value=1e3)


@CI
@given(c=servers, load_per_server=st.floats(min_value=0.0, max_value=3.0))
def test_erlang_c_is_a_probability(c: int, load_per_server: float) -> None:
    value = float(erlang_c(c, load_per_server * c))
    assert 0.0 <= value <= 1.0
    if load_per_server >= 1.0 + 1e-12:
        assert value == 1.0  # unstable: every arrival waits


@CI
@given(c=servers, r1=utilization, r2=utilization)
def test_erlang_c_non_decreasing_in_load(c: int, r1: float, r2: float) -> None:
    lo, hi = sorted((r1 * c, r2 * c))
    assert float(erlang_c(c, lo)) <= float(erlang_c(c, hi)) * (1 + REL)


@CI
@given(c=servers, extra=st.integers(min_value=1, max_value=1_000), rho=utilization)
def test_more_servers_lower_erlang_c(c: int, extra: int, rho: float) -> None:
    a = rho * c  # fixed total offered load: adding servers lowers the probability of waiting
    assert float(erlang_c(c + extra, a)) <= float(erlang_c(c, a)) * (1 + REL)
    # fixed utilization: a bigger pool at the same rho also waits less (economy of scale)
    assert float(erlang_c(c + extra, rho * (c + extra))) <= float(erlang_c(c, a)) * (1 + REL)


@CI
@given(c=small_servers, r1=utilization, r2=utilization, s=service_s, cs2=cv2, p=quantile_level)
def test_wait_non_decreasing_in_arrival_rate(c: int, r1: float, r2: float, s: float, cs2: float,
                                             p: float) -> None:
    lam = np.array(sorted((r1, r2))) * c / s
    mean = mgc_wait_mean_s(lam, s, cs2, c)
    quantile = mgc_wait_quantile_s(p, lam, s, cs2, c)
    assert mean[0] <= mean[1] * (1 + REL) and quantile[0] <= quantile[1] * (1 + REL)
    assert np.all(mean >= 0) and np.all(quantile >= 0)


@CI
@given(c=small_servers, rho=utilization, s=service_s, cs2=cv2, p1=quantile_level, p2=quantile_level)
def test_wait_quantile_non_decreasing_in_p(c: int, rho: float, s: float, cs2: float, p1: float,
                                           p2: float) -> None:
    q = mgc_wait_quantile_s(np.array(sorted((p1, p2))), rho * c / s, s, cs2, c)
    assert q[0] <= q[1] * (1 + REL)


@CI
@given(c=small_servers, b1=budget_s, b2=budget_s, s=service_s, cs2=cv2, p=quantile_level)
def test_max_arrival_rate_non_decreasing_in_budget(c: int, b1: float, b2: float, s: float, cs2: float,
                                                   p: float) -> None:
    budget = np.array(sorted((b1, b2)) + [np.inf]) * s
    lam = max_arrival_rate_per_s(budget, p, s, cs2, c)
    assert lam[0] <= lam[1] <= lam[2]  # exact: every element bisects the same dyadic grid
    assert np.all(lam < c / s)
    assert np.all(mgc_wait_quantile_s(p, lam, s, cs2, c) <= budget * (1 + REL))


@CI
@given(c=small_servers, b=budget_s, s=service_s, cs2=cv2, p=quantile_level,
       slope1=st.floats(min_value=0.0, max_value=10.0), slope2=st.floats(min_value=0.0, max_value=10.0),
       scale=st.floats(min_value=0.0, max_value=5.0))
def test_max_arrival_rate_with_a_budget_that_shrinks_with_load(c: int, b: float, s: float, cs2: float, p: float,
                                                               slope1: float, slope2: float, scale: float) -> None:
    # The budget at utilization rho is b - slope * min(1, scale * rho) (a term that grows with the load, such as
    # the step boundaries of planner.goodput.prefill_queue): the rate meets that budget where it is positive,
    # a larger slope never raises it, and a zero slope is the plain call, bit for bit.
    budget = b * s
    lo, hi = sorted((slope1 * s, slope2 * s))
    lam = max_arrival_rate_per_s(np.array([budget, budget, budget]), p, s, cs2, c,
                                 budget_slope_s=np.array([0.0, lo, hi]), slope_scale=scale)
    assert lam[0] == max_arrival_rate_per_s(budget, p, s, cs2, c)
    assert lam[2] <= lam[1] <= lam[0]
    rho = lam * s / c
    left = budget - np.array([0.0, lo, hi]) * np.minimum(1.0, scale * rho)
    assert np.all(mgc_wait_quantile_s(p, lam, s, cs2, c)[lam > 0] <= left[lam > 0] * (1 + REL) + 1e-12)


@CI
@given(c=small_servers, extra=st.integers(min_value=1, max_value=100), b=budget_s, s=service_s, cs2=cv2,
       p=quantile_level)
def test_max_arrival_rate_non_decreasing_in_servers(c: int, extra: int, b: float, s: float, cs2: float,
                                                    p: float) -> None:
    lam = max_arrival_rate_per_s(b * s, p, s, cs2, np.array([c, c + extra]))
    assert lam[0] <= lam[1] * (1 + REL)


@CI
@given(c=st.lists(small_servers, min_size=1, max_size=8), rho=utilization, s=service_s, cs2=cv2,
       p=quantile_level)
def test_vector_equals_scalar(c: list[int], rho: float, s: float, cs2: float, p: float) -> None:
    lam = rho * np.array(c) / s
    vector = mgc_wait_quantile_s(p, lam, s, cs2, np.array(c))
    scalar = [float(mgc_wait_quantile_s(p, float(li), s, cs2, ci)) for li, ci in zip(lam, c, strict=True)]
    np.testing.assert_array_equal(vector, scalar)
