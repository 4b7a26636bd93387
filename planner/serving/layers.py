"""Per-layer assembly shared by the modes: which units run in a layer, and their overlap.

A model's layers fall into classes by attention (full or sliding window) and FFN (dense or
MoE); each class is costed once per candidate and multiplied by its layer count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from planner.cost import elementwise, moe
from planner.cost.expert_load import dp_excess
from planner.cost.ffn import dense_ffn
from planner.cost.roofline import Array, Cost, sum_costs
from planner.inputs.expert_load import ExpertLoad
from planner.inputs.hardware import Overlap
from planner.inputs.model import ModelSpec
from planner.serving import overlap as overlap_model
from planner.serving.context import Env
from planner.xccl import CallCosts, all_to_all_s, allreduce_s


@dataclass(frozen=True, slots=True)
class LayerClass:
    sliding: bool
    moe: bool
    count: int
    # MoE layers of the class, numbered among the model's MoE layers (rows of an expert-count
    # matrix); None for dense classes and the MTP layer (which takes the mean of every MoE layer)
    moe_rows: tuple[int, ...] | None = None

    @property
    def name(self) -> str:
        return f"{'sliding' if self.sliding else 'full'}-attention/{'moe' if self.moe else 'dense'}"


@lru_cache(maxsize=64)
def layer_classes(model: ModelSpec) -> tuple[LayerClass, ...]:
    """The (attention, FFN) layer classes of a model with their counts (zero counts dropped).

    Cached: a pure function of the (frozen, hashable) model, called once per layer assembly.
    """
    sliding = set(model.sliding_layers)
    dense = set(model.ffn.dense_layers) if model.is_moe else set(range(model.num_layers))
    counts: dict[tuple[bool, bool], int] = {}
    rows: dict[bool, list[int]] = {False: [], True: []}
    for i in range(model.num_layers):
        key = (i in sliding, i not in dense)
        counts[key] = counts.get(key, 0) + 1
        if key[1]:
            rows[key[0]].append(sum(len(r) for r in rows.values()))
    return tuple(LayerClass(s, m, n, tuple(rows[s]) if m else None) for (s, m), n in sorted(counts.items()))


@dataclass(slots=True)
class LayerCost:
    """One layer class on one die, per micro-batch: compute ops and communication times."""

    ops: dict[str, Cost]
    comm: dict[str, Array]
    load_ratio: Array | None = None  # busiest expert die / mean, over the class's MoE layers (None: no experts here)
    load_ratio_hottest: Array | None = None  # ... on the class's hottest MoE layer
    pairs: dict[str, tuple[Array, Array]] | None = None  # overlap stage pairs: (stage s, paired comm s) per micro-batch
    compute_s: Array = field(init=False)
    comm_s: Array = field(init=False)

    def __post_init__(self) -> None:
        times = [c.time_s for c in self.ops.values()]
        self.compute_s = sum(times[1:], times[0])
        comm = list(self.comm.values())
        self.comm_s = sum(comm[1:], comm[0]) if comm else np.zeros_like(self.compute_s)


def overlapped_layer_s(c: LayerCost, micro_batches: Array, overlap: Overlap | None = None,
                       bulk_comm: bool = False, calls: CallCosts | None = None) -> tuple[Array, Array]:
    """(per-layer time, one-off pipeline tail) with ``m`` micro-batches on the same dies.

    ``m = 1``: compute then communication, ``c + k``.  ``m >= 2``: the profile's overlap
    discipline (planner/serving/overlap.py; default ``ideal``: ``max(m c, m k)`` with the part
    nothing hides, ``min(c, k)``, paid once per step).  The stage pairs and their waiting are
    kept on ``c.pairs`` for the breakdown.  ``bulk_comm``: normal-mode (SM-consuming) all-to-all.
    ``calls``: the per-call dispatch/combine costs (what a call holds the compute stream for).
    """
    stream_s = (calls.dispatch_s, calls.combine_s) if calls is not None else (0.0, 0.0)
    pairing = overlap_model.overlapped(c.ops, c.comm, micro_batches, overlap or Overlap(), bulk_comm, stream_s)
    c.pairs = pairing.pairs
    return pairing.layer_s, pairing.tail_s


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedDieShape:
    """Tokens and parallelism of one micro-batch on a die that runs attention and experts."""

    group_tokens: Array      # tokens through this die's projections (tp x local tokens)
    die_tokens: Array        # tokens this die dispatches to experts
    tp: Array
    ep: Array
    slots: Array             # expert replicas hosted per die
    redundant: Array
    load: ExpertLoad         # the pool's expert load model
    dedup: bool              # deduplicated (normal) vs per-expert (low-latency) all-to-all
    dp_seqs: Array           # sequences per DP rank (TP group) per micro-batch
    dp_work_cv: float        # CV of one sequence's context-dependent attention work
    dp_dispersion: float     # variance / mean of the sequences a DP rank holds (0: a packed token budget)
    context_ops: tuple[str, ...]  # attention ops whose work grows with the context
    launch_s: float | Array = 0.0
    shared_replicas: Array | None = None  # replicas of the shared experts on expert slots (0: on the token die)


def shared_die_layer(env: Env, cls: LayerClass, shape: SharedDieShape,
                     attention: Callable[[LayerClass], dict[str, Cost]]) -> LayerCost:
    """Cost of one layer class on a die that holds attention and (if MoE) its expert share."""
    model, dev, by, h = env.model, env.dev, env.by, env.model.hidden
    ops = dict(attention(cls))
    comm: dict[str, Array] = {}
    tp_bytes = shape.group_tokens * h * by.out
    comm["tp_allreduce_attention"] = allreduce_s(env.hw, tp_bytes, shape.tp, env.calls.collective_s)
    ops["elementwise"] = elementwise.token_side(dev, model, by, tokens=shape.group_tokens, tp=shape.tp,
                                                ffn="moe" if cls.moe else "dense", launch_s=shape.launch_s)
    if not cls.moe:
        ops.update(dense_ffn(dev, model, by, tokens=shape.group_tokens, tp=shape.tp, launch_s=shape.launch_s))
        comm["tp_allreduce_ffn"] = allreduce_s(env.hw, tp_bytes, shape.tp, env.calls.collective_s)
        return LayerCost(ops, comm)
    k = model.ffn.top_k
    mean_copies = shape.die_tokens * k
    imb, hottest = moe.expert_imbalances(model, shape.load, ep=shape.ep, redundant=shape.redundant,
                                         copies_per_die=mean_copies, rows=cls.moe_rows,
                                         shared_replicas=shape.shared_replicas)
    ops["dispatch_wait"] = dispatch_wait(ops, shape.context_ops, ranks=shape.ep / shape.tp, seqs=shape.dp_seqs,
                                         work_cv=shape.dp_work_cv, dispersion=shape.dp_dispersion)
    ops["router"] = moe.router(dev, model, by, tokens=shape.group_tokens, launch_s=shape.launch_s)
    rep = shape.shared_replicas
    replicated = np.zeros(np.shape(shape.ep), bool) if rep is None else np.asarray(rep) > 0
    shared = moe.shared_experts(dev, model, by, tokens=shape.group_tokens, tp=shape.tp, launch_s=shape.launch_s)
    ops.update({n: c.scaled(~replicated) for n, c in shared.items()})  # on the token die unless replicated
    ops.update(moe.expert_side(dev, model, by, copies=mean_copies, slots=shape.slots, imbalance=imb,
                               launch_s=shape.launch_s, shared_replicas=rep, tokens=shape.die_tokens, ep=shape.ep,
                               load=shape.load, redundant=shape.redundant))
    # a replicated shared expert is one more routed copy per token (to one of its replicas)
    a2a = dict(tokens=shape.die_tokens, top_k=k + replicated, ranks=shape.ep, dedup=shape.dedup, recv_factor=imb,
               copy_s=env.calls.copy_s)
    comm["dispatch"] = all_to_all_s(env.hw, bytes_per_copy=h * by.dispatch, call_s=env.calls.dispatch_s, **a2a)
    comm["combine"] = all_to_all_s(env.hw, bytes_per_copy=h * by.combine, call_s=env.calls.combine_s, **a2a)
    return LayerCost(ops, comm, load_ratio=imb, load_ratio_hottest=hottest)


def dispatch_wait(ops: dict[str, Cost], context_ops: tuple[str, ...], *, ranks: Array, seqs: Array,
                  work_cv: float, dispersion: float) -> Cost:
    """What a mean DP rank waits at the dispatch for the slowest: the slowest rank's extra
    context-dependent attention work (planner.cost.expert_load.dp_excess), charged as its own op."""
    excess = dp_excess(ranks=ranks, seqs_per_die=seqs, work_cv=work_cv, count_dispersion=dispersion)
    return sum_costs({n: ops[n] for n in context_ops if n in ops}).scaled(excess)


def shared_die_layers(env: Env, shape: SharedDieShape, attention: Callable[[LayerClass], dict[str, Cost]],
                      micro_batches: Array) -> tuple[dict[str, LayerCost], dict[str, Array], dict[str, int], Array]:
    """Every layer class on shared dies: per-class costs, per-layer times, counts, and the largest tail."""
    layers, layer_s, counts, tails = {}, {}, {}, []
    for cls in layer_classes(env.model):
        cost = shared_die_layer(env, cls, shape, attention)
        layers[cls.name], counts[cls.name] = cost, cls.count
        layer_s[cls.name], tail = overlapped_layer_s(cost, micro_batches, env.hw.overlap, bulk_comm=shape.dedup,
                                                       calls=env.calls)
        tails.append(tail)
    return layers, layer_s, counts, np.maximum.reduce(tails)
