"""A planned layout carries its own [scenario] (e.g. MTP off); everything that prices it again uses it.

The plan report's expert-load docs priced a listed layout under the plan's scenario, so an MTP-off
layout was shown at the plan's MTP acceptance while the search priced it with none.
"""

from __future__ import annotations

from pathlib import Path

from planner.documents.plan import expert_load_docs
from planner.evaluate import evaluate, layout_goodput
from planner.imbalance import layout_load
from planner.inputs.layout import load_layout, own_scenario
from planner.inputs.scenario import ScenarioFile, resolve_scenario
from planner.search.plan import Planned

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "deepseek-v3-cloudmatrix384-pd.toml"


def _mtp(layout, acceptance: float):
    """``layout`` with its own [scenario]: the example's, at this MTP acceptance."""
    base = layout.scenario.model_dump(mode="json") if layout.scenario else {}
    base.setdefault("mtp", {})["acceptance"] = acceptance
    return layout.model_copy(update={"scenario": ScenarioFile.model_validate(base)})


def test_expert_load_docs_price_a_layout_under_its_own_scenario():
    layout = load_layout(EXAMPLE)
    plan_sc = resolve_scenario(_mtp(layout, 0.7).scenario)  # the plan's scenario: MTP on
    own = _mtp(layout, 0.0)                                   # the listed layout: MTP off
    assert own_scenario(own, plan_sc).mtp.acceptance == 0.0
    assert own_scenario(layout.model_copy(update={"scenario": None}), plan_sc) is plan_sc
    ev = evaluate(own, own_scenario(own, plan_sc), "test")
    planned = Planned(mode=own.mode, layout=own, metrics=layout_goodput(ev), search_goodput_per_s=0.0)
    docs = expert_load_docs(planned, plan_sc)
    expected = {pool: load for pool, load in layout_load(ev).items()}
    under_plan = layout_load(evaluate(own, plan_sc, "test"))
    # the decode pool's imbalance cost differs with MTP (tokens per step): the check can fail
    assert under_plan["decode"].expert_imbalance_cost_s != expected["decode"].expert_imbalance_cost_s
    assert docs["decode"].expert_imbalance_cost_s == expected["decode"].expert_imbalance_cost_s
