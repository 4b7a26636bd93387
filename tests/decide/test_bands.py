"""Bands: spreads from residuals, seeded and deterministic, containing the point, zero width without spread,
and the sample-vectorized pricing equal to pricing each sample alone through ``planner evaluate``."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from planner import catalog
from planner.decide.bands import Priced, band, layout_bands, sample_values
from planner.decide.outcomes import layout_outcomes
from planner.decide.spreads import Group, build_spreads, zero_spreads
from planner.evaluate import evaluate, layout_goodput, load_point
from planner.inputs.layout import load_layout
from planner.inputs.scenario import build_scenario, resolve_scenario, scenario_overrides
from planner.ops.calibration import with_params
from planner.ops.spreads import profile_spreads

SMALL = dict(model="qwen3-30b-a3b", hardware="h100", weights_dtype="fp8", activations_dtype="fp8",
             input_tokens=2048, output_tokens=256, dies=16, pods=2)


@pytest.fixture(scope="module")
def small_items(shared_plan) -> tuple[Priced, ...]:
    """The small plan's best pd layout first (rank 1), then its best collocated one (``shared_plan``,
    tests/conftest.py: tests/search/test_plan.py prices the same 16-die plan)."""
    result = shared_plan(build_scenario(None, scenario_overrides(**SMALL)))
    chosen = [next(p for p in result.layouts if p.mode.value == m) for m in ("pd", "collocated")]
    out = []
    for p in chosen:
        out.append(Priced(layout=p.layout, scenario=resolve_scenario(p.layout.scenario), point=p.metrics))
    return tuple(out)


def test_spread_of_a_group_is_its_residual_rms_over_the_degrees_of_freedom():
    hw = catalog.hardware("h100")
    # 4 rows fitting 2 parameters: sigma = sqrt((0.1^2 + 0.1^2 + 0.2^2 + 0) / (4 - 2)) = sqrt(0.03)
    g = Group(rows=("a", "b", "c", "d"), params=frozenset({"efficiency.gemm.max_frac", "efficiency.gemm.k_half"}),
              residuals=(0.1, -0.1, 0.2, 0.0))
    # one row per parameter: no degrees of freedom, so the pooled spread (here of g alone)
    exact = Group(rows=("e",), params=frozenset({"efficiency.attention.compute_frac"}), residuals=(0.0,))
    s = build_spreads(hw, [g, exact], [g, exact], [("h100", math.log(1.3)), ("h100", math.log(1.5)),
                                                   ("h800", math.log(2.0))])
    by = {p.path: p for p in s.params}
    assert by["efficiency.gemm.max_frac"].sigma == pytest.approx(math.sqrt(0.03))
    assert (by["efficiency.gemm.max_frac"].rows, by["efficiency.gemm.max_frac"].dof) == (4, 2)
    assert by["efficiency.attention.compute_frac"].pooled and by["overheads.scheduler_gap_s"].pooled
    assert by["efficiency.attention.compute_frac"].sigma == pytest.approx(math.sqrt(0.03))
    # two own system rows: their std (ddof 1) and geometric-mean bias, the h800 row left out
    assert s.system_sigma == pytest.approx(float(np.std(np.log([1.3, 1.5]), ddof=1)))
    assert s.system_bias_frac == pytest.approx(math.sqrt(1.3 * 1.5) - 1)
    assert not s.system_pooled and s.system_rows == 2


def test_shipped_spreads_come_from_the_measurements():
    cm = profile_spreads(catalog.hardware("cloudmatrix384"))
    own = {p.path for p in cm.params if not p.pooled}
    assert own == {"collectives.dispatch_s", "collectives.combine_s", "collectives.low_latency_copy_s"}  # XCCL rows
    assert cm.system_pooled  # no CloudMatrix system row: every platform's rows
    assert all(p.sigma > 0 for p in cm.params) and cm.system_sigma > 0
    h100 = profile_spreads(catalog.hardware("h100"))
    assert not h100.system_pooled and not {p.path: p for p in h100.params}["efficiency.gemm.max_frac"].pooled


def test_zero_residual_spread_gives_zero_width_bands_at_the_point(small_items):
    items = list(small_items)
    hw = items[0].scenario.hardware
    # a profile whose every fit group has zero residuals and whose system rows all miss by the same
    no_spread = build_spreads(hw, [Group(rows=("a", "b", "c"), params=frozenset({"efficiency.gemm.max_frac"}),
                                         residuals=(0.0, 0.0, 0.0))],
                              [Group(rows=("a", "b", "c"), params=frozenset({"x"}), residuals=(0.0, 0.0, 0.0))],
                              [("h100", 0.2), ("h100", 0.2)])
    assert no_spread.zero and zero_spreads(hw).zero
    for it, b in zip(items, layout_bands(items, no_spread, samples=16, seed=3), strict=True):
        p = it.point
        for rng, point in ((b.goodput_requests_per_s, p.goodput_requests_per_s),
                           (b.output_tokens_per_s_per_die, p.output_tokens_per_s_per_die),
                           (b.ttft_s, p.ttft_s), (b.tpot_s, p.tpot_s),
                           (b.decode_step_s, float(evaluate(it.layout, it.scenario).decode.step_s[0]))):
            assert rng.low == rng.high == pytest.approx(point, rel=1e-6), (it.layout.mode, rng, point)
        assert b.batch_lowered_frac == 0.0


def test_bands_are_seeded_deterministic_and_contain_the_point(small_items):
    items = list(small_items)
    spreads = profile_spreads(items[0].scenario.hardware)
    first, again = layout_bands(items, spreads, 32, 7), layout_bands(items, spreads, 32, 7)
    assert first == again
    assert layout_bands(items, spreads, 32, 8) != first
    for it, b in zip(items, first, strict=True):
        g = b.output_tokens_per_s_per_die
        assert g.low <= it.point.output_tokens_per_s_per_die <= g.high and g.low < g.high
        assert b.ttft_s.low <= it.point.ttft_s <= b.ttft_s.high and b.tpot_s.low <= it.point.tpot_s <= b.tpot_s.high
    assert first[0].tied_with_rank1 is None and first[1].tied_with_rank1 is not None
    assert 0.0 <= first[1].beats_rank1_frac <= 1.0


def test_band_is_an_order_statistic_widened_to_the_point():
    x = np.arange(1.0, 11.0)  # p10 = 1st value, p90 = 9th (inverted CDF)
    assert (band(x, 5.0).low, band(x, 5.0).high) == (1.0, 9.0)
    assert band(x, 20.0).high == 20.0 and band(np.array([1.0, np.inf]), 1.0).high == np.inf


@pytest.mark.parametrize("which", ["pd", "collocated", "transformerless"])
def test_samples_priced_together_equal_each_sample_priced_alone(which, small_items):
    if which == "transformerless":
        layout = load_layout("examples/deepseek-v3-cloudmatrix384-transformerless.toml")
        sc = build_scenario(layout.scenario, {})
        rate = layout_goodput(evaluate(layout, sc)).goodput_requests_per_s
    else:
        it = next(i for i in small_items if i.layout.mode.value == which)
        layout, sc, rate = it.layout, it.scenario, it.point.goodput_requests_per_s
    values = sample_values(profile_spreads(sc.hardware), samples=4, seed=11)
    together = layout_outcomes(layout, sc, values, rate_per_s=rate)
    for i in range(4):
        hw = with_params(sc.hardware, {k: float(v[i]) for k, v in values.items()})  # validated, N = 1
        alone = layout_outcomes(layout, dataclasses.replace(sc, hardware=hw), None, rate_per_s=rate)
        ev = evaluate(layout, dataclasses.replace(sc, hardware=hw))
        assert together.decode_step_s[i] == pytest.approx(float(ev.decode.step_s[0]), rel=1e-12)
        if together.decode_batch[i] == layout.decode.batch:  # not lowered: the one model's numbers (evaluate)
            assert together.goodput_requests_per_s[i] == pytest.approx(
                layout_goodput(ev).goodput_requests_per_s, rel=1e-12)
            at = load_point(ev, rate)
            assert together.ttft_s[i] == pytest.approx(at.ttft_at_slo_percentile_s, rel=1e-6)
            assert together.tpot_s[i] == pytest.approx(at.tpot_mean_s, rel=1e-6)
        for name in ("goodput_requests_per_s", "decode_step_s", "prefill_step_s", "ttft_s", "tpot_s", "decode_batch"):
            a, b = getattr(together, name)[i], getattr(alone, name)[0]
            assert a == pytest.approx(b, rel=1e-12, nan_ok=True), (name, i)
