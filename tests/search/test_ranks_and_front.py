"""Ranks are positions in the whole ranking (independent of --top); the Pareto front shown leaves out
points below the goodput floor and points dominated by a wide margin, and counts them (issue 12)."""

from __future__ import annotations

from planner.inputs.scenario import build_scenario, scenario_overrides
from planner.search.plan import PARETO_FLOOR_FRAC, PARETO_GOODPUT_MARGIN, PARETO_TPOT_MARGIN, plan

SMALL = dict(model="qwen3-30b-a3b", hardware="h100", weights_dtype="fp8", activations_dtype="fp8",
             input_tokens=2048, output_tokens=256, dies=8)


def _keys(result):
    return [str(sorted(p.layout.to_dict().items())) for p in result.layouts]


def test_the_ranking_does_not_depend_on_top():
    scenario = build_scenario(None, scenario_overrides(**SMALL))
    few, many = plan(scenario, top=3), plan(scenario, top=12)
    assert _keys(few) == _keys(many)


def test_the_front_drops_points_below_the_floor_or_dominated_by_a_wide_margin(shared_plan):
    scenario = build_scenario(None, scenario_overrides(**SMALL))
    result = shared_plan(scenario)  # tests/conftest.py: tests/search/test_plan.py prices the same 8-die plan
    best = max(p.per_die for p in result.layouts)
    assert result.pareto, "the small scenario has a front"
    assert all(p.per_die >= PARETO_FLOOR_FRAC * best for p in result.pareto)
    for p in result.pareto:
        assert not any(q.metrics.tpot_s <= p.metrics.tpot_s * (1 + PARETO_TPOT_MARGIN)
                       and q.per_die >= p.per_die * PARETO_GOODPUT_MARGIN for q in result.pareto)
    assert set(result.pareto_dropped) == {"below_floor", "dominated_by_wide_margin"}
