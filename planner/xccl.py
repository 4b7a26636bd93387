"""XCCL communication model: p2p, dispatch/combine, A2E/E2A, TP collectives, KV transfer.

Alpha-beta per fabric: ``t = call_overhead + latency + bytes / (bandwidth * eff(ranks))`` with
``eff(n) = max_frac * min(1, (decay_start_ranks / n) ** decay)`` (efficiency falls as more ranks
talk: DeepEP-Ascend 146 GB/s at EP8 to 57 GB/s at EP128).  The fabric is chosen by which dies
talk: the narrowest fabric whose one domain joins the group.  On a hierarchical machine
(NVLink servers + InfiniBand) an all-to-all over ``n`` ranks splits into traffic inside the
sender's domain and traffic across domains; the slower level sets the time.  A TP all-reduce
is a ring, or, on a fabric whose switch reduces (NVLink SHARP, ``[fabrics.in_switch_reduction]``),
the faster of the ring and the in-switch (NVLS) form per message (:func:`allreduce_s`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from planner.inputs.hardware import Fabric, HardwareSpec

Array = np.ndarray


def fabric_efficiency(fabric: Fabric, ranks: Array, decay: bool = True) -> Array:
    """Achieved fraction of line rate when ``ranks`` dies exchange data.

    ``decay=False`` gives the flat ``max_frac``: low-latency kernels (per-token messages, no
    chunked scheduling over peers) do not slow down with more ranks (DeepEP low-latency,
    DeepEP-Ascend LL: the growth from EP8 to EP256 is the growth in remote copies).
    """
    e = fabric.efficiency
    if e.decay == 0.0 or not decay:
        return e.max_frac * np.ones(np.shape(ranks))  # broadcasts a sampled (S,) max_frac too (planner/decide)
    n = np.maximum(np.asarray(ranks, dtype=float), e.decay_start_ranks)
    return e.max_frac * np.exp(e.decay * np.log(e.decay_start_ranks / n))


def transfer_s(fabric: Fabric, bytes_: Array, ranks: Array, decay: bool = True) -> Array:
    """Latency plus serialization of ``bytes_`` per die over ``fabric`` among ``ranks`` dies."""
    bytes_ = np.asarray(bytes_, dtype=float)
    wire = bytes_ / (fabric.bandwidth_bytes_per_s * fabric_efficiency(fabric, ranks, decay))
    return np.where(bytes_ > 0, fabric.latency_s + wire, 0.0)


def _levels(hw: HardwareSpec, ranks: Array) -> tuple[list[Fabric], Array]:
    """Fabrics of the hierarchy and, per candidate, the index of the one spanning ``ranks``."""
    fabrics = list(hw.fabrics)
    sizes = np.array([f.dies for f in fabrics])
    idx = np.searchsorted(sizes, np.asarray(ranks), side="left")
    return fabrics, np.minimum(idx, len(fabrics) - 1)


def distinct(targets: Array, picks: float) -> Array:
    """Expected distinct targets hit by ``picks`` uniform choices among ``targets``."""
    t = np.maximum(np.asarray(targets, dtype=float), 1.0)
    return t * (1.0 - (1.0 - 1.0 / t) ** picks)


def all_to_all_s(hw: HardwareSpec, *, bytes_per_copy: Array, tokens: Array, top_k: int, ranks: Array,
                 dedup: bool, call_s: float, recv_factor: Array | float = 1.0,
                 only_fabric: Fabric | None = None, copy_s: float = 0.0) -> Array:
    """Time of one MoE dispatch or combine among ``ranks`` EP dies, seconds, (N,).

    Parameters
    ----------
    bytes_per_copy : bytes of one token copy (hidden * bytes per element)
    tokens : tokens each die sends, (N,)
    top_k : experts per token
    dedup : send one copy per destination die/domain (DeepEP normal, prefill) rather than one
        per expert (low-latency kernels, decode)
    recv_factor : the hottest die receives ``recv_factor`` times the mean (expert imbalance)
    only_fabric : send every remote copy over this one fabric (e.g. DeepEP's pure-RDMA
        low-latency kernels, which do not use NVLink inside a server)
    copy_s : low-latency kernels only: time per remote token copy a die handles (XCCL on
        Ascend moves each token copy with its own vector-core copy; profile
        ``collectives.low_latency_copy_s``)

    Notes
    -----
    With uniform routing a token has ``k (n-1)/n`` remote copies (``(n-1)(1-(1-1/n)^k)`` with
    deduplication).  When the group spans domains of size ``s`` of a narrower fabric, copies to
    the other ``n/s - 1`` domains cross the wider fabric (deduplicated per domain when
    ``dedup``) and the rest stay inside; each level costs latency + bytes / (bw * eff(n)).
    """
    n = np.asarray(ranks, dtype=float)
    per_copy = 0.0 if dedup else tokens * top_k * (n - 1) / n * recv_factor * copy_s
    if only_fabric is not None:
        copies = distinct(n, top_k) * (n - 1) / n if dedup else top_k * (n - 1) / n
        t = transfer_s(only_fabric, tokens * copies * bytes_per_copy * recv_factor, n, decay=dedup)
        return np.where(n > 1, call_s + np.maximum(t, per_copy), 0.0)
    fabrics, top = _levels(hw, n)
    total = np.zeros(np.broadcast_shapes(n.shape, np.shape(tokens)))
    inner_size = np.ones_like(n)
    for i, fabric in enumerate(fabrics):
        outer = np.where(top == i, n, np.minimum(n, fabric.dies))
        domains = outer / inner_size
        if dedup:
            copies = (domains - 1) * (1 - (1 - inner_size / n) ** top_k)
        else:
            copies = top_k * (outer - inner_size) / n
        used = (i <= top) & (domains > 1)
        level_bytes = np.where(used, tokens * copies * bytes_per_copy * recv_factor, 0.0)
        total = np.maximum(total, transfer_s(fabric, level_bytes, n, decay=dedup))
        inner_size = np.where(i < top, np.minimum(n, fabric.dies), inner_size)
    return np.where(n > 1, call_s + np.maximum(total, per_copy), 0.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class A2ETimes:
    """One A2E (or E2A) transfer of one micro-batch, seconds, each (N,).

    ``call_s``: the transfer alone, end to end (what a benchmark of the call measures): the
    critical-path time of the micro-batch.  ``attention_link_s`` / ``expert_link_s``: how long
    the transfer's bytes hold one attention die's / the busiest expert die's link (bytes over
    bandwidth, no latency): what other micro-batches cannot hide.
    """

    call_s: Array
    attention_link_s: Array
    expert_link_s: Array


def a2e(hw: HardwareSpec, *, bytes_per_copy: float, tokens_per_attention_die: Array,
        attention_dies: Array, expert_dies: Array, top_k: int, call_s: float,
        recv_factor: Array | float = 1.0, copy_s: float = 0.0) -> A2ETimes:
    """Attention-to-expert (or expert-to-attention) transfer of one micro-batch of one domain.

    Parameters
    ----------
    bytes_per_copy : bytes of one token copy (hidden * bytes per element)
    tokens_per_attention_die : tokens each attention die sends, (N,)
    attention_dies : attention dies taking part in the call (one domain), (N,)
    expert_dies : expert dies, (N,)
    top_k : copies per token (routed experts, plus one for a replicated shared expert)
    call_s : per-call software cost (profile ``collectives.dispatch_s`` / ``combine_s``)
    recv_factor : the busiest expert die handles ``recv_factor`` times the mean (expert imbalance)
    copy_s : time per token copy at the busier end (profile ``collectives.low_latency_copy_s``)

    Notes
    -----
    Each attention die sends a token once per distinct expert die its ``k`` experts live on,
    ``c = E (1 - (1 - 1/E)^k)`` copies; the busiest expert die receives ``A T c / E`` copies
    times the imbalance.  End to end (``call_s``), the busier end sets the time:
    ``call + max(latency + bytes / bw, copies * copy_s)``.  When expert dies outnumber the
    attention dies of the call, XCCL routes in two stages through trampoline dies: one more
    latency and the forwarded copies once more, on the critical path.  Like low-latency
    dispatch, A2E/E2A send per-token messages: no rank decay of the fabric efficiency.

    The link times are bytes over the die's link bandwidth (``bw * max_frac``), per direction:
    an attention die sends ``T c`` copies (A2E; receives them back in E2A), the busiest expert
    die receives (A2E) and sends (E2A) ``A T c / E * recv_factor``.  The call's latency, its
    per-copy cost and the trampoline hop are not in them: another micro-batch's transfer runs
    while they pass (DESIGN.md section 5: the latency counts once per stage on the critical
    path, never times domains and micro-batches).
    """
    A = np.asarray(attention_dies, dtype=float)
    E = np.asarray(expert_dies, dtype=float)
    c = distinct(E, top_k)
    send_copies = tokens_per_attention_die * c
    recv_copies = A * tokens_per_attention_die * c / E * recv_factor
    send, recv = send_copies * bytes_per_copy, recv_copies * bytes_per_copy
    ranks = A + E
    fabrics, top = _levels(hw, ranks)
    shape = np.broadcast_shapes(ranks.shape, np.shape(send), np.shape(recv))
    call, att, exp = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for i, fabric in enumerate(fabrics):
        sel = top == i
        stage = np.maximum(transfer_s(fabric, np.maximum(send, recv), ranks, decay=False),
                           np.maximum(send_copies, recv_copies) * copy_s)
        second = np.where(E > A, np.maximum(transfer_s(fabric, recv, ranks, decay=False), recv_copies * copy_s), 0.0)
        rate = fabric.bandwidth_bytes_per_s * fabric_efficiency(fabric, ranks, decay=False)
        call = np.where(sel, stage + second, call)
        att = np.where(sel, send / rate, att)
        exp = np.where(sel, recv / rate, exp)
    return A2ETimes(call_s=call_s + call, attention_link_s=att, expert_link_s=exp)


class AllReduce(StrEnum):
    """Which all-reduce algorithm to price: the fastest the fabric offers (NCCL's tuner), or one."""

    FASTEST = "fastest"
    RING = "ring"
    IN_SWITCH = "in_switch"


def allreduce_s(hw: HardwareSpec, bytes_: Array, ranks: Array, call_s: float,
                algorithm: AllReduce = AllReduce.FASTEST) -> Array:
    """All-reduce of ``bytes_`` per die among ``ranks`` dies, seconds, (N,).

    Parameters
    ----------
    bytes_ : message per die (the tensor every die holds), bytes, (N,)
    ranks : dies in the group, (N,)
    call_s : per-call software cost (profile ``collectives.collective_s``)
    algorithm : ``FASTEST`` (default): per message the faster of the algorithms the fabric offers,
        as NCCL's tuner picks; ``RING`` / ``IN_SWITCH``: that one alone (a benchmark forcing
        ``NCCL_ALGO``; ``IN_SWITCH`` on a fabric without it is ``inf``)

    Notes
    -----
    Ring (every fabric): ``2 (n - 1)`` hops of the fabric latency and ``2 (n - 1) / n`` of the data
    through each die's link, ``B (= bandwidth * eff(n))``.  In-switch reduction (NVLink SHARP,
    NCCL's NVLS; fabrics with ``[fabrics.in_switch_reduction]``): the switch reads and sums the
    dies' copies of each 1/n slice (multimem.ld_reduce) and multicasts the sum back (multimem.st),
    so each die's link carries ``V = (n + 1) / n * bytes`` per direction, at a rate that rises with
    the message (pipeline fill of the chunked transfer, fewer channels for small messages):

        t = call + latency + V / (bandwidth * max_frac) * (1 + sqrt(half_rate_bytes / bytes))

    (half the asymptotic rate at ``bytes = half_rate_bytes``).  The fabric spanning the group
    (the narrowest whose domain joins ``n`` dies) carries it; an all-reduce over a wider fabric
    is a ring over that one.
    """
    n = np.asarray(ranks, dtype=float)
    b = np.asarray(bytes_, dtype=float)
    fabrics, top = _levels(hw, n)
    t = np.zeros(np.broadcast_shapes(n.shape, b.shape))
    for i, fabric in enumerate(fabrics):
        wire = 2 * (n - 1) / np.maximum(n, 1) * b / (fabric.bandwidth_bytes_per_s * fabric_efficiency(fabric, n))
        ring = 2 * (n - 1) * fabric.latency_s + wire
        isr = fabric.in_switch_reduction
        if isr is None:
            switch = np.full_like(ring, np.inf)
        else:
            rate = fabric.bandwidth_bytes_per_s * isr.max_frac
            switch = isr.latency_s + (n + 1) / np.maximum(n, 1) * (b + np.sqrt(b * isr.half_rate_bytes)) / rate
        level = {AllReduce.RING: ring, AllReduce.IN_SWITCH: switch}.get(algorithm, np.minimum(ring, switch))
        t = np.where(top == i, level, t)
    return np.where(n > 1, call_s + t, 0.0)


def p2p_s(fabric: Fabric, bytes_: Array, links: Array | float, call_s: float) -> Array:
    """Point-to-point send of ``bytes_`` spread over ``links`` parallel die links."""
    return call_s + transfer_s(fabric, np.asarray(bytes_, dtype=float) / links, 2.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallCosts:
    """Per-call software costs of the communication library (profile ``[collectives]``)."""

    dispatch_s: float
    combine_s: float
    p2p_s: float
    collective_s: float
    copy_s: float = 0.0

    @classmethod
    def of(cls, hw: HardwareSpec) -> CallCosts:
        c = hw.collectives
        return cls(dispatch_s=c.dispatch_s, combine_s=c.combine_s, p2p_s=c.p2p_s, collective_s=c.collective_s,
                   copy_s=c.low_latency_copy_s)


def kv_transfer_s(hw: HardwareSpec, *, kv_bytes: Array, same_pod: Array, links: Array, call_s: float) -> Array:
    """Move one request's KV cache from its prefill dies to its decode dies, seconds, (N,).

    Over the pod's fabric (CloudMatrix UB, NVLink) where prefill and decode sit in one pod,
    otherwise over the fabric that joins pods (RoCE, InfiniBand).  Not overlapped with prefill
    (conservative): it adds to TTFT.
    """
    inside = p2p_s(hw.pod_fabric, kv_bytes, links, call_s)
    cluster = hw.cluster_fabric
    if cluster is None:
        return inside
    return np.where(np.asarray(same_pod, dtype=bool), inside, p2p_s(cluster, kv_bytes, links, call_s))
