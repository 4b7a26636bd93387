"""What imbalance costs one evaluated layout (planner/imbalance.py): the per-class load and the
step-time differences against perfect balance, checked for their identities."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from planner.evaluate import evaluate
from planner.imbalance import layout_load
from planner.inputs.layout import load_layout
from planner.inputs.scenario import ScenarioFile, build_scenario

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["deepseek-v3-h800-pd.toml", "deepseek-v3-cloudmatrix384-transformerless.toml",
            "llama-3.1-70b-h100-collocated.toml"]


def evaluated(name: str, **experts):
    path = ROOT / "examples" / name
    data = tomllib.loads(path.read_text()).get("scenario") or {}
    data = {**data, "experts": {**data.get("experts", {}), **experts}}
    return evaluate(load_layout(path), build_scenario(ScenarioFile.model_validate(data), {}, str(path)))


@pytest.mark.parametrize("name", EXAMPLES)
def test_costs_add_up(name: str) -> None:
    """step = perfect-balance step + expert cost; perfect-balance step = even step + DP cost; both >= 0.
    The perfect-balance step is the one ``planner evaluate`` gives with ``balance = "perfect"``."""
    ev, perfect = evaluated(name), evaluated(name, balance="perfect")
    for pool, load in layout_load(ev).items():
        step = ev.prefill if pool == "prefill" else ev.decode
        balanced = perfect.prefill if pool == "prefill" else perfect.decode
        assert load.step_s == pytest.approx(float(step.step_s[0]), rel=1e-12)
        assert load.step_perfect_balance_s == pytest.approx(float(balanced.step_s[0]), rel=1e-12)
        assert load.step_s == pytest.approx(load.step_perfect_balance_s + load.expert_imbalance_cost_s, rel=1e-12)
        assert load.step_perfect_balance_s == pytest.approx(load.step_no_imbalance_s + load.dp_imbalance_cost_s,
                                                            rel=1e-12)
        assert load.expert_imbalance_cost_s >= 0 and load.dp_imbalance_cost_s >= -1e-15
        for c in load.classes:
            assert 1.0 <= c.busiest_over_mean <= c.busiest_over_mean_hottest
            assert c.combine_wait_s >= 0 and c.dispatch_wait_s >= 0


def test_perfect_balance_costs_nothing_and_a_dense_model_has_no_expert_classes() -> None:
    ev = evaluated("deepseek-v3-h800-pd.toml", balance="perfect")
    for load in layout_load(ev).values():
        assert load.expert_imbalance_cost_s == 0.0
        assert all(c.busiest_over_mean == 1.0 and c.combine_wait_s == 0.0 for c in load.classes)
    dense = layout_load(evaluated("llama-3.1-70b-h100-collocated.toml"))
    assert all(not load.classes and load.expert_imbalance_cost_s == 0.0 for load in dense.values())
