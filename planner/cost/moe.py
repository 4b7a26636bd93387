"""MoE units: router, shared experts, routed experts on expert dies, and load imbalance.

Load imbalance: the slowest die sets the time.  Per-expert popularity is modelled as the
quantiles of a log-normal whose hottest expert sees ``hot_expert_ratio`` times the mean load
(DESIGN.md section 3: up to 30x on one layer).  Expert placement follows EPLB: redundant
replicas go one by one to the expert with the highest load per replica, then the replicas are
packed onto the EP dies by longest-processing-time-first with an equal number of slots per die.
On top of that static imbalance, the tokens a die receives in one step are Poisson: the
expected maximum over ``n`` dies adds ``z(n) * sqrt(load)`` (``z(n)`` = expected largest of
``n`` standard normals, Blom's approximation).
"""

from __future__ import annotations

import heapq
from functools import lru_cache

import numpy as np
from scipy.special import ndtri

from planner.cost.precision import BytesPerElement
from planner.cost.roofline import Array, Cost, Device, gemm
from planner.inputs.model import ModelSpec


def expected_max_normal(n: Array) -> Array:
    """Expected largest of ``n`` i.i.d. standard normals (Blom), 0 for n <= 1."""
    n = np.asarray(n, dtype=float)
    z = ndtri((np.maximum(n, 1.0) - 0.375) / (np.maximum(n, 1.0) + 0.25))
    return np.where(n > 1, z, 0.0)


@lru_cache(maxsize=64)
def popularity(num_experts: int, hot_expert_ratio: float) -> tuple[float, ...]:
    """Expected load share of each expert, hottest first, summing to 1.

    Log-normal quantiles ``exp(sigma * z_i)`` at ``z_i = Phi^-1((E - i + 0.5) / E)`` with sigma
    solved so that the hottest share is ``hot_expert_ratio / E``.
    """
    E = num_experts
    z = ndtri((np.arange(E, 0, -1) - 0.5) / E)
    if hot_expert_ratio <= 1.0 or E == 1:
        return tuple(np.full(E, 1.0 / E))
    lo, hi = 0.0, 20.0
    for _ in range(100):
        sigma = 0.5 * (lo + hi)
        w = np.exp(sigma * (z - z[0]))
        ratio = E / w.sum()
        lo, hi = (sigma, hi) if ratio < hot_expert_ratio else (lo, sigma)
    w = np.exp(0.5 * (lo + hi) * (z - z[0]))
    return tuple(w / w.sum())


@lru_cache(maxsize=4096)
def eplb_static_imbalance(num_experts: int, hot_expert_ratio: float, ep: int, redundant: int) -> float:
    """Max over EP dies of the expected load, divided by the mean, after EPLB placement."""
    p = np.asarray(popularity(num_experts, hot_expert_ratio))
    replicas = np.ones(num_experts, dtype=int)
    heap = [(-share, i) for i, share in enumerate(p)]
    heapq.heapify(heap)
    for _ in range(redundant):
        _, i = heapq.heappop(heap)
        replicas[i] += 1
        heapq.heappush(heap, (-p[i] / replicas[i], i))
    items = np.sort(np.repeat(p / replicas, replicas))[::-1]
    slots = (num_experts + redundant) // ep
    loads = [(0.0, d) for d in range(ep)]
    heapq.heapify(loads)
    used = np.zeros(ep, dtype=int)
    full: list[tuple[float, int]] = []
    for share in items:
        load, d = heapq.heappop(loads)
        used[d] += 1
        if used[d] < slots:
            heapq.heappush(loads, (load + share, d))
        else:
            full.append((load + share, d))
    best = max([x[0] for x in loads] + [x[0] for x in full])
    return float(best * ep)


