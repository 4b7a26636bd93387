"""Hypothesis invariants of the expert-load model (planner/cost/expert_load.py) and of the step
times it feeds:

- ``perfect`` gives exactly 1;
- more redundant experts never raise the busiest die's load, and it moves continuously with R
  (no cliffs), for the fitted skew and for random measured matrices;
- more tokens per step never raise it, and it tends to the placement residual as they grow;
- a longer rebalance period never lowers it;
- N candidates in one array call give the same values as N calls of one candidate;
- a measured uniform matrix prices a step like ``perfect``, within the sampling noise.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cost import expert_load as el
from planner.inputs.expert_load import ExpertLoad, Policy, load_params
from planner.inputs.scenario import build_scenario, scenario_overrides
from planner.serving.context import Env
from planner.serving.prefill import PrefillArrays, prefill_step

settings.register_profile("expert-load-ci", derandomize=True, deadline=None, max_examples=60, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
CI = settings.get_profile("expert-load-ci")
PARAMS = load_params()
E, K = 256, 8


@st.composite
def loads(draw: st.DrawFn) -> ExpertLoad:
    """The fitted skew under eplb / none / measured-like policies, or a random measured matrix."""
    policy = draw(st.sampled_from([Policy.EPLB, Policy.NONE, Policy.MEASURED]))
    counts = None
    if policy == Policy.MEASURED or draw(st.booleans()):
        seed = draw(st.integers(0, 2**31 - 1))
        rng = np.random.default_rng(seed)
        sigma = draw(st.floats(0.0, 2.5))
        counts = np.floor(rng.lognormal(0.0, sigma, size=(4, E)) * 100.0) + draw(st.sampled_from([0.0, 1.0]))
        counts[:, 0] += 1.0  # every layer routes some tokens
    return ExpertLoad(policy=policy, params=PARAMS, rebalance_period_s=draw(st.sampled_from([0.0, 60.0, 600.0])),
                      counts=counts)


EP = st.sampled_from([1, 2, 8, 16, 32, 36, 64, 128, 256, 288])
COPIES = st.floats(0.05, 1e7)


def ratio(lo: ExpertLoad, ep: float, red: np.ndarray, c: float | np.ndarray) -> np.ndarray:
    red = np.asarray(red, dtype=float)
    shape = np.broadcast_shapes(red.shape, np.shape(c))
    return el.busiest_die_ratio(lo, experts=E, top_k=K, ep=np.full(shape, float(ep)), redundant=red,
                                copies_per_die=np.broadcast_to(c, shape))


@CI
@given(ep=EP, c=COPIES)
def test_perfect_is_one(ep: int, c: float) -> None:
    lo = ExpertLoad(policy=Policy.PERFECT, params=PARAMS, rebalance_period_s=60.0)
    assert np.all(ratio(lo, ep, np.arange(0.0, 300.0, 7.0), c) == 1.0)


@CI
@given(lo=loads(), ep=EP, c=COPIES)
def test_non_increasing_in_redundant_experts(lo: ExpertLoad, ep: int, c: float) -> None:
    """Every replica count from 0 to 320: more replicas never raise the busiest die's load."""
    r = ratio(lo, ep, np.arange(0.0, 321.0), c)
    assert np.all(r >= 1.0)
    assert np.all(np.diff(r) <= 1e-9 * r[:-1]), np.diff(r).max()


@CI
@given(policy=st.sampled_from([Policy.EPLB, Policy.MEASURED]), period=st.sampled_from([0.0, 60.0, 600.0]), ep=EP)
def test_continuous_in_redundant_experts(policy: Policy, period: float, ep: int) -> None:
    """The fitted skew's placement residual as a function of a continuous replica count:
    non-increasing, and continuous: halving the grid step (1/8 -> 1/16 of a replica) roughly halves
    the largest change between neighbours, which a jump (the old greedy packing's cliffs) would not.
    (A measured matrix of nearly equal counts is continuous too, but steep within 1/100 of a replica:
    the monotonicity test above covers matrices.)"""
    lo = ExpertLoad(policy=policy, params=PARAMS, rebalance_period_s=period)
    shares, weights = el.layer_shares(lo, experts=E, top_k=K)

    def largest_step(r: np.ndarray) -> float:
        assert np.all(np.diff(r) <= 1e-9 * r[:-1]), np.diff(r).max()
        return float(np.abs(np.diff(r)).max(initial=0.0))

    # The 1/8 grid is every other point of the 1/16 grid (k/16 is exact in binary): price the fine
    # grid once and take the coarse one from it, the same values as pricing both.
    r = np.array([weights @ el.placement_residual(lo, shares, ep, x) for x in np.arange(0.0, 64.0, 0.0625)])
    coarse, fine = largest_step(r[::2]), largest_step(r)
    assert fine <= 0.6 * coarse + 1e-12, (coarse, fine)


