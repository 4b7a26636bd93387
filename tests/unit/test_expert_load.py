"""Closed-form checks of the expert-load model (planner/cost/expert_load.py), worked by hand or
against an independent computation (a direct sum over a probability table, a seeded simulation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import poisson

from planner.cost import expert_load as el
from planner.inputs.expert_load import ExpertLoad, LoadParams, Policy, load_params

PARAMS = load_params()


def load(policy: str, period_s: float = 0.0, counts: np.ndarray | None = None,
         params: LoadParams = PARAMS) -> ExpertLoad:
    return ExpertLoad(policy=Policy(policy), params=params, rebalance_period_s=period_s, counts=counts)


# --------------------------------------------------------------------------- placement


def test_replica_cap_by_hand() -> None:
    """Shares 0.5, 0.3, 0.2 and R = 1.  Splitting only the hottest: theta = 0.5 / 2 = 0.25 < 0.3,
    inconsistent.  Splitting the two hottest: theta = 0.8 / 3 = 0.2667, and 0.3 >= 0.2667 >= 0.2;
    check: 0.5 / theta + 0.3 / theta + 1 = 1.875 + 1.125 + 1 = 4 = E + R.  Pieces: 0.8 / theta = 3 of
    size theta and one of 0.2: sum w^2 = 3 theta^2 + 0.04 = 0.8 theta + 0.04 = 0.25333."""
    theta, sum_w2 = el.replica_cap(np.array([[0.2, 0.5, 0.3]]), 1.0)
    assert theta[0] == pytest.approx(0.8 / 3, rel=1e-12)
    assert sum_w2[0] == pytest.approx(0.8 * 0.8 / 3 + 0.04, rel=1e-12)


def test_replica_cap_without_replicas_is_the_hottest_share() -> None:
    theta, sum_w2 = el.replica_cap(np.array([[0.1, 0.6, 0.3]]), 0.0)
    assert theta[0] == 0.6 and sum_w2[0] == pytest.approx(0.01 + 0.36 + 0.09)


def _greedy_largest_piece(shares: np.ndarray, redundant: int) -> float:
    """Integer replication as DeepSeek's EPLB does it: each redundant slot goes, one at a time, to the
    expert whose piece (share / replicas) is the largest; the largest piece left."""
    replicas = np.ones_like(shares)
    for _ in range(redundant):
        replicas[np.argmax(shares / replicas)] += 1
    return float((shares / replicas).max())


@pytest.mark.parametrize("redundant", [1, 8, 32, 64])
def test_relaxed_replication_is_a_lower_bound_of_integer_replication(redundant: int) -> None:
    """The continuous relaxation's largest piece ``theta`` is at most what an integer replication of the
    same shares leaves (the band of row A03/slot rests on it), and within the granularity of one
    replica of it: the integer largest piece is at most ``theta`` times (1 + 1 / replicas of the
    expert holding it), so at most ``2 theta``."""
    lo = load("eplb")
    shares, _ = el.layer_shares(lo, experts=256, top_k=8)
    theta, _ = el.replica_cap(shares, float(redundant))
    for layer in range(len(shares)):
        integer = _greedy_largest_piece(shares[layer], redundant)
        assert theta[layer] * (1 - 1e-12) <= integer <= 2 * theta[layer], (redundant, layer)


def test_static_contiguous_placement_by_hand() -> None:
    """Experts 0..5 with counts 1..6 on 3 dies: dies hold (1+2, 3+4, 5+6) / 21; the busiest carries
    11/21 of the copies, 3 x 11/21 = 1.5714 times the mean."""
    counts = np.arange(1.0, 7.0)[None, :]
    shares = counts / counts.sum()
    np.testing.assert_allclose(el.static_die_shares(shares, 3), [[3 / 21, 7 / 21, 11 / 21]])
    floor, v = el.placement(load("none", counts=counts), shares, 3, 0)
    assert floor[0] == pytest.approx(33 / 21) and v[0] == 0.0


def test_capped_shares() -> None:
    """A token picks top_k distinct experts, so no expert gets more than 1/top_k of the copies; rows
    sum to 1; sigma 0 is uniform; and 20.7% of the experts are above the mean at sigma 1.66 (for an
    uncapped log-normal, P(Z > sigma / 2) = 1 - Phi(0.83) = 0.203)."""
    shares = el.lognormal_shares(np.array([0.0, 1.0, 1.66, 4.0]), 256, 8)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-12)
    assert shares.max() <= 1 / 8 + 1e-15
    np.testing.assert_allclose(shares[0], 1 / 256, rtol=1e-12)
    assert np.mean(shares[2] > 1 / 256) == pytest.approx(0.203, abs=0.01)
    assert np.all(np.diff(shares, axis=1) <= 1e-18)


# --------------------------------------------------------------------------- sampling noise


@pytest.mark.parametrize(("n", "c"), [(2, 0.5), (2, 3.0), (5, 1.0), (8, 20.0)])
def test_poisson_max_against_a_direct_sum(n: int, c: float) -> None:
    """E[max of n Poisson(c)] from the pmf table directly: sum_k k P(max = k) with
    P(max = k) = F(k)^n - F(k-1)^n, over k up to where the tail is below 1e-16."""
    k = np.arange(0, int(c + 40 * np.sqrt(c) + 60))
    cdf = poisson.cdf(k, c)
    pmax = cdf**n - np.concatenate([[0.0], cdf[:-1] ** n])
    expected = float((k * pmax).sum())
    assert el.poisson_max_excess(n, np.array([c]))[0] == pytest.approx(expected / c - 1, rel=1e-9)


def test_poisson_max_normal_limit_against_a_seeded_simulation() -> None:
    """Above c = 400 the Cornish-Fisher limit is used: a seeded simulation of 20,000 draws of the
    max of 32 Poisson(1000) agrees within 4 standard errors of its mean."""
    rng = np.random.default_rng(12345)
    draws = rng.poisson(1000.0, size=(20_000, 32)).max(axis=1)
    se = draws.std() / np.sqrt(draws.size)
    predicted = (1 + el.poisson_max_excess(32, np.array([1000.0]))[0]) * 1000.0
    assert abs(predicted - draws.mean()) <= 4 * se, (predicted, draws.mean(), se)


def test_one_die_has_no_excess() -> None:
    assert np.all(el.poisson_max_excess(1, np.array([0.1, 10.0, 1e6])) == 0.0)
    ratios, _ = el.layer_ratios(load("eplb", 60.0), experts=256, top_k=8, ep=1, redundant=0, copies_per_die=5.0)
    assert np.all(ratios == 1.0)


def test_interpolation_against_the_exact_value() -> None:
    """The vector entry interpolates in log c on 16 points per decade; against the exact per-point
    value the error is a small part of the sampling excess it interpolates (the curve goes as
    c^-1/2, whose second-order interpolation error is ~0.1% at this spacing; the Poisson lattice at
    small c and the two-ranks case add to it): within 1% of the excess for n >= 8, 3% for n = 2."""
    c = 10 ** np.linspace(-1.5, 8.5, 301)
    for policy in ("eplb", "none"):
        for ep, red, tol in ((2, 0, 0.03), (8, 0, 0.01), (32, 32, 0.01), (288, 320, 0.01)):
            lo = load(policy, 60.0)
            grid = el.busiest_die_ratio(lo, experts=256, top_k=8, ep=np.full(c.shape, ep),
                                        redundant=np.full(c.shape, red), copies_per_die=c)
            exact = np.array([w @ r for r, w in (el.layer_ratios(lo, experts=256, top_k=8, ep=ep, redundant=red,
                                                                 copies_per_die=x) for x in c)])
            assert np.all(np.abs(grid - exact) <= tol * el.poisson_max_excess(ep, c) + 1e-12), (policy, ep)


# --------------------------------------------------------------------------- policies


def test_perfect_is_exactly_one() -> None:
    ratios = el.busiest_die_ratio(load("perfect"), experts=256, top_k=8, ep=np.array([1.0, 8, 32, 320]),
                                  redundant=np.array([0.0, 0, 32, 64]), copies_per_die=np.array([1.0, 100, 3, 0.5]))
    assert ratios.shape == (4,) and np.all(ratios == 1.0)


def test_none_fitted_against_random_placements() -> None:
    """'none' with the fitted skew approximates the expected busiest die of a random placement by a
    log-normal with the die sum's mean and variance.  A seeded Monte Carlo of 2,000 placements:
    the mild layers within 8%, the hot layers (a few experts at the 1/top_k cap make the die sums
    lumpy) 10-40% low, as the module docstring states."""
    rng = np.random.default_rng(7)
    lo = load("none")
    shares, _ = el.layer_shares(lo, experts=256, top_k=8)
    for ep in (8, 32, 128):
        model = el.placement_residual(lo, shares, ep, 0)
        starts = np.arange(0, 256, 256 // ep)
        mc = np.array([np.mean([ep * np.add.reduceat(s[rng.permutation(256)], starts).max() for _ in range(2000)])
                       for s in shares])
        error = model / mc - 1
        assert -0.08 <= error[0] <= 0.02, (ep, error)
        assert -0.40 <= error[1] <= -0.05, (ep, error)


def test_measured_policy_on_a_uniform_matrix_is_sampling_noise_only() -> None:
    counts = np.full((58, 256), 100.0)
    ratios, _ = el.layer_ratios(load("measured", counts=counts), experts=256, top_k=8, ep=32, redundant=32,
                                copies_per_die=1000.0)
    np.testing.assert_allclose(ratios, 1 + el.poisson_max_excess(32, np.array([1000.0]))[0], rtol=1e-12)


def test_layer_rows_pick_the_matrix_rows() -> None:
    """A matrix whose first layer is uniform and second has every copy on 8 experts: the second
    layer's busiest of 32 dies (static placement, 8 experts each) carries all of it, 32x the mean."""
    counts = np.full((2, 256), 1.0)
    counts[1] = 0.0
    counts[1, :8] = 1.0
    lo = load("none", counts=counts)
    kw = dict(experts=256, top_k=8, ep=np.array([32.0]), redundant=np.array([0.0]), copies_per_die=np.array([1e9]))
    assert el.busiest_die_ratio(lo, rows=(0,), **kw)[0] == pytest.approx(1.0, abs=1e-3)
    assert el.busiest_die_ratio(lo, rows=(1,), **kw)[0] == pytest.approx(32.0, rel=1e-3)
    assert el.busiest_die_ratio(lo, **kw)[0] == pytest.approx(16.5, rel=1e-3)
    assert el.busiest_die_ratio(lo, hottest=True, **kw)[0] == pytest.approx(32.0, rel=1e-3)


