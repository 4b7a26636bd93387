"""The transformerless step floor (planner.serving.transformerless.transformerless_step_floor) and the search's
use of it (planner.search.score._decode_eval): the floor is never above the step, bit for bit, and a score
that leaves the rows it puts past the TPOT SLO unpriced rates, rejects and counts every row as pricing all."""

from __future__ import annotations

import numpy as np
import pytest

from planner.inputs.layout import Mode
from planner.inputs.scenario import build_scenario
from planner.modes import MODES
from planner.search.plan import _near_misses
from planner.search.score import score_decode
from planner.serving.context import Env
from planner.serving.transformerless import DEDUP_MIN_ROWS, transformerless_step_floor

ENTRY = MODES[Mode.TRANSFORMERLESS]


def _subset(scenario, size: int, seed: int):
    cands = ENTRY.candidates(scenario.model, 768)
    return cands.take(np.sort(np.random.default_rng(seed).choice(len(cands), size, replace=False)))


@pytest.mark.parametrize("size", [3 * DEDUP_MIN_ROWS, 500])  # grouped by knobs, and row by row
def test_floor_is_never_above_the_step(size: int) -> None:
    scenario = build_scenario(None, {}, "test")
    a = _subset(scenario, size, 5).arrays
    for drafts in (0, 1):
        env = Env.of(scenario, draft_tokens=drafts)
        d = ENTRY.step_arrays(a)
        step = ENTRY.step(env, d).step_s
        floor = transformerless_step_floor(env, d)
        assert np.all(floor <= step), drafts
        # not vacuous: the attention dies alone are a large share of many steps
        assert np.all(floor > 0) and np.mean(floor > 0.5 * step) > 0.2, drafts


@pytest.mark.parametrize("tpot_s", [0.05, 0.004])  # the default SLO, and one that no row meets
def test_floored_score_is_the_plain_score(tpot_s: float) -> None:
    """Rates, feasibility, rejected counts (TPOT misses included), and every priced row's step equal the score
    that prices every fitting row, bitwise; a floored row misses the SLO there too, its step at most that
    one; the near misses (the least TPOT of all fitting rows) are the same."""
    scenario = build_scenario(None, {"slo": {"tpot_s": tpot_s}}, "test")
    cands = _subset(scenario, 3 * DEDUP_MIN_ROWS, 7)
    fast = score_decode(scenario, cands, ENTRY)
    plain = score_decode(scenario, cands, ENTRY, floors=False)
    assert not plain.floored.any()
    assert fast.floored.sum() > 0.2 * len(fast)
    assert fast.rejected == plain.rejected
    for name in ("ok", "rate_per_s", "dies", "batch", "max_batch", "sequences", "mtp"):
        assert np.array_equal(getattr(fast, name), getattr(plain, name)), name
    priced = ~fast.floored
    for name in ("step_s", "tpot_s", "tpot_slo_s"):
        assert np.array_equal(getattr(fast, name)[priced], getattr(plain, name)[priced]), name
    f = fast.floored
    assert not (plain.ok[f]).any() and np.all(plain.tpot_slo_s[f] > tpot_s)
    assert np.all(fast.step_s[f] <= plain.step_s[f])
    # at 4 ms the least TPOT of the floored score is a floor's (the fallback prices every row), at 50 ms a priced row
    assert (_near_misses(scenario, {Mode.TRANSFORMERLESS: fast}, None, 0.0)
            == _near_misses(scenario, {Mode.TRANSFORMERLESS: plain}, None, 0.0))
