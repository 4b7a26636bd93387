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


@pytest.mark.parametrize("tpot_s", [0.05, 0.004])
def test_collocated_groups_missing_at_an_empty_pool_are_the_plain_score(tpot_s: float) -> None:
    """Chunked prefill: the rows of a knob group whose TPOT misses the SLO at the group's lightest point are
    left unpriced (nan steps); rates, feasibility, rejected counts, every priced row's steps and the near
    misses equal the score that prices every fitting row, bitwise; the plain score gives those rows rate 0."""
    scenario = build_scenario(None, {"slo": {"tpot_s": tpot_s}}, "test")
    entry = MODES[Mode.COLLOCATED]
    cands = entry.candidates(scenario.model, 768)
    cands = cands.take(np.flatnonzero(np.isin(cands.arrays["dies"], (16, 24, 32))))  # whole knob groups
    fast = score_decode(scenario, cands, entry)
    plain = score_decode(scenario, cands, entry, floors=False)
    f = fast.floored
    assert not plain.floored.any() and f.sum() > 0.5 * (plain.max_batch >= plain.batch).sum()
    assert fast.rejected == plain.rejected and (tpot_s < 0.01 or fast.ok.sum() > 0)
    for name in ("ok", "rate_per_s", "dies", "batch", "max_batch", "sequences", "mtp"):
        assert np.array_equal(getattr(fast, name), getattr(plain, name)), name
    for name in ("step_s", "tpot_s", "tpot_slo_s", "chunk_step_s", "plain_step_s"):
        assert np.array_equal(getattr(fast, name)[~f], getattr(plain, name)[~f]), name
        assert np.isnan(getattr(fast, name)[f]).all(), name
    assert np.all(plain.rate_per_s[f] == 0) and not plain.ok[f].any()
    assert (_near_misses(scenario, {Mode.COLLOCATED: fast}, None, 0.0)
            == _near_misses(scenario, {Mode.COLLOCATED: plain}, None, 0.0))