# --------------------------------------------------------------------------- DP ranks


def test_dp_excess_by_hand() -> None:
    """Two ranks of 4 sequences each, counts Poisson (dispersion 1), equal lengths: the work CV is
    sqrt(1 / 4) = 0.5; the larger of two standard normals is z_2 = Phi^-1(1.625 / 2.25) = 0.5894 above
    the mean (Blom), so the slower rank is 0.2947 above the mean."""
    excess = el.dp_excess(ranks=np.array([2.0]), seqs_per_die=np.array([4.0]), work_cv=0.0, count_dispersion=1.0)
    assert excess[0] == pytest.approx(0.5894 * 0.5, rel=1e-3)
    assert el.dp_excess(ranks=np.array([1.0]), seqs_per_die=np.array([4.0]), work_cv=0.3, count_dispersion=1.0)[0] == 0


def test_decode_context_cv_by_hand() -> None:
    """2048 in, 2048 out, no length spread: context = 2048 + U 2048 with U uniform, mean 3072, std
    2048 / sqrt(12) = 591.2, CV 0.19245; prompts of one length have no causal-work spread."""
    assert el.decode_context_cv(2048, 0.0, 2048, 0.0) == pytest.approx(2048 / np.sqrt(12) / 3072, rel=1e-12)
    assert el.prefill_work_cv(0.0) == 0.0


