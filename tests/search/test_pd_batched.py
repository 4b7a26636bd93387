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


def test_threshold_masks_read_only_at_ok_rows_give_the_same_envelopes_and_items() -> None:
    # _threshold_masks compares TPOT at the ok rows only (False elsewhere); every mask's envelope (pd,
    # transformerless) and collocated items equal those of the whole comparison ``tpot_s <= tau``, bitwise.
    sc = build_scenario(None, {"dies": 96}, "test")
    budget, pod = 96, sc.hardware.pod_dies
    for mode in (Mode.PD, Mode.COLLOCATED):
        entry = MODES[mode]
        dec = score_decode(sc, entry.candidates(sc.model, budget), entry)
        taus = search_plan._thresholds(sc, dec)
        assert len(taus) > 2 and 0 < int(dec.ok.sum()) < len(dec)
        listed = 0
        for tau, mask in zip(taus, search_plan._threshold_masks(dec, taus), strict=True):
            whole = dec.tpot_s <= tau
            assert np.array_equal(mask, whole & dec.ok)
            if mode is Mode.PD:
                a, b = cb.decode_envelope(budget, dec, mask, pod), cb.decode_envelope(budget, dec, whole, pod)
                assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("rate", "index", "instances"))
            else:
                a, b = (search_plan._collocated(sc, budget, mode, dec, m, None) for m in (mask, whole))
                assert [(r, d) for r, d, _ in a] == [(r, d) for r, d, _ in b]
                listed += len(a)
        assert mode is Mode.PD or listed > 0
