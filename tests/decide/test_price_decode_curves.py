"""planner.decide.outcomes.price_decode_curves prices the bands' decode curves of many layouts in one vector call,
and outcomes_of their goodputs too: each layout's outcomes are bitwise those of its own call."""

from __future__ import annotations

import dataclasses

import numpy as np

from planner.decide.bands import sample_values
from planner.decide.outcomes import OutcomeMemo, layout_outcomes, outcomes_of, price_decode_curves
from planner.inputs.layout import load_layout
from planner.inputs.scenario import build_scenario
from planner.ops.spreads import profile_spreads


def _layouts() -> list:
    pd = load_layout("examples/deepseek-v3-cloudmatrix384-pd.toml")
    plain = pd.decode.model_copy(update={"shared_experts": None, "shared_expert_replicas": None,
                                         "redundant_experts": 160})  # (256 + 160) / 208 dies
    tl = load_layout("examples/deepseek-v3-cloudmatrix384-transformerless.toml")
    layouts = [pd, pd.model_copy(update={"decode": plain}),
               pd.model_copy(update={"decode": plain.model_copy(update={"batch": 16})}),
               tl, tl.model_copy(update={"decode": tl.decode.model_copy(update={"batch": tl.decode.batch // 2})})]
    return layouts


def test_curves_priced_together_give_each_layouts_outcomes() -> None:
    scenario = build_scenario(None, {})
    values = sample_values(profile_spreads(scenario.hardware), 16, 3)
    layouts = _layouts()
    memo: OutcomeMemo = {}
    price_decode_curves([(lay, scenario) for lay in layouts], values, memo)
    assert len(memo) == 4  # the pd pool with replicas is a group of one: left to layout_outcomes
    for lay in layouts:
        together = layout_outcomes(lay, scenario, values, rate_per_s=5.0, memo=memo)
        alone = layout_outcomes(lay, scenario, values, rate_per_s=5.0)
        for f in dataclasses.fields(alone):
            assert np.array_equal(getattr(together, f.name), getattr(alone, f.name), equal_nan=True), f.name


def test_outcomes_of_many_layouts_are_each_layouts_own() -> None:
    """outcomes_of (curves and goodputs of every layout in shared vector calls, rates of their own) == each
    layout_outcomes call alone."""
    scenario = build_scenario(None, {})
    values = sample_values(profile_spreads(scenario.hardware), 16, 4)
    layouts = _layouts()
    rates = [5.0, 8.0, None, 20.0, 3.0]
    together = outcomes_of([(lay, scenario, r) for lay, r in zip(layouts, rates, strict=True)], values)
    for lay, rate, out in zip(layouts, rates, together, strict=True):
        alone = layout_outcomes(lay, scenario, values, rate_per_s=rate)
        for f in dataclasses.fields(alone):
            assert np.array_equal(getattr(out, f.name), getattr(alone, f.name), equal_nan=True), f.name


def test_outcomes_of_chunked_prefill_layouts_are_each_layouts_own() -> None:
    """Collocated layouts (TPOT at the occupancy served: a goodput call with a TPOT-limited rate) beside a pd
    one, on a small H100 scenario: outcomes_of == each layout_outcomes call alone."""
    from planner.inputs.layout import parse_layout
    from planner.inputs.scenario import scenario_overrides

    scenario = build_scenario(None, scenario_overrides(model="qwen3-30b-a3b", hardware="h100", weights_dtype="fp8",
                                                       activations_dtype="fp8", input_tokens=2048,
                                                       output_tokens=256, dies=16, pods=2))
    values = sample_values(profile_spreads(scenario.hardware), 12, 5)
    layouts = [parse_layout({"mode": "collocated", "decode": {"instances": n, "dies": 1, "batch": b,
                                                              "prefill_chunk_tokens": 2048}}, "test")
               for n, b in ((2, 64), (3, 32))]
    layouts.append(parse_layout({"mode": "pd", "prefill": {"instances": 2, "dies": 1, "batch_tokens": 8192},
                                 "decode": {"instances": 1, "dies": 2, "ep": 2, "batch": 64}}, "test"))
    together = outcomes_of([(lay, scenario, 1.0) for lay in layouts], values)
    for lay, out in zip(layouts, together, strict=True):
        alone = layout_outcomes(lay, scenario, values, rate_per_s=1.0)
        for f in dataclasses.fields(alone):
            assert np.array_equal(getattr(out, f.name), getattr(alone, f.name), equal_nan=True), f.name
