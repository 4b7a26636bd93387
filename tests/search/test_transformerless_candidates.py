"""The transformerless candidate set built factor by factor equals the whole product filtered rule by rule:
the same rows in the same order and the same rejection counts (the search's row order breaks ties)."""

from __future__ import annotations

import numpy as np
import pytest

from planner import catalog
from planner.modes import transformerless as tl
from planner.search import space


def _reference(model, budget: int) -> space.CandidateSet:
    """The product of every knob, then each rule applied in turn (as the search built it before)."""
    pairs = np.array([p for p in space.expert_placements(model, budget, space.REDUNDANT) if p[0] >= 2],
                     dtype=np.int64).reshape(-1, 3)
    attention = [a for a in sorted(set(range(8, 129, 8)) | set(range(128, budget + 1, 32))) if a < budget]
    tps = [1] if not model.attention.decode_tp_useful else space.tp_choices(model, 8)
    c = space.product(pair=np.arange(len(pairs)), attention_dies=attention, domains=tl.DOMAINS, tp=tps,
                      batch=space.BATCH_GRID, micro_batches=(1, 2, 3, 4))
    a = c.arrays
    pair = a.pop("pair")
    a["expert_dies"], a["redundant_experts"] = pairs[pair, 0], pairs[pair, 1]
    a["shared_expert_replicas"] = pairs[pair, 2]
    a["ep"] = a["expert_dies"].copy()
    c.keep(a["attention_dies"] + a["expert_dies"] <= budget, "over_budget")
    c.keep(a["attention_dies"] % (a["domains"] * a["tp"]) == 0, "domains_or_tp_not_dividing_attention_dies")
    c.keep(a["batch"] % a["micro_batches"] == 0, "batch_not_multiple_of_micro_batches")
    return c


@pytest.mark.parametrize(("model", "budget"), [("deepseek-v3", 256), ("qwen3-235b-a22b", 64), ("deepseek-v3", 48)])
def test_candidates_equal_the_filtered_product(model: str, budget: int) -> None:
    spec = catalog.model(model)
    got, want = tl.candidates(spec, budget), _reference(spec, budget)
    assert list(got.arrays) == list(want.arrays)
    for k in want.arrays:
        assert got.arrays[k].dtype == want.arrays[k].dtype and np.array_equal(got.arrays[k], want.arrays[k]), k
    assert got.rejected == want.rejected and all(v > 0 for v in got.rejected.values())
