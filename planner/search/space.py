"""The knobs the search enumerates, as struct-of-arrays candidate sets with rejection reasons.

Each pool kind (prefill, pd decode, collocated, transformerless decode) is a cartesian
product of its knobs, filtered by divisibility and expert placement.  A filtered-out point is
counted under its reason, never raised.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from planner.spec.model import ModelSpec

BATCH_GRID = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512)
PREFILL_BATCH_TOKENS = (2048, 4096, 8192, 16384, 32768)
CHUNK_TOKENS = (256, 512, 1024, 2048, 4096)
REDUNDANT = (0, 16, 32, 64, 128, 256)
TP_GRID = (1, 2, 4, 8)
DOMAINS = (1, 2, 4, 8)


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


def expert_die_counts(model: ModelSpec, budget: int, redundant: tuple[int, ...]) -> list[tuple[int, int]]:
    """(EP degree, redundant experts) pairs that place every expert replica evenly."""
    E = model.file.ffn.num_routed_experts
    pairs = []
    for r in redundant:
        for ep in _divisors(E + r, 1, budget):
            pairs.append((ep, r))
    return pairs


def tp_choices(model: ModelSpec, limit: int) -> list[int]:
    heads = model.file.attention.num_heads
    return [t for t in TP_GRID if t <= limit and heads % t == 0]


def shared_die_pools(model: ModelSpec, budget: int, *, knob: str, knob_values: tuple[int, ...],
                     micro_batches: tuple[int, ...]) -> CandidateSet:
    """Pools whose dies hold attention and experts (prefill, pd decode, collocated).

    ``dies`` per instance = ``ep * replicas`` for MoE models (replicas in 1, 2, 4 of the expert
    set), a multiple of ``tp``; for dense models one TP group per instance (``dies = tp``).
    """
    tps = tp_choices(model, budget)
    if not model.is_moe:
        c = product(tp=tps, **{knob: knob_values}, micro_batches=micro_batches)
        c.arrays.update(dies=c.arrays["tp"].copy(), ep=np.ones_like(c.arrays["tp"]),
                        redundant=np.zeros_like(c.arrays["tp"]))
        return c
    pairs = np.array(expert_die_counts(model, budget, REDUNDANT), dtype=np.int64).reshape(-1, 2)
    c = product(pair=np.arange(len(pairs)), replicas=(1, 2, 4), tp=tps, **{knob: knob_values},
                micro_batches=micro_batches)
    a = c.arrays
    pair = a.pop("pair")
    a["ep"], a["redundant"] = pairs[pair, 0], pairs[pair, 1]
    a["dies"] = a["ep"] * a.pop("replicas")
    c.keep(a["dies"] <= budget, "over_budget")
    c.keep(a["dies"] % a["tp"] == 0, "tp_not_dividing_dies")
    c.keep((a["ep"] > 1) | (a["redundant"] == 0), "redundancy_without_ep")
    return c


def prefill_pools(model: ModelSpec, budget: int) -> CandidateSet:
    """Prefill instances: dies, tp, ep, redundant experts, batch tokens per die, micro-batches."""
    return shared_die_pools(model, budget, knob="batch_tokens", knob_values=PREFILL_BATCH_TOKENS,
                            micro_batches=(1, 2))


def pd_decode_pools(model: ModelSpec, budget: int) -> CandidateSet:
    """pd decode instances: dies, tp, ep, redundant experts, batch per die, micro-batches."""
    c = shared_die_pools(model, budget, knob="batch", knob_values=BATCH_GRID, micro_batches=(1, 2))
    c.keep(c.arrays["batch"] % c.arrays["micro_batches"] == 0, "batch_not_multiple_of_micro_batches")
    if model.is_mla:
        c.keep(c.arrays["tp"] == 1, "mla_decode_tp_dominated")
    return c


def collocated_pools(model: ModelSpec, budget: int) -> CandidateSet:
    """Collocated instances: pd-decode knobs plus the prefill chunk per die and step."""
    c = pd_decode_pools(model, budget)
    n = len(c)
    chunks = np.asarray(CHUNK_TOKENS, dtype=np.int64)
    for key in list(c.arrays):
        c.arrays[key] = np.repeat(c.arrays[key], len(chunks))
    c.arrays["chunk_tokens"] = np.tile(chunks, n)
    return c


def transformerless_pools(model: ModelSpec, budget: int) -> CandidateSet:
    """Transformerless decode instances: attention dies, expert dies (= ep), domains, tp, batch,
    micro-batches, redundant experts."""
    if not model.is_moe:
        return CandidateSet({k: np.zeros(0, dtype=np.int64) for k in
                             ("attention_dies", "expert_dies", "domains", "tp", "ep", "batch", "micro_batches",
                              "redundant")})
    pairs = np.array([p for p in expert_die_counts(model, budget, REDUNDANT) if p[0] >= 2], dtype=np.int64)
    attention = [a for a in sorted(set(range(8, 129, 8)) | set(range(128, budget + 1, 32))) if a < budget]
    tps = [1] if model.is_mla else tp_choices(model, 8)
    c = product(pair=np.arange(len(pairs)), attention_dies=attention, domains=DOMAINS, tp=tps, batch=BATCH_GRID,
                micro_batches=(1, 2, 3, 4))
    a = c.arrays
    pair = a.pop("pair")
    a["expert_dies"], a["redundant"] = pairs[pair, 0], pairs[pair, 1]
    a["ep"] = a["expert_dies"].copy()
    c.keep(a["attention_dies"] + a["expert_dies"] <= budget, "over_budget")
    c.keep(a["attention_dies"] % (a["domains"] * a["tp"]) == 0, "domains_or_tp_not_dividing_attention_dies")
    c.keep(a["batch"] % a["micro_batches"] == 0, "batch_not_multiple_of_micro_batches")
    return c
