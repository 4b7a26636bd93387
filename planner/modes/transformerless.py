"""transformerless: attention dies and expert dies of one decode instance, domains taking turns."""

from __future__ import annotations

from collections import Counter

import numpy as np

from planner.inputs.layout import Mode
from planner.inputs.model import ModelSpec
from planner.modes import pd
from planner.modes.base import Knobs, ModeEntry, knob
from planner.search import space
from planner.search.space import CandidateSet
from planner.serving.transformerless import (
    TransformerlessArrays,
    transformerless_fits,
    transformerless_step,
    transformerless_step_floor,
)

DOMAINS = (1, 2, 4, 8)
# The smallest instance the search enumerates: attention dies in steps of 8 (to 128, then of 32), and an
# expert side of at least 2 dies (one expert die would be a pd decode pool's all-to-all to itself).
ATTENTION_DIES_STEP = 8
MIN_EXPERT_DIES = 2
KEYS = ("attention_dies", "expert_dies", "domains", "tp", "ep", "batch", "micro_batches", "redundant_experts",
        "shared_expert_replicas")


def candidates(model: ModelSpec, budget: int) -> CandidateSet:
    """Transformerless decode instances: attention dies, expert dies (= ep), domains, tp, batch,
    micro-batches, redundant experts."""
    if not model.is_moe:
        return CandidateSet({k: np.zeros(0, dtype=np.int64) for k in KEYS})
    pairs = np.array([p for p in space.expert_placements(model, budget, space.REDUNDANT) if p[0] >= MIN_EXPERT_DIES],
                     dtype=np.int64).reshape(-1, 3)
    step = ATTENTION_DIES_STEP
    attention = [a for a in sorted(set(range(step, 129, step)) | set(range(128, budget + 1, 32))) if a < budget]
    tps = [1] if not model.attention.decode_tp_useful else space.tp_choices(model, 8)
    # The product (pair, attention dies, domains, tp) x (batch, micro-batches) in that order, filtered: each
    # rule reads one factor, so each factor is filtered alone and the survivors crossed (same rows, same order
    # and counts as filtering the whole product rule by rule; 1.5 M rows are never built).
    head = space.product(pair=np.arange(len(pairs)), attention_dies=attention, domains=DOMAINS, tp=tps).arrays
    tail = space.product(batch=space.BATCH_GRID, micro_batches=(1, 2, 3, 4)).arrays
    in_budget = head["attention_dies"] + pairs[head["pair"], 0] <= budget
    divides = head["attention_dies"] % (head["domains"] * head["tp"]) == 0
    whole = tail["batch"] % tail["micro_batches"] == 0
    rejected = Counter({"over_budget": int((~in_budget).sum()) * len(whole),
                        "domains_or_tp_not_dividing_attention_dies": int((in_budget & ~divides).sum()) * len(whole),
                        "batch_not_multiple_of_micro_batches": int((in_budget & divides).sum()) * int((~whole).sum())})
    h, t = np.flatnonzero(in_budget & divides), np.flatnonzero(whole)
    rows_h, rows_t = np.repeat(h, len(t)), np.tile(t, len(h))
    a = {k: head[k][rows_h] for k in ("attention_dies", "domains", "tp")}
    a.update({k: tail[k][rows_t] for k in ("batch", "micro_batches")})
    pair = head["pair"][rows_h]
    a["expert_dies"], a["redundant_experts"] = pairs[pair, 0], pairs[pair, 1]
    a["shared_expert_replicas"] = pairs[pair, 2]
    a["ep"] = a["expert_dies"].copy()
    return CandidateSet(a, +rejected)  # unary +: reasons that rejected nothing are left out


def step_arrays(k: Knobs) -> TransformerlessArrays:
    return TransformerlessArrays(attention_dies=knob(k, "attention_dies"), expert_dies=knob(k, "expert_dies"),
                                 domains=knob(k, "domains"), tp=knob(k, "tp"), ep=knob(k, "ep"),
                                 batch=knob(k, "batch"), micro_batches=knob(k, "micro_batches"),
                                 redundant=knob(k, "redundant_experts"), shared_replicas=pd.replicas(k))


def summary(d: Knobs) -> str:
    shared = f" S{d['shared_expert_replicas']}" if d.get("shared_expert_replicas") else ""
    return (f"D {d['instances']}x[{d['attention_dies']} attn ({d['domains']} dom) + {d['expert_dies']} exp] "
            f"b{d['batch']} m{d['micro_batches']} R{d['redundant_experts']}{shared}")


TRANSFORMERLESS = ModeEntry(
    mode=Mode.TRANSFORMERLESS, prefill_pool=True, decode_keys=KEYS, candidates=candidates, step_arrays=step_arrays,
    fits=transformerless_fits, step=transformerless_step, attention_dies=lambda k: knob(k, "attention_dies"),
    instance_dies=lambda k: knob(k, "attention_dies") + knob(k, "expert_dies"), summary=summary,
    step_floor=transformerless_step_floor)
