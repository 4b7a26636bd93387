"""small_integer_rows: the row grouping of np.unique over rows, without sorting, for small integer columns;
and a transformerless search step priced with it equals the rows priced one by one."""

from __future__ import annotations

import numpy as np

from planner.inputs.layout import Mode
from planner.inputs.scenario import build_scenario
from planner.modes import MODES
from planner.serving.context import Env
from planner.serving.transformerless import DEDUP_MIN_ROWS, small_integer_rows


def test_small_integer_rows_is_the_row_grouping_of_np_unique() -> None:
    rng = np.random.default_rng(11)
    n = 6000
    cols = [rng.choice([1.0, 2.0, 4.0, 8.0], n), rng.choice([1.0, 12.0, 48.0, 512.0, 4096.0], n),
            rng.integers(1, 5, n).astype(float), rng.random(n) > 0.7]
    _, first, inverse = np.unique(np.stack(cols, 1), axis=0, return_index=True, return_inverse=True)
    got = small_integer_rows(*cols)
    assert got is not None
    assert np.array_equal(got[0], first) and np.array_equal(got[1], inverse.reshape(-1))


def test_small_integer_rows_refuses_what_it_cannot_code_densely() -> None:
    n = 100
    assert small_integer_rows(np.full(n, 0.5)) is None            # not an integer
    assert small_integer_rows(np.full(n, -1.0)) is None           # negative
    assert small_integer_rows(np.arange(n) * 1e6) is None         # table far larger than the rows
    assert small_integer_rows(np.arange(n, dtype=float), np.arange(n, dtype=float)[::-1]) is None  # key table n^2


def test_grouped_step_equals_each_row_priced_alone() -> None:
    """A step over more than DEDUP_MIN_ROWS rows (grouped attention and expert sides) gives each row the floats
    of that row priced alone (N = 1, no grouping): bitwise, on rows with and without MTP, with and without
    shared-expert replicas on the expert dies."""
    scenario = build_scenario(None, {})
    entry = MODES[Mode.TRANSFORMERLESS]
    cands = entry.candidates(scenario.model, 768)
    rng = np.random.default_rng(3)
    rows = rng.choice(len(cands), DEDUP_MIN_ROWS + 10, replace=False)
    knobs = {k: v[rows] for k, v in cands.arrays.items()}
    for drafts in (0, 1):
        env = Env.of(scenario, draft_tokens=drafts)
        many = entry.price(env, knobs).step_s
        replicated = np.flatnonzero(knobs["shared_expert_replicas"] > 0)[:2]
        assert len(replicated) == 2
        for i in (0, 17, len(rows) - 1, *replicated):
            one = entry.price(env, {k: v[i:i + 1] for k, v in knobs.items()}).step_s
            assert one[0] == many[i], (drafts, i)


def test_sampled_hardware_is_never_grouped_by_knobs() -> None:
    """Bands price each efficiency sample on rows of its own (per-row hardware arrays, Env.per_row): rows with
    equal knobs then differ, so a transformerless step over more than DEDUP_MIN_ROWS such rows prices every
    row (it used to group them and fail to broadcast: `plan --samples 400`); each sample's decode step is the
    one a small call of that sample gives."""
    from planner.decide.bands import sample_values
    from planner.decide.outcomes import layout_outcomes
    from planner.evaluate import curve_batches
    from planner.inputs.layout import load_layout
    from planner.ops.spreads import profile_spreads

    scenario = build_scenario(None, {})
    layout = load_layout("examples/deepseek-v3-cloudmatrix384-transformerless.toml")
    samples = DEDUP_MIN_ROWS // len(curve_batches(layout)) + 8
    values = sample_values(profile_spreads(scenario.hardware), samples, 0)
    whole = layout_outcomes(layout, scenario, values).decode_step_s
    for part in (slice(0, 3), slice(samples - 3, samples)):
        alone = layout_outcomes(layout, scenario, {k: v[part] for k, v in values.items()}).decode_step_s
        assert np.array_equal(whole[part], alone)