@pytest.mark.parametrize("name", ["deepseek-v3", "gpt-oss-120b", "qwen3-235b-a22b"])
def test_layer_classes_partition_the_moe_rows(name: str) -> None:
    """Each MoE layer class names its layers as rows of an expert-count matrix: together they are
    0..L-1 once each, in layer order within a class (DeepSeek-V3: 3 dense layers, then 58 MoE rows)."""
    from planner import catalog
    from planner.serving.layers import layer_classes

    model = catalog.model(name)
    rows = [r for cls in layer_classes(model) if cls.moe for r in cls.moe_rows]
    assert sorted(rows) == list(range(model.num_moe_layers))
    for cls in layer_classes(model):
        assert (cls.moe_rows is None) == (not cls.moe)
        if cls.moe:
            assert len(cls.moe_rows) == cls.count and list(cls.moe_rows) == sorted(cls.moe_rows)


def test_layer_classes_cache_equals_a_fresh_computation() -> None:
    """layer_classes is cached on the (frozen) model: an equal model from another load and a changed
    model each get what an uncached call computes (a model with one sliding layer gets one more class)."""
    from dataclasses import replace

    from planner import catalog
    from planner.serving.layers import layer_classes

    model = catalog.model("deepseek-v3")
    assert layer_classes(model) == layer_classes.__wrapped__(model)
    assert layer_classes(replace(model)) is layer_classes(model)  # equal model: the same cached tuple
    sliding = replace(model, sliding_layers=(10,))
    assert layer_classes(sliding) == layer_classes.__wrapped__(sliding)
    assert len(layer_classes(sliding)) == len(layer_classes(model)) + 1


