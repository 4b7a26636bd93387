"""The pd splits of every TPOT threshold priced in one vector call give each split the goodput its own
call gives (planner.search.plan._pd_batched vs pair_goodput per threshold), bitwise."""

from __future__ import annotations

import numpy as np

from planner.inputs.layout import Mode
from planner.inputs.scenario import build_scenario
from planner.modes import MODES
from planner.search import combine as cb
from planner.search import plan as search_plan
from planner.search import space
from planner.search.score import score_decode, score_prefill


def test_batched_pair_goodputs_equal_one_call_per_threshold() -> None:
    sc = build_scenario(None, {"dies": 96}, "test")
    budget = 96
    pre = score_prefill(sc, space.prefill_pools(sc.model, budget))
    pre_env = cb.prefill_envelope(sc, budget, pre, search_plan._selector_handoff_s(sc, budget))
    entry = MODES[Mode.PD]
    dec = score_decode(sc, entry.candidates(sc.model, budget), entry)
    masks = [None, *(dec.tpot_s <= tau for tau in search_plan._thresholds(sc, dec))]
    batched = search_plan._pd_batched(sc, budget, Mode.PD, pre, pre_env, dec, masks, None)
    assert len(batched) == len(masks) and sum(len(b) for b in batched) > len(masks)
    for mask, items in zip(masks, batched, strict=True):
        splits = search_plan._pd_splits(sc, budget, pre, pre_env, dec, mask)
        alone = search_plan.pair_goodput(sc, pre, dec, splits) if splits else np.zeros(0)
        assert [it[0] for it in items] == [float(r) for r in alone]
        assert [it[1] for it in items] == [s.dies for s in splits]
