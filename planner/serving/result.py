"""Result of a step-time model for one pool, arrays over candidates."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from planner.cost.roofline import Array
from planner.serving.layers import LayerCost


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolStep:
    """One iteration (decode step or prefill forward) of a pool, per candidate.

    ``layers`` holds, per layer class, the per-micro-batch cost of one layer on one die;
    ``layer_s`` the per-layer time with the micro-batch overlap applied; ``extra`` the costs
    paid once per iteration (LM head, MTP, pipeline tail, scheduler gap).

    Chunked prefill (collocated): every field is the mean over steps with and without a prefill
    chunk (a share ``chunk_fraction`` carries one, planner.goodput.chunk_fraction);
    ``plain_step_s`` / ``chunk_step_s`` are the two step times.  None outside chunked prefill.
    """

    step_s: Array
    layers: dict[str, LayerCost]
    layer_s: dict[str, Array]
    layer_counts: dict[str, int]
    extra: dict[str, Array]
    memory: dict[str, Array]
    capacity_bytes: float
    fits: Array
    max_batch: Array = field(default_factory=lambda: np.zeros(0))
    plain_step_s: Array | None = None
    chunk_step_s: Array | None = None
    chunk_fraction: Array | None = None