def test_expected_max_normal_tabulated_is_the_formula_bit_for_bit() -> None:
    """Large arrays of whole rank counts read a table of 0..max (the search's dispatch waits); each value is the
    formula's own float; fractional or huge counts take the formula."""
    from planner.cost.expert_load import _TABLE_MIN_SIZE, _blom, expected_max_normal

    rng = np.random.default_rng(2)
    whole = rng.integers(0, 300, _TABLE_MIN_SIZE + 10).astype(float)
    assert np.array_equal(expected_max_normal(whole), _blom(whole))
    assert np.array_equal(expected_max_normal(whole.reshape(-1, 2)), _blom(whole.reshape(-1, 2)))
    odd = whole + 0.5
    assert np.array_equal(expected_max_normal(odd), _blom(odd))
    assert expected_max_normal(np.full(_TABLE_MIN_SIZE, 70000.0))[0] == _blom(np.array([70000.0]))[0]


@pytest.mark.parametrize("policy", ["eplb", "none", "measured"])
def test_tables_share_one_layer_shares_with_the_same_floats(policy: str) -> None:
    # _table reads the layer shares once per (rows, experts, top_k), cached read-only on the load: every
    # (EP, R) table equals the one built from freshly computed shares, bitwise.
    counts = np.random.default_rng(2).integers(1, 500, (6, 64)) if policy == "measured" else None
    pool = load(policy, counts=counts)
    for rows in ((0, 2), None):
        for ep, r in ((8, 0.0), (16, 16.0), (64, 32.0)):
            mean, hot = el._table(pool, rows, 64, 4, ep, r)
            shares, weights = el.layer_shares(pool, experts=64, top_k=4, rows=rows if counts is not None else None)
            excess = el.placement_residual(pool, shares, ep, r) - 1.0
            ratios = 1.0 + np.hypot(excess[:, None], el.noise_excess(ep)[None, :])
            assert np.array_equal(mean, weights @ ratios) and np.array_equal(hot, ratios[weights > 0].max(axis=0))
    cached = [v for k, v in pool._tables.items() if k[0] == "shares"]
    assert cached and all(not a.flags.writeable for pair in cached for a in pair)
