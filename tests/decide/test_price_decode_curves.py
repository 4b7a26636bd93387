"""planner.decide.outcomes.price_decode_curves prices the bands' decode curves of many layouts in one vector call:
each layout's outcomes are bitwise those of its own call."""

from __future__ import annotations

import dataclasses

import numpy as np

from planner.decide.bands import sample_values
from planner.decide.outcomes import OutcomeMemo, layout_outcomes, price_decode_curves
from planner.inputs.layout import load_layout
from planner.inputs.scenario import build_scenario
from planner.ops.spreads import profile_spreads


def test_curves_priced_together_give_each_layouts_outcomes() -> None:
    scenario = build_scenario(None, {})
    values = sample_values(profile_spreads(scenario.hardware), 16, 3)
    pd = load_layout("examples/deepseek-v3-cloudmatrix384-pd.toml")
    plain = pd.decode.model_copy(update={"shared_experts": None, "shared_expert_replicas": None,
                                         "redundant_experts": 160})  # (256 + 160) / 208 dies
    tl = load_layout("examples/deepseek-v3-cloudmatrix384-transformerless.toml")
    layouts = [pd, pd.model_copy(update={"decode": plain}),
               pd.model_copy(update={"decode": plain.model_copy(update={"batch": 16})}),
               tl, tl.model_copy(update={"decode": tl.decode.model_copy(update={"batch": tl.decode.batch // 2})})]
    memo: OutcomeMemo = {}
    price_decode_curves([(lay, scenario) for lay in layouts], values, memo)
    assert len(memo) == 4  # the pd pool with replicas is a group of one: left to layout_outcomes
    for lay in layouts:
        together = layout_outcomes(lay, scenario, values, rate_per_s=5.0, memo=memo)
        alone = layout_outcomes(lay, scenario, values, rate_per_s=5.0)
        for f in dataclasses.fields(alone):
            assert np.array_equal(getattr(together, f.name), getattr(alone, f.name), equal_nan=True), f.name
