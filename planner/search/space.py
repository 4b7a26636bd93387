"""The knobs the search enumerates, as struct-of-arrays candidate sets with rejection reasons.

Each pool kind is a cartesian product of its knobs, filtered by divisibility and expert
placement: prefill pools here, each mode's decode instances in planner.modes (built from the
helpers here).  Knob arrays are named like the layout file's keys.  A filtered-out point is
counted under its reason, never raised.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from planner.inputs.model import ModelSpec

BATCH_GRID = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512)
# Decode batches per die past 512, for the pools whose dies hold attention and experts (pd decode,
# collocated): where memory holds them (small models, FP8 KV, large HBM; TensorRT-LLM ran 806-2,048
# sequences per GPU in the MLPerf H200 rows' published layouts) the memory fit caps each candidate.
# Not searched for transformerless attention dies (the largest pool: +35% candidates for the default
# plan, none of them feasible; +2.4% with these pools only).
LARGE_BATCHES = (768, 1024, 1536, 2048, 3072, 4096)
DECODE_BATCH_GRID = (*BATCH_GRID, *LARGE_BATCHES)
PREFILL_BATCH_TOKENS = (2048, 4096, 8192, 16384, 32768)
REDUNDANT = (0, 16, 32, 64, 128, 256)
TP_GRID = (1, 2, 4, 8)
# Dense models also search wider TP groups where the pod's fabric spans them (CloudMatrix384's UB,
# an NVL72 rack): there TP is their main lever on the weight stream per die (a 405 GB Llama-3.1-405B
# at TP8 streams 51 GB per die and step).  planner.search.plan drops a group wider than one pod
# (its all-reduce would cross the cluster fabric every layer: "tp_beyond_pod").
DENSE_TP_GRID = (*TP_GRID, 16, 32, 64)
# Pipeline stages searched for dense models (a stage holds whole layers; planner.serving.pipeline):
# Nebius's MLPerf Llama-3.1-405B Offline on 8 H200 runs TP4 PP2. MoE pools keep pp = 1 (their
# experts spread with EP; pipelined MoE is not modelled).
PP_GRID = (1, 2, 4, 8)


@dataclass
class CandidateSet:
    """Equal-length integer arrays, one per knob, plus the rejections met while building it."""

    arrays: dict[str, np.ndarray]
    rejected: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 0

    def keep(self, mask: np.ndarray, reason: str) -> None:
        """Drop the candidates where ``mask`` is False, counting them under ``reason``."""
        dropped = int((~mask).sum())
        if dropped:
            self.rejected[reason] += dropped
        for key in list(self.arrays):
            self.arrays[key] = self.arrays[key][mask]

    def take(self, index: np.ndarray) -> CandidateSet:
        return CandidateSet({k: v[index] for k, v in self.arrays.items()}, Counter())


def product(**axes: tuple[int, ...] | list[int] | np.ndarray) -> CandidateSet:
    """Cartesian product of the given axes as flat int64 arrays."""
    grids = np.meshgrid(*[np.asarray(v, dtype=np.int64) for v in axes.values()], indexing="ij")
    return CandidateSet({k: g.reshape(-1) for k, g in zip(axes, grids, strict=True)})


def _divisors(n: int, lo: int, hi: int) -> list[int]:
    return [d for d in range(max(lo, 1), min(n, hi) + 1) if n % d == 0]


# Replicas of the shared experts placed on expert slots (0: on the token die), searched where the
# model has shared experts and EP is wide enough (>= 128) that one or two experts share a die
# (CloudMatrix-Infer and xDeepServe replicate DeepSeek's shared expert 32 times at EP320 / EP288).
SHARED_REPLICAS = (32,)
SHARED_REPLICAS_MIN_EP = 128


def expert_die_counts(model: ModelSpec, budget: int, redundant: tuple[int, ...]) -> list[tuple[int, int]]:
    """(EP degree, redundant experts) pairs that place every expert replica evenly."""
    return [(ep, r) for ep, r, _ in expert_placements(model, budget, redundant, shared=(0,))]


def expert_placements(model: ModelSpec, budget: int, redundant: tuple[int, ...],
                      shared: tuple[int, ...] = (0, *SHARED_REPLICAS)) -> list[tuple[int, int, int]]:
    """(EP degree, redundant experts, shared-expert replicas) that place every slot evenly on ``ep`` dies."""
    E = model.ffn.num_routed_experts
    shared = shared if model.ffn.num_shared_experts else (0,)
    out = []
    for k in shared:
        for r in redundant:
            out += [(ep, r, k) for ep in _divisors(E + r + k, 1, budget) if k == 0 or ep >= SHARED_REPLICAS_MIN_EP]
    return out


def tp_choices(model: ModelSpec, limit: int) -> list[int]:
    """TP degrees that divide the attention heads, up to ``limit`` dies (wider grid for dense models)."""
    heads = model.attention.num_heads
    grid = TP_GRID if model.is_moe else DENSE_TP_GRID
    return [t for t in grid if t <= limit and heads % t == 0]


def shared_die_pools(model: ModelSpec, budget: int, *, knob: str, knob_values: tuple[int, ...],
                     micro_batches: tuple[int, ...], shared: tuple[int, ...] = (0,)) -> CandidateSet:
    """Pools whose dies hold attention and experts (prefill, pd decode, collocated).

    ``dies`` per instance = ``ep * replicas`` for MoE models (replicas in 1, 2, 4 of the expert
    set), a multiple of ``tp``, ``pp = 1``; for dense models one pipeline of ``pp`` stages of one
    TP group each per instance (``dies = tp * pp``).
    """
    tps = tp_choices(model, budget)
    if not model.is_moe:
        pps = [p for p in PP_GRID if p <= model.num_layers]
        c = product(tp=tps, pp=pps, **{knob: knob_values}, micro_batches=micro_batches)
        c.keep(c.arrays["tp"] * c.arrays["pp"] <= budget, "over_budget")
        c.arrays.update(dies=c.arrays["tp"] * c.arrays["pp"], ep=np.ones_like(c.arrays["tp"]),
                        redundant_experts=np.zeros_like(c.arrays["tp"]))
        return c
    pairs = np.array(expert_placements(model, budget, REDUNDANT, shared), dtype=np.int64).reshape(-1, 3)
    c = product(pair=np.arange(len(pairs)), replicas=(1, 2, 4), tp=tps, **{knob: knob_values},
                micro_batches=micro_batches)
    a = c.arrays
    pair = a.pop("pair")
    a["ep"], a["redundant_experts"] = pairs[pair, 0], pairs[pair, 1]
    if shared != (0,):
        a["shared_expert_replicas"] = pairs[pair, 2]
    a["dies"] = a["ep"] * a.pop("replicas")
    a["pp"] = np.ones_like(a["dies"])
    c.keep(a["dies"] <= budget, "over_budget")
    c.keep(a["dies"] % a["tp"] == 0, "tp_not_dividing_dies")
    c.keep((a["ep"] > 1) | (a["redundant_experts"] == 0), "redundancy_without_ep")
    return c


def prefill_pools(model: ModelSpec, budget: int) -> CandidateSet:
    """Prefill instances: dies, tp, pp, ep, redundant experts, batch tokens per die, micro-batches."""
    return shared_die_pools(model, budget, knob="batch_tokens", knob_values=PREFILL_BATCH_TOKENS,
                            micro_batches=(1, 2))
