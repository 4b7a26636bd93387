"""layout_outcomes(..., memo): layouts sharing a pool (other instance counts) reuse its priced curve and
prefill step, with the same floats as each layout priced alone."""

from __future__ import annotations

import numpy as np

from planner.decide.outcomes import layout_outcomes


def test_memo_shares_pools_and_changes_no_float(pd_example_variants):
    scenario, variants = pd_example_variants(2, 1)
    values = {"efficiency.gemm.max_frac": np.array([0.55, 0.65, 0.75])}
    memo: dict = {}
    shared = [layout_outcomes(v, scenario, values, rate_per_s=50.0, memo=memo) for v in variants]
    alone = [layout_outcomes(v, scenario, values, rate_per_s=50.0) for v in variants]
    assert sorted(k[0] for k in memo) == ["decode", "prefill"]  # one pool each, priced once
    for a, b in zip(shared, alone, strict=True):
        for f in ("goodput_requests_per_s", "decode_batch", "decode_step_s", "prefill_step_s", "ttft_s", "tpot_s"):
            assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True), f
    # two more prefill instances raise the goodput of this prefill-bound example: the check above can fail
    assert np.all(shared[1].goodput_requests_per_s > shared[0].goodput_requests_per_s)
