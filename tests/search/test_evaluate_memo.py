"""evaluate(..., memo): a pool priced once is reused by layouts with the same pool at other instance
counts (planner.search.plan._exact), and gives the same floats as pricing each layout alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from planner.evaluate import evaluate, layout_goodput
from planner.imbalance import layout_load
from planner.inputs.layout import load_layout, own_scenario

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "deepseek-v3-cloudmatrix384-pd.toml"


def test_memo_reuses_a_pool_across_instance_counts_and_changes_no_float(pd_example_variants):
    scenario, variants = pd_example_variants(1, -1)
    memo: dict = {}
    shared = [evaluate(v, scenario, "test", memo) for v in variants]
    alone = [evaluate(v, scenario, "test") for v in variants]
    # one Env, one prefill step and one decode step in the memo: the instance count is no step knob
    assert sorted(k[0] for k in memo) == ["decode", "env", "prefill"]
    assert shared[1].decode is shared[0].decode and shared[2].prefill is shared[0].prefill
    assert alone[1].decode is not alone[0].decode
    for a, b in zip(shared, alone, strict=True):
        for pool in ("prefill", "decode"):
            sa, sb = getattr(a, pool), getattr(b, pool)
            assert np.array_equal(sa.step_s, sb.step_s) and np.array_equal(sa.fits, sb.fits)
        ga, gb = layout_goodput(a), layout_goodput(b)
        assert ga.goodput_requests_per_s == gb.goodput_requests_per_s and ga.ttft_s == gb.ttft_s
    # one more prefill instance (the example is prefill-bound): a different goodput, so the check above can fail
    assert layout_goodput(shared[1]).goodput_requests_per_s != layout_goodput(shared[0]).goodput_requests_per_s


def test_memo_keys_on_the_scenario_object_so_another_scenario_is_priced_again():
    layout = load_layout(EXAMPLE)
    one, two = own_scenario(layout, None), own_scenario(layout, None)
    memo: dict = {}
    a, b = evaluate(layout, one, "test", memo), evaluate(layout, two, "test", memo)
    assert a.decode is not b.decode and np.array_equal(a.decode.step_s, b.decode.step_s)


def test_load_memo_reprices_a_shared_pool_once_with_the_same_numbers(with_instances):
    layout = load_layout(EXAMPLE)
    scenario = own_scenario(layout, None)
    p, d = layout.prefill.instances, layout.decode.instances
    memo: dict = {}
    evs = [evaluate(v, scenario, "test", memo) for v in (layout, with_instances(layout, p + 1, d + 1))]
    load_memo: dict = {}
    shared = [layout_load(ev, load_memo) for ev in evs]
    alone = [layout_load(ev) for ev in evs]
    assert shared == alone and shared[0]["decode"].expert_imbalance_cost_s > 0
    # one (balanced, even) pair of Envs (both pools run on the scenario's hardware: one Env), and per pool two
    # re-priced steps, whichever layout asked first
    assert len(load_memo) == 1 + 2 * 2