@CI
@given(lo=loads(), ep=EP, red=st.sampled_from([0, 16, 32, 64, 256]))
def test_tends_to_the_placement_residual_as_tokens_grow(lo: ExpertLoad, ep: int, red: int) -> None:
    """Non-increasing in the copies per die; at 1e9 copies the sampling excess z / sqrt(c) is below
    1e-4, so the ratio is the placement residual (weighted over layers) within that."""
    c = 10 ** np.linspace(-1.0, 9.0, 81)
    r = ratio(lo, ep, np.full(c.shape, float(red)), c)
    assert np.all(np.diff(r) <= 1e-9 * r[:-1])
    shares, weights = el.layer_shares(lo, experts=E, top_k=K)
    residual = weights @ el.placement_residual(lo, shares, ep, red)
    assert abs(r[-1] - residual) <= 1e-4 * residual + 1e-12


@CI
@given(ep=EP, red=st.sampled_from([0, 32, 128]), c=COPIES)
def test_longer_rebalance_period_never_helps(ep: int, red: int, c: float) -> None:
    values = [ratio(ExpertLoad(policy=Policy.EPLB, params=PARAMS, rebalance_period_s=t), ep, np.array([red]), c)[0]
              for t in (0.0, 10.0, 60.0, 600.0, 86400.0)]
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:], strict=False)), values


@CI
@given(lo=loads(), data=st.data())
def test_vector_equals_scalar(lo: ExpertLoad, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 12))
    ep = np.array(data.draw(st.lists(EP, min_size=n, max_size=n)), dtype=float)
    red = np.array(data.draw(st.lists(st.sampled_from([0, 16, 32, 64]), min_size=n, max_size=n)), dtype=float)
    c = np.array(data.draw(st.lists(COPIES, min_size=n, max_size=n)))
    vector = el.busiest_die_ratio(lo, experts=E, top_k=K, ep=ep, redundant=red, copies_per_die=c)
    scalar = [el.busiest_die_ratio(lo, experts=E, top_k=K, ep=ep[i:i + 1], redundant=red[i:i + 1],
                                   copies_per_die=c[i:i + 1])[0] for i in range(n)]
    np.testing.assert_allclose(vector, scalar, rtol=1e-13)


@CI
@given(ep=st.sampled_from([8, 16, 32, 64]), batch_tokens=st.sampled_from([4096, 16384]), m=st.sampled_from([1, 2]))
def test_measured_uniform_matrix_prices_like_perfect(ep: int, batch_tokens: int, m: int) -> None:
    """A prefill step (DeepSeek-V3 on H800) with a measured uniform matrix against perfect balance:
    the only difference is the per-step sampling noise, the busiest of ``ep`` dies' Poisson excess
    at the step's copies per die, which bounds the relative difference of the step times."""
    sc = build_scenario(None, scenario_overrides(model="deepseek-v3", hardware="h800", weights_dtype="fp8",
                                                 activations_dtype="fp8", mtp_acceptance=0.0))
    model = sc.model
    uniform = np.full((model.num_moe_layers, model.ffn.num_routed_experts), 1000.0)
    arrays = PrefillArrays(dies=np.array([float(ep)]), tp=np.array([1.0]), ep=np.array([float(ep)]),
                           batch_tokens=np.array([float(batch_tokens)]), micro_batches=np.array([float(m)]),
                           redundant=np.array([0.0]))
    steps = {}
    for policy in (Policy.PERFECT, Policy.MEASURED):
        lo = ExpertLoad(policy=policy, params=PARAMS, rebalance_period_s=0.0,
                        counts=uniform if policy == Policy.MEASURED else None)
        experts = replace(sc.experts, balance=policy, prefill=lo, decode=lo)
        steps[policy] = float(prefill_step(Env.of(replace(sc, experts=experts)), arrays).step_s[0])
    noise = el.poisson_max_excess(ep, np.array([batch_tokens / m * model.ffn.top_k]))[0]
    assert steps[Policy.PERFECT] <= steps[Policy.MEASURED] <= steps[Policy.PERFECT] * (1 + noise)