def static_imbalance(model: ModelSpec, *, ep: Array, redundant: Array, skewed: bool,
                     hot_expert_ratio: float) -> Array:
    """EPLB static imbalance (max die load / mean) per candidate; exactly 1 when balanced, (N,)."""
    ep = np.asarray(ep)
    shape = np.broadcast_shapes(ep.shape, np.shape(redundant))
    if not skewed or not model.is_moe:
        return np.ones(shape)
    key = (np.broadcast_to(ep, shape).astype(np.int64) << 20) + np.broadcast_to(redundant, shape).astype(np.int64)
    uniq, inverse = np.unique(key.reshape(-1), return_inverse=True)
    E = model.ffn.num_routed_experts
    table = np.array([eplb_static_imbalance(E, hot_expert_ratio, int(k >> 20), int(k & 0xFFFFF)) for k in uniq])
    return table[inverse].reshape(shape)


def expert_imbalance(model: ModelSpec, *, ep: Array, redundant: Array, copies_per_die: Array, skewed: bool,
                     hot_expert_ratio: float, static: Array | None = None) -> Array:
    """Expected max-over-dies / mean of the token copies an expert die receives, (N,).

    ``static`` (from :func:`static_imbalance`) may be passed in to avoid recomputing it.
    ``perfect`` balance (``skewed=False``) is exactly 1.
    """
    if not skewed or not model.is_moe:
        return np.ones(np.broadcast_shapes(np.shape(ep), np.shape(copies_per_die)))
    if static is None:
        static = static_imbalance(model, ep=ep, redundant=redundant, skewed=skewed, hot_expert_ratio=hot_expert_ratio)
    mean = np.maximum(np.asarray(copies_per_die, dtype=float), 1e-9)
    return static + expected_max_normal(ep) * np.sqrt(static / mean)


def router(dev: Device, model: ModelSpec, by: BytesPerElement, *, tokens: Array, launch_s: float | Array = 0.0) -> Cost:
    """Router GEMM ``[M x h] @ [h x E]`` (kept in bf16, as DeepSeek-V3's gate)."""
    f = model.ffn
    return gemm(dev, tokens, f.num_routed_experts, model.hidden, weight_bytes=by.head, act_bytes=by.out,
                out_bytes=4.0, launch_s=launch_s)


def shared_experts(dev: Device, model: ModelSpec, by: BytesPerElement, *, tokens: Array, tp: Array | float = 1.0,
                   launch_s: float | Array = 0.0) -> dict[str, Cost]:
    """Shared experts on the die that holds the tokens (DP, as DeepSeek runs them)."""
    f = model.ffn
    if not f.num_shared_experts:
        return {}
    inter = f.num_shared_experts * f.shared_expert_intermediate_size / np.asarray(tp, dtype=float)
    kw = dict(weight_bytes=by.weight, act_bytes=by.act, out_bytes=by.out, launch_s=launch_s)
    return {"shared_gate_up": gemm(dev, tokens, 2 * inter, model.hidden, **kw),
            "shared_down": gemm(dev, tokens, model.hidden, inter, **kw)}


def routed_experts(dev: Device, model: ModelSpec, by: BytesPerElement, *, copies: Array, slots: Array,
                   launch_s: float | Array = 0.0) -> dict[str, Cost]:
    """Grouped expert GEMMs on one expert die.

    Parameters
    ----------
    copies : token copies this die computes (already scaled by the imbalance), (N,)
    slots : expert replicas hosted on the die, (N,)

    Notes
    -----
    Tokens per hosted expert ``lam = copies / slots``; an expert's weights are read only if at
    least one token reaches it, probability ``1 - exp(-lam)`` (Poisson arrivals), which is
    what makes small decode batches weight-bandwidth bound.
    """
    f = model.ffn
    lam = copies / slots
    hit = 1.0 - np.exp(-lam)
    inter = f.moe_intermediate_size
    kw = dict(weight_bytes=by.weight, act_bytes=by.act, out_bytes=by.out, count=slots,
              weights_read_frac=hit, launch_s=launch_s)
    return {"experts_gate_up": gemm(dev, lam, 2 * inter, model.hidden, **kw),
            "experts_down": gemm(dev, lam, model.hidden, inter, **kw)}
