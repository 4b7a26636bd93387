"""How one layer's micro-batches overlap communication with compute, per platform family.

The hardware profile's ``[overlap] discipline`` names the discipline its serving stack follows
(DESIGN.md section 5); every function here takes one layer class's per-micro-batch costs
(:class:`~planner.serving.layers.LayerCost`) and returns the time of one layer for ``m``
micro-batches, arrays of shape (N,).  ``m = 1`` is always serial: compute then communication.

- ``ideal``: ``max(m c, m k)``, every byte hidden under another micro-batch's compute (an
  upper bound on what any stack achieves; the default of a profile without the key).
- ``gpu-two-batch`` (DeepSeek's two-batch overlap, reference rows C_o1-C_o3):
  low-latency all-to-all (DeepEP LL: no SMs in flight) pairs each communication with one stage
  of the other micro-batch, ``max(stage, its comm)``: dispatch under shared experts + attention
  projections, the expert MLP with nothing in flight, combine under core attention + o_proj.
  Normal-mode all-to-all (prefill) takes ``comm_sm_frac`` of the SMs for the whole overlapped
  forward (DeepSeek: 24 of 132), so the compute side of every op runs on the rest.
- ``ascend-multi-stream`` (cann-recipes, rows B_l1-B_l2): attention and MoE run as concurrent
  streams on split cube/vector cores; a kernel on a share ``f`` of the cores takes ``f ** -a``
  times its full-die time (fitted on B_l1), and the two streams share the die's HBM bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.cost.roofline import Array, Cost
from planner.inputs.files import OverlapDiscipline
from planner.inputs.hardware import Overlap

# Stages of one micro-batch (DeepSeek profile-data decode.jpg: ATTN-0, SHARED, MLP, ATTN-1).
PROJECTIONS, SHARED, EXPERTS, CORE, WAIT = "projections", "shared", "experts", "core", "wait"
_PROJECTION_OPS = {"q_a_proj", "q_b_proj", "q_proj", "kv_a_proj", "kv_b_proj", "absorb_uk", "qkv_proj", "elementwise",
                   "mla_prolog"}


def stage_of(op: str) -> str:
    """The stage an op of a layer belongs to (by its name in the layer's ``ops``)."""
    if op.endswith("_wait"):
        return WAIT
    if op in _PROJECTION_OPS:
        return PROJECTIONS
    if op.startswith("shared_"):
        return SHARED
    if op.startswith(("experts_", "expert_", "ffn_")) or op.endswith("_replica"):
        return EXPERTS
    return CORE  # core, absorb_uv, o_proj, router, prefill chunk ops


@dataclass(frozen=True, slots=True)
class Pairing:
    """One layer under a discipline: its time, and per pair (stage, communication) what the
    compute side takes, what the communication takes, and the waiting (comm beyond the stage)."""

    layer_s: Array
    tail_s: Array
    pairs: dict[str, tuple[Array, Array]]  # pair name -> (stage compute s, paired communication s), per micro-batch

    def waiting_s(self) -> dict[str, Array]:
        return {name: np.maximum(comm - stage, 0.0) for name, (stage, comm) in self.pairs.items()}


def core_split_slowdown(core_frac: float | Array, exponent: float) -> float | Array:
    """How many times longer a kernel takes on a share ``f`` of the die's cores: ``f ** -a``.

    Notes
    -----
    Fitted on row B_l1 (cann-recipes LongCat-Flash decode ops on 12C/24V vs 24C/48V of an A3
    die: 1.23-1.57x at f = 1/2; ``a`` in the profile's ``[overlap] core_split_exponent``).  Decode
    kernels are largely memory- or latency-bound, so halving the cores costs far less than 2x.
    """
    return np.asarray(core_frac, dtype=float) ** -exponent


def _time(cost: Cost, compute_share: float) -> Array:
    """An op's time with its compute side on ``compute_share`` of the compute units."""
    overhead = cost.time_s - np.maximum(cost.compute_s, cost.memory_s)
    return np.maximum(cost.compute_s / compute_share, cost.memory_s) + overhead


def _stages(ops: dict[str, Cost], compute_share: float = 1.0, slowdown: float = 1.0) -> dict[str, Array]:
    like = np.zeros_like(next(iter(ops.values())).time_s)
    out = {s: like.copy() for s in (PROJECTIONS, SHARED, EXPERTS, CORE, WAIT)}
    for name, cost in ops.items():
        out[stage_of(name)] = out[stage_of(name)] + _time(cost, compute_share) * slowdown
    return out


def _comm_names(comm: dict[str, Array]) -> tuple[str, str]:
    """What the (dispatch side, combine side) communications are, for the pair names: the all-to-all
    halves, a TP group's all-reduces (a dense model's layer, or ep = 1), or both."""
    def name(a2a: str, allreduce: str, label: str) -> str:
        parts = [a2a] if a2a in comm else []
        return " + ".join(parts + [label] if allreduce in comm else parts) or a2a
    return (name("dispatch", "tp_allreduce_attention", "attention all-reduce"),
            name("combine", "tp_allreduce_ffn", "FFN all-reduce"))


def _comm(comm: dict[str, Array], like: Array) -> tuple[Array, Array]:
    """(dispatch side, combine side): the all-to-all halves, each with the TP all-reduce before it."""
    zero = np.zeros_like(like)
    first = zero + comm.get("dispatch", 0.0) + comm.get("tp_allreduce_attention", 0.0)
    second = zero + comm.get("combine", 0.0) + comm.get("tp_allreduce_ffn", 0.0)
    return first, second


def ideal(ops: dict[str, Cost], comm: dict[str, Array], m: Array) -> Pairing:
    """``max(m c, m k)`` per layer and the unhidden ``min(c, k)`` once per step."""
    c = sum(cost.time_s for cost in ops.values())
    k = sum(comm.values(), np.zeros_like(c))
    return Pairing(np.maximum(m * c, m * k), np.minimum(c, k), {"all": (c, k)})


def stage_paired(ops: dict[str, Cost], comm: dict[str, Array], m: Array,
                 stream_s: tuple[float, float] = (0.0, 0.0)) -> Pairing:
    """GPU low-latency two-batch overlap: per micro-batch ``max(P + S + s_d, dispatch) + E + max(A + s_c, combine)``.

    Notes
    -----
    DeepSeek decode (profile-data decode.jpg, row C_o2): ``[SHARED(mb0), ATTN-0(mb1)] || DISPATCH(mb0)``;
    ``MLP(mb0)`` with nothing in flight; ``ATTN-1(mb1) || COMBINE(mb0)``; mirrored.  A communication
    longer than its stage is waited for (busy-waiting, row C_o3: 0.17 ms dispatch per layer vs
    0.06 ms alone).  Waits for the slowest rank (``*_wait`` ops) are serial.  Fill and drain are the
    mirror pairs of the neighbouring layers: no tail.

    ``stream_s`` = (``s_d``, ``s_c``): what one dispatch / combine call holds the compute stream for
    (profile ``[overlap] calls_on_stream``: the calibrated per-call cost ``[collectives] dispatch_s`` /
    ``combine_s``).  DeepEP's low-latency kernels use no SMs *while in flight*, but the send kernel
    and the receive hook are kernels on the compute stream (row C_o3: 0.06 ms of SM time per
    dispatch in DeepEP's unit test), so only the wire time hides under the paired stage.
    """
    st = _stages(ops)
    d, c = _comm(comm, st[CORE])
    s_d = np.where(comm.get("dispatch", 0.0 * d) > 0, stream_s[0], 0.0)
    s_c = np.where(comm.get("combine", 0.0 * c) > 0, stream_s[1], 0.0)
    first, second = _comm_names(comm)
    kernels = " (+ send/recv kernels)" if "dispatch" in comm else ""
    pairs = {f"{first} || projections + shared{kernels}": (st[PROJECTIONS] + st[SHARED] + s_d, d),
             "experts (nothing in flight)" if "dispatch" in comm else "FFN (nothing in flight)": (st[EXPERTS], 0.0 * d),
             f"{second} || core attention + o_proj{kernels}": (st[CORE] + s_c, c)}
    per_mb = sum(np.maximum(s, k) for s, k in pairs.values()) + st[WAIT]
    return Pairing(m * per_mb, 0.0 * per_mb, pairs)


def sm_shared(ops: dict[str, Cost], comm: dict[str, Array], m: Array, comm_sm_frac: float) -> Pairing:
    """GPU normal-mode overlap: compute on ``1 - comm_sm_frac`` of the SMs, four stage pairs per two micro-batches.

    Notes
    -----
    DeepSeek prefill (profile-data prefill.jpg, row C_o1: 108 compute + 24 DeepEP SMs of 132):
    ``[ATTN(1) + SHARED(0)] || COMBINE(0)``, ``ATTN(0) || DISPATCH(1)``, ``MLP(1) || DISPATCH(0)``,
    ``[MLP(0) + SHARED(1)] || COMBINE(1)``; per micro-batch half of their sum.
    """
    st = _stages(ops, compute_share=1.0 - comm_sm_frac)
    d, c = _comm(comm, st[CORE])
    attn = st[PROJECTIONS] + st[CORE]
    first, second = _comm_names(comm)
    ffn = "experts" if "dispatch" in comm else "FFN"
    pairs = {f"{second} || attention + shared": (attn + st[SHARED], c), f"{first} || attention": (attn, d),
             f"{first} || {ffn}": (st[EXPERTS], d), f"{second} || {ffn} + shared": (st[EXPERTS] + st[SHARED], c)}
    per_mb = 0.5 * sum(np.maximum(s, k) for s, k in pairs.values()) + st[WAIT]
    return Pairing(m * per_mb, 0.0 * per_mb, {k: (0.5 * s, 0.5 * v) for k, (s, v) in pairs.items()})


def multi_stream(ops: dict[str, Cost], comm: dict[str, Array], m: Array, ov: Overlap) -> Pairing:
    """Ascend multi-stream: ``max(m A(f_a), m M(f_m), m HBM)`` per layer.

    Notes
    -----
    The attention stream (projections, core, shared experts, waits) runs on a share ``f_a`` of
    the cube/vector cores, the MoE stream (dispatch, experts, combine) on ``f_m``; a kernel on a
    share ``f`` takes ``f ** -a`` of its full-die time (B_l1: 1.23-1.57x at f = 1/2).  Both
    streams read HBM: the layer is at least the sum of every op's memory side at the full
    bandwidth.  The attention of the first micro-batch has nothing to overlap: ``min(A, M)`` once
    per step.  Communication (XCCL on the MoE stream's vector cores) keeps its full-die time
    (no measurement of it on split cores).
    """
    a = ov.core_split_exponent
    att = _stages(ops, slowdown=float(core_split_slowdown(ov.attention_core_frac, a)))
    moe = _stages(ops, slowdown=float(core_split_slowdown(ov.moe_core_frac, a)))
    d, c = _comm(comm, att[CORE])
    attention = att[PROJECTIONS] + att[CORE] + att[SHARED] + att[WAIT]
    experts = moe[EXPERTS] + d + c
    hbm = sum(cost.memory_s for cost in ops.values())
    pairs = {"attention stream || MoE stream": (attention, experts), "shared HBM": (hbm, 0.0 * hbm)}
    return Pairing(m * np.maximum(np.maximum(attention, experts), hbm), np.minimum(attention, experts), pairs)


def host_sync_s(comm: dict[str, Array], like: Array, ov: Overlap, bulk_comm: bool) -> Array:
    """Host gap per micro-batch of a layer: a bulk (normal-mode) dispatch makes the CPU wait.

    Notes
    -----
    DeepEP's normal dispatch first exchanges the per-rank token counts (``notify_dispatch``); the
    CPU polls them before it can size the receive buffers and launch the dispatch and the kernels
    after it, so the launch queue runs dry and the GPU idles for the host's reaction time, once per
    dispatch call, under any overlap (profile ``[overlap] bulk_host_sync_s``).  Low-latency kernels
    use fixed-size buffers and never sync the host.
    """
    if not bulk_comm or ov.bulk_host_sync_s == 0.0:
        return np.zeros_like(like)
    return np.where(np.zeros_like(like) + comm.get("dispatch", 0.0) > 0, ov.bulk_host_sync_s, 0.0)


def overlapped(ops: dict[str, Cost], comm: dict[str, Array], micro_batches: Array, ov: Overlap,
               bulk_comm: bool, stream_s: tuple[float, float] = (0.0, 0.0)) -> Pairing:
    """One layer under the profile's discipline; ``m = 1`` serial.

    ``bulk_comm``: the all-to-all runs normal-mode (deduplicated, SM-consuming) kernels.
    ``stream_s``: per-call (dispatch, combine) costs, charged on the compute stream by the
    stage-paired form when the profile says ``calls_on_stream``.  A bulk dispatch adds the host
    gap (:func:`host_sync_s`) per micro-batch, serial, with or without overlap.
    """
    m = np.asarray(micro_batches, dtype=float)
    c = sum(cost.time_s for cost in ops.values())
    k = sum(comm.values(), np.zeros_like(c))
    if ov.discipline == OverlapDiscipline.GPU_TWO_BATCH:
        on_stream = stream_s if ov.calls_on_stream else (0.0, 0.0)
        over = sm_shared(ops, comm, m, ov.comm_sm_frac) if bulk_comm else stage_paired(ops, comm, m, on_stream)
    elif ov.discipline == OverlapDiscipline.ASCEND_MULTI_STREAM:
        over = multi_stream(ops, comm, m, ov)
    else:
        over = ideal(ops, comm, m)
    several = m > 1
    sync = host_sync_s(comm, c, ov, bulk_comm)
    pairs = over.pairs
    if np.any(sync > 0):
        pairs = {**pairs, "host sync (bulk dispatch, serial)": (0.0 * sync, sync)}
    return Pairing(np.where(several, over.layer_s, c + k) + m * sync, np.where(several, over.tail_s, 0.0), pairs)
