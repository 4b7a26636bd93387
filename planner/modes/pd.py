"""pd: prefill and decode on separate pools; each decode die runs attention and its expert slots."""

from __future__ import annotations

import numpy as np

from planner.inputs.layout import Mode
from planner.inputs.model import ModelSpec
from planner.modes.base import Knobs, ModeEntry, knob, stages
from planner.search import space
from planner.search.space import CandidateSet
from planner.serving.decode import DecodeArrays, decode_fits, shared_decode_step


def candidates(model: ModelSpec, budget: int) -> CandidateSet:
    """pd decode instances: dies, tp, ep, redundant experts, batch per die, micro-batches."""
    c = space.shared_die_pools(model, budget, knob="batch", knob_values=space.DECODE_BATCH_GRID, micro_batches=(1, 2),
                               shared=(0, *space.SHARED_REPLICAS))
    if "shared_expert_replicas" not in c.arrays:
        c.arrays["shared_expert_replicas"] = np.zeros_like(c.arrays["batch"])
    c.keep(c.arrays["batch"] % c.arrays["micro_batches"] == 0, "batch_not_multiple_of_micro_batches")
    if not model.attention.decode_tp_useful:
        c.keep(c.arrays["tp"] == 1, "mla_decode_tp_dominated")
    return c


def step_arrays(k: Knobs) -> DecodeArrays:
    chunk = knob(k, "prefill_chunk_tokens") if "prefill_chunk_tokens" in k else 0.0 * knob(k, "batch")
    return DecodeArrays(dies=knob(k, "dies"), tp=knob(k, "tp"), ep=knob(k, "ep"), batch=knob(k, "batch"),
                        micro_batches=knob(k, "micro_batches"), redundant=knob(k, "redundant_experts"),
                        chunk_tokens=chunk, shared_replicas=replicas(k), pp=stages(k))





def replicas(k: Knobs):
    """Shared-expert replicas on expert slots (a layout's None and a missing knob are 0: on the token die)."""
    value = k.get("shared_expert_replicas")
    return 0.0 * knob(k, "batch") if value is None else knob(k, "shared_expert_replicas")


def dies(k: Knobs):
    return knob(k, "dies")


def summary(d: Knobs) -> str:
    shared = f" S{d['shared_expert_replicas']}" if d.get("shared_expert_replicas") else ""
    pp = f" pp{d['pp']}" if (d.get("pp") or 1) > 1 else ""
    return (f"D {d['instances']}x{d['dies']} tp{d['tp']}{pp} ep{d['ep']} b{d['batch']} m{d['micro_batches']} "
            f"R{d['redundant_experts']}{shared}")


PD = ModeEntry(mode=Mode.PD, prefill_pool=True,
               decode_keys=("dies", "tp", "pp", "ep", "batch", "micro_batches", "redundant_experts",
                            "shared_expert_replicas"),
               candidates=candidates, step_arrays=step_arrays, fits=decode_fits, step=shared_decode_step,
               attention_dies=dies, instance_dies=dies, summary=summary)
