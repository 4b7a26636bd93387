"""Transformerless decode: attention dies and expert dies, domains taking turns.

Per instance, ``A`` attention dies (DP, split into ``D`` domains) and ``E`` expert dies.  Each
domain runs ``m`` micro-batches through every layer: attention (and shared experts, router)
on its attention dies, A2E, routed experts on the expert dies, E2A.  The domains take turns on
the expert dies, so the experts see one domain's micro-batch at a time: per-expert-die copies
``(A / D) * b/m * k / E``.  Per MoE layer (DESIGN.md section 5, :func:`pipelined_layer_s`)::

    layer = m * max(t_a, link_a, D * max(t_e, link_e), (t_a + a2e + t_e + e2a) / m)

with ``a2e``/``e2a`` the end-to-end calls (latency, per-copy cost, trampoline hop: on the
critical path once) and ``link_*`` the bytes a die's link carries per micro-batch over its
bandwidth (what the other micro-batches cannot hide); plus, once per step, the pipeline
fill/drain ``round trip - its longest stage``, the MTP layer, the LM head and the scheduler gap.
Dense layers and the shared experts (unless replicated on the expert dies) run on the attention
dies.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.cost import elementwise, moe
from planner.cost import memory as mem
from planner.cost.ffn import dense_ffn
from planner.cost.roofline import Array, Cost, gemm, sum_costs
from planner.serving.context import Env
from planner.serving.decode import lm_head
from planner.serving.layers import LayerClass, LayerCost, dispatch_wait, layer_classes
from planner.serving.result import PoolStep
from planner.xccl import A2ETimes, a2e, allreduce_s


@dataclass(frozen=True, slots=True, kw_only=True)
class TransformerlessArrays:
    attention_dies: Array
    expert_dies: Array
    domains: Array
    tp: Array
    ep: Array
    batch: Array
    micro_batches: Array
    redundant: Array
    shared_replicas: Array | None = None  # replicas of the shared experts on expert dies (None / 0: attention dies)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Shape:
    tokens: Array        # query tokens per attention die per micro-batch
    seqs: Array          # sequences per attention die per micro-batch
    A_d: Array           # attention dies per domain
    E: Array             # expert dies
    tp: Array
    ep: Array
    slots: Array
    redundant: Array
    replicas: Array      # shared-expert replicas on the expert dies (0: on the attention dies)
    # (first row, inverse) of the distinct attention-side rows, found once per step (None: price every row)
    distinct: tuple[Array, Array] | None = None
    # ... of the distinct expert-side rows (None: price every row)
    experts: tuple[Array, Array] | None = None


# Below this many candidates the attention side is priced row by row (and keeps its per-op breakdown).
DEDUP_MIN_ROWS = 4096


def _with_distinct(env: Env, s: _Shape, d: TransformerlessArrays) -> _Shape:
    """The attention side depends only on (tp, tokens, sequences, shared placement), and tokens and sequences
    per micro-batch only on (batch, micro-batches) within a step: group the rows by those knobs once per
    step, for every layer class and the MTP layer to reuse.  Likewise the expert side (attention dies per
    domain, sequences per micro-batch, expert dies, EP, redundant experts, shared replicas): ~4x fewer
    distinct rows in a default plan, which skip ~60% of the step's arithmetic.

    Rows with equal knobs have equal attention inputs, so each row's floats are those of its own pricing
    (a group may be finer than the equal-input rows: 4 / 2 = 2 / 1; that only prices a few more rows).
    """
    if np.size(s.tokens) < DEDUP_MIN_ROWS or env.per_row:  # per-row (sampled) hardware: rows differ beyond knobs
        return replace(s, distinct=None, experts=None)
    knobs = (s.tp, _f(d.batch), _f(d.micro_batches), s.replicas > 0)
    # the expert side reads (A_d, tokens, E, ep, redundant, replicas); tokens are seqs x (1 + drafts) or seqs
    sides = (s.A_d, s.seqs, s.E, s.ep, s.redundant, s.replicas)
    experts = small_integer_rows(*sides) or distinct_rows(*sides)  # no sort where the key table is small
    return replace(s, distinct=small_integer_rows(*knobs) or distinct_rows(*knobs), experts=experts)


# A dense code table larger than this many entries per row falls back to sorting (distinct_rows).
_DENSE_TABLE_PER_ROW = 4


def small_integer_rows(*columns: Array) -> tuple[Array, Array] | None:
    """:func:`distinct_rows` of columns holding small non-negative integers (as floats or bools), in O(N):
    each column's values coded through a dense presence table, the rows' mixed-radix key through another,
    no sort; the same first indices, inverse and order as :func:`distinct_rows`.  None when a column
    holds anything else or the key table would be large (then sort)."""
    n = np.size(columns[0])
    limit = max(_DENSE_TABLE_PER_ROW * n, 1)
    key, span = np.zeros(n, dtype=np.int64), 1
    for col in columns:
        values = np.asarray(col).reshape(-1)
        ints = values.astype(np.int64)
        if n == 0 or not np.array_equal(ints, values) or ints.min() < 0 or ints.max() >= limit:
            return None
        present = np.zeros(int(ints.max()) + 1, dtype=bool)
        present[ints] = True
        count = int(present.sum())
        span *= count
        if span > limit:
            return None
        key = key * count + (np.cumsum(present) - 1)[ints]
    present = np.zeros(span, dtype=bool)
    present[key] = True
    inverse = (np.cumsum(present) - 1)[key]
    first = np.full(int(present.sum()), n, dtype=np.int64)
    np.minimum.at(first, inverse, np.arange(n, dtype=np.int64))
    return first, inverse


def distinct_rows(*columns: Array) -> tuple[Array, Array]:
    """(index of each distinct row's first occurrence, row -> distinct row) of equal-length columns.

    The grouping of ``np.unique(np.stack(columns, 1), axis=0, return_index=True, return_inverse=True)``,
    computed as one exact mixed-radix integer key from each column's own codes: ``np.unique`` over
    rows sorts them as opaque records (0.6 s of a default plan, measured); the key sorts as int64.
    """
    key, span = np.zeros(np.size(columns[0]), dtype=np.int64), 1
    for col in columns:
        codes, count = _codes(col)
        if span * count >= 2**62:  # re-coded to 0..distinct-1 (order kept) so the key never overflows
            key = np.unique(key, return_inverse=True)[1].reshape(-1)
            span = int(key.max(initial=0)) + 1
        key, span = key * count + codes, span * count
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _codes(col: Array) -> tuple[Array, int]:
    """(each value's rank among the column's distinct values, their count), the inverse of ``np.unique``:
    through a dense presence table when the column holds small non-negative integers (no sort), else sorted."""
    values = np.asarray(col).reshape(-1)
    ints = values.astype(np.int64)
    if len(values) and np.array_equal(ints, values) and ints.min() >= 0 and ints.max() < 4 * len(values) + 1024:
        present = np.zeros(int(ints.max()) + 1, dtype=bool)
        present[ints] = True
        return (np.cumsum(present) - 1)[ints], int(present.sum())
    distinct, codes = np.unique(values, return_inverse=True)
    return codes.reshape(-1), len(distinct)


def _f(x: Array) -> Array:
    return np.asarray(x, dtype=float)


def _replicas(d: TransformerlessArrays) -> Array:
    """Shared-expert replicas per candidate (0: the shared experts run on the attention dies)."""
    return np.zeros(np.shape(d.ep)) if d.shared_replicas is None else _f(d.shared_replicas)


def _attention_side(env: Env, cls: LayerClass, s: _Shape) -> tuple[dict[str, Cost], dict[str, Array]]:
    ctx = min(env.decode_context_tokens, env.window) if cls.sliding else env.decode_context_tokens
    g = s.tp * s.tokens
    ops = env.model.attention.decode_ops(env.dev, env.by, tokens=g, seqs=s.tp * s.seqs,
                                         context=np.full(np.shape(g), ctx), tp=s.tp)
    ops["elementwise"] = elementwise.token_side(env.dev, env.model, env.by, tokens=g, tp=s.tp,
                                                ffn="moe" if cls.moe else "dense")
    comm = {"tp_allreduce_attention": allreduce_s(env.hw, g * env.model.hidden * env.by.out, s.tp,
                                                  env.calls.collective_s)}
    if cls.moe:
        ops["router"] = moe.router(env.dev, env.model, env.by, tokens=g)
        on_attention_dies = np.asarray(s.replicas) <= 0
        ops.update({n: c.scaled(on_attention_dies)
                    for n, c in moe.shared_experts(env.dev, env.model, env.by, tokens=g, tp=s.tp).items()})
    else:
        ops.update(dense_ffn(env.dev, env.model, env.by, tokens=g, tp=s.tp))
        comm["tp_allreduce_ffn"] = comm["tp_allreduce_attention"]
    return ops, comm


def _expert_side(env: Env, s: _Shape, rows: tuple[int, ...] | None
                 ) -> tuple[dict[str, Cost], A2ETimes, A2ETimes, tuple[Array, Array]]:
    """Expert compute of one domain's micro-batch (the mean expert die's, and the busiest one's extra as
    ``combine_wait``), its A2E and E2A, and the busiest die / mean (over the layers, hottest layer)."""
    model, h, k = env.model, env.model.hidden, env.model.ffn.top_k
    copies = s.A_d * s.tokens * k / s.E
    imb, hottest = moe.expert_imbalances(model, env.decode_load, ep=s.ep, redundant=s.redundant,
                                         copies_per_die=copies, rows=rows, shared_replicas=s.replicas)
    ops = moe.expert_side(env.dev, model, env.by, copies=copies, slots=s.slots, imbalance=imb,
                          shared_replicas=s.replicas, tokens=s.A_d * s.tokens / s.E, ep=s.ep,
                          load=env.decode_load, redundant=s.redundant)
    # a replicated shared expert is one more copy per token sent to the expert dies
    kw = dict(tokens_per_attention_die=s.tokens, attention_dies=s.A_d, expert_dies=s.E,
              top_k=k + (np.asarray(s.replicas) > 0), recv_factor=imb, copy_s=env.calls.copy_s)
    to_experts = a2e(env.hw, bytes_per_copy=h * env.by.dispatch, call_s=env.calls.dispatch_s, **kw)
    back = a2e(env.hw, bytes_per_copy=h * env.by.combine, call_s=env.calls.combine_s, **kw)
    return ops, to_experts, back, (imb, hottest)


def _expert_side_shared(env: Env, s: _Shape, rows: tuple[int, ...] | None
                        ) -> tuple[dict[str, Cost], A2ETimes, A2ETimes, tuple[Array, Array]]:
    """:func:`_expert_side` priced once per distinct expert-side row (``s.experts``) and gathered back, its ops
    summed into one (as :func:`_attention_side_shared`); row by row when ``s.experts`` is None."""
    if s.experts is None:
        return _expert_side(env, s, rows)
    first, inverse = s.experts
    small = _Shape(tokens=s.tokens[first], seqs=s.seqs[first], A_d=s.A_d[first], E=s.E[first], tp=s.tp[first],
                   ep=s.ep[first], slots=s.slots[first], redundant=s.redundant[first], replicas=s.replicas[first])
    ops, to_experts, back, (imb, hottest) = _expert_side(env, small, rows)

    def times(t: A2ETimes) -> A2ETimes:
        return A2ETimes(call_s=t.call_s[inverse], attention_link_s=t.attention_link_s[inverse],
                        expert_link_s=t.expert_link_s[inverse])

    return {"expert_side": _gather(sum_costs(ops), inverse)}, times(to_experts), times(back), (imb[inverse],
                                                                                              hottest[inverse])


def _attention_side_shared(env: Env, cls: LayerClass, s: _Shape
                           ) -> tuple[dict[str, Cost], dict[str, Array], Cost]:
    """The attention side depends only on (tp, tokens, sequences): price each distinct row once.

    A search has ~10^5 candidates but ~10^2 distinct attention shapes; the result is gathered back
    as one summed op (the per-op breakdown is only shown for single layouts, which take the
    direct path).
    """
    if s.distinct is None:
        ops, comm = _attention_side(env, cls, s)
        return ops, comm, ops["core"]
    first, inverse = s.distinct
    small = _Shape(tokens=s.tokens[first], seqs=s.seqs[first], A_d=s.A_d[first], E=s.E[first], tp=s.tp[first],
                   ep=s.ep[first], slots=s.slots[first], redundant=s.redundant[first], replicas=s.replicas[first])
    ops, comm = _attention_side(env, cls, small)
    comm_total = sum(comm.values())
    return ({"attention_side": _gather(sum_costs(ops), inverse)},
            {"attention_side_communication": comm_total[inverse]}, _gather(ops["core"], inverse))


def _gather(c: Cost, index: Array) -> Cost:
    return Cost(c.time_s[index], c.flops[index], c.bytes[index], c.compute_s[index], c.memory_s[index])


# The breakdown's name for the overlap of a transformerless pool (not the profile's [overlap]
# discipline: attention and experts run on different dies), and its stage pairs, per micro-batch of
# one domain: attention || what it waits for.
DISCIPLINE = "transformerless-pipeline"
PAIR_LINKS = "attention || its links (A2E + E2A bytes)"
PAIR_EXPERTS = "attention || expert dies' turn (domains x experts or their links)"
PAIR_ROUND_TRIP = "attention || round trip / micro-batches"


def pipelined_layer_s(t_a: Array, a2e_s: Array, t_e: Array, e2a_s: Array, link_a: Array, link_e: Array,
                      m: Array, D: Array) -> tuple[Array, Array, dict[str, tuple[Array, Array]]]:
    """(layer time, once-per-step fill/drain, stage pairs) of one MoE layer of a transformerless instance.

    Parameters
    ----------
    t_a : attention-die compute of one micro-batch (attention, router, shared experts, TP all-reduce,
        dispatch wait), s, (N,)
    a2e_s, e2a_s : end-to-end A2E / E2A of one micro-batch (latency, per-copy cost, trampoline), s, (N,)
    t_e : busiest expert die's compute of one micro-batch, s, (N,)
    link_a, link_e : one attention die's / the busiest expert die's link time of one micro-batch, A2E and
        E2A, bytes over bandwidth, the busier direction, s, (N,)
    m, D : micro-batches per domain, domains, (N,)

    Notes
    -----
    Every micro-batch of a domain goes round ``attention -> A2E -> experts -> E2A`` once per layer,
    so a layer takes at least the round trip ``r = t_a + a2e + t_e + e2a`` (latencies on the critical
    path, once); the domain's attention dies serve its ``m`` micro-batches, the expert dies serve the
    ``D m`` micro-batches of every domain in turn, and links and compute of a die overlap across
    micro-batches::

        layer = m * max(t_a, link_a, D max(t_e, link_e), r / m)

    Written as ``m (t_a + waiting)``: the pairs are (attention, what it waits for) per micro-batch.
    Once per step the pipeline fills and drains: with ``m >= 2`` the round trip beyond its longest
    stage, ``r - max(t_a, a2e, t_e, e2a)``; with ``m = 1`` the round trip is the layer (no tail).
    """
    r = t_a + a2e_s + t_e + e2a_s
    pairs = {PAIR_LINKS: (t_a, link_a), PAIR_EXPERTS: (t_a, D * np.maximum(t_e, link_e)),
             PAIR_ROUND_TRIP: (t_a, r / m)}
    layer = m * np.maximum.reduce([t_a, *(comm for _, comm in pairs.values())])
    tail = np.where(m > 1, r - np.maximum.reduce([t_a, a2e_s, t_e, e2a_s]), 0.0)
    return layer, tail, pairs


def _moe_layer(env: Env, cls: LayerClass, s: _Shape, m: Array, D: Array) -> tuple[LayerCost, Array, Array]:
    a_ops, a_comm, core = _attention_side_shared(env, cls, s)
    # the A2E of a domain waits for its slowest attention die (DP ranks of A_d / tp dies)
    a_ops["dispatch_wait"] = dispatch_wait({"core": core}, ("core",), ranks=s.A_d / s.tp, seqs=s.tp * s.seqs,
                                           work_cv=env.decode_context_cv, dispersion=env.dp_count_dispersion)
    e_ops, to_experts, back, (imb, hottest) = _expert_side_shared(env, s, cls.moe_rows)
    att = LayerCost(a_ops, a_comm)
    t_e = LayerCost(e_ops, {}).compute_s
    # per direction: an attention die sends in A2E and receives in E2A, an expert die the reverse
    link_a = np.maximum(to_experts.attention_link_s, back.attention_link_s)
    link_e = np.maximum(to_experts.expert_link_s, back.expert_link_s)
    period, tail, pairs = pipelined_layer_s(att.compute_s + att.comm_s, to_experts.call_s, t_e, back.call_s,
                                            link_a, link_e, m, D)
    ops = {**a_ops, **{f"expert_die.{n}": c for n, c in e_ops.items()}}
    comm = {**a_comm, "a2e": to_experts.call_s, "e2a": back.call_s}
    return LayerCost(ops, comm, load_ratio=imb, load_ratio_hottest=hottest, pairs=pairs), period, tail


def _step_shape(env: Env, d: TransformerlessArrays) -> tuple[Array, Array, Array, _Shape]:
    """(micro-batches, domains, sequences per micro-batch, shape) of a step's rows."""
    m, D = _f(d.micro_batches), _f(d.domains)
    b_mb = _f(d.batch) / m
    rep = _replicas(d)
    slots = (env.model.ffn.num_routed_experts + _f(d.redundant) + rep) / _f(d.ep)
    s = _Shape(tokens=b_mb * (1 + env.draft_tokens), seqs=b_mb, A_d=_f(d.attention_dies) / D, E=_f(d.expert_dies),
               tp=_f(d.tp), ep=_f(d.ep), slots=slots, redundant=_f(d.redundant), replicas=rep)
    return m, D, b_mb, s


def _mtp_s(env: Env, s: _Shape, d: TransformerlessArrays, period: Array, tail: Array) -> Array:
    """The MTP passes of a step: per draft, its layer (``period`` and fill/drain ``tail``), the 2h -> h
    projection and the LM head at one token per sequence."""
    proj = gemm(env.dev, s.tp * _f(d.batch), env.model.hidden, 2 * env.model.hidden, weight_bytes=env.by.weight,
                act_bytes=env.by.out)
    return env.draft_tokens * (period + tail + proj.time_s + lm_head(env, s.tp * _f(d.batch), s.tp).time_s)


def _total_s(layer_s: dict[str, Array], counts: dict[str, int], extra: dict[str, Array]) -> Array:
    return sum(layer_s[n] * counts[n] for n in layer_s) + sum(extra.values())


def transformerless_step(env: Env, d: TransformerlessArrays) -> PoolStep:
    """Decode iteration of a transformerless instance (all candidates at once)."""
    model = env.model
    q = 1 + env.draft_tokens
    m, D, b_mb, s = _step_shape(env, d)
    s = _with_distinct(env, s, d)
    layers, layer_s, counts, tails = {}, {}, {}, []
    for cls in layer_classes(model):
        if cls.moe:
            cost, period, tail = _moe_layer(env, cls, s, m, D)
        else:
            ops, comm, _ = _attention_side_shared(env, cls, s)
            cost = LayerCost(ops, comm)
            period, tail = m * (cost.compute_s + cost.comm_s), np.zeros_like(m)
        layers[cls.name], layer_s[cls.name], counts[cls.name] = cost, period, cls.count
        tails.append(tail)
    extra = {"pipeline_tail": np.maximum.reduce(tails),
             "lm_head": lm_head(env, s.tp * _f(d.batch) * q, s.tp).time_s}
    if env.draft_tokens:
        ds = replace(s, tokens=b_mb, seqs=b_mb)  # the same knob groups (tokens and sequences per micro-batch)
        _, period, tail = _moe_layer(env, LayerClass(False, True, 1), ds, m, D)
        extra["mtp"] = _mtp_s(env, s, d, period, tail)
    extra["scheduler_gap"] = np.full(np.shape(m), env.dev.scheduler_gap_s)
    step = _total_s(layer_s, counts, extra)
    memory, max_b, fits_experts = _memory(env, d, s)
    return PoolStep(step_s=step, layers=layers, layer_s=layer_s, layer_counts=counts, extra=extra, memory=memory,
                    capacity_bytes=mem.usable_bytes(env.hw), fits=(max_b >= _f(d.batch)) & fits_experts,
                    max_batch=np.where(fits_experts, max_b, 0.0))


def transformerless_step_floor(env: Env, d: TransformerlessArrays) -> Array:
    """A floor under :func:`transformerless_step`'s ``step_s``, never above it bit for bit, at a fraction of its
    cost: what the attention dies alone take (the search skips pricing rows whose floor already misses the TPOT
    SLO, planner.search.score).

    The step's own sum with each MoE layer's ``m max(t_a, ...)`` read as ``m t_a`` and ``t_a`` without its
    dispatch wait (both non-negative parts), the pipeline tail and the MTP layer's tail as 0, every other
    part as priced there: the same float operations (sums, products by non-negative counts, in the same
    order) on parts no larger, and rounding is monotone, so each row's floor is at most its step.  Without
    the expert side it depends only on (tp, batch, micro-batches, shared experts on the attention dies):
    priced once per distinct such row (as the step's attention side) and gathered back.
    """
    knobs = (_f(d.tp), _f(d.batch), _f(d.micro_batches), _replicas(d) > 0)
    if np.size(d.batch) < DEDUP_MIN_ROWS or env.per_row:  # per-row (sampled) hardware: rows differ beyond knobs
        first, inverse = None, None
    else:
        first, inverse = small_integer_rows(*knobs) or distinct_rows(*knobs)
        d = TransformerlessArrays(**{f: None if getattr(d, f) is None else np.asarray(getattr(d, f))[first]
                                     for f in TransformerlessArrays.__slots__})
    m, _, b_mb, s = _step_shape(env, d)

    def attention_dies_s(cls: LayerClass, shape: _Shape) -> Array:
        ops, comm, _ = _attention_side_shared(env, cls, shape)
        att = LayerCost(ops, comm)
        return m * (att.compute_s + att.comm_s)

    layer_s = {cls.name: attention_dies_s(cls, s) for cls in layer_classes(env.model)}
    counts = {cls.name: cls.count for cls in layer_classes(env.model)}
    zero = np.zeros_like(m)
    extra = {"pipeline_tail": zero,
             "lm_head": lm_head(env, s.tp * _f(d.batch) * (1 + env.draft_tokens), s.tp).time_s}
    if env.draft_tokens:
        ds = replace(s, tokens=b_mb, seqs=b_mb)
        extra["mtp"] = _mtp_s(env, s, d, attention_dies_s(LayerClass(False, True, 1), ds), zero)
    extra["scheduler_gap"] = np.full(np.shape(m), env.dev.scheduler_gap_s)
    floor = _total_s(layer_s, counts, extra)
    return floor if inverse is None else floor[inverse]


def transformerless_fits(env: Env, d: TransformerlessArrays) -> tuple[Array, Array]:
    """Memory check alone (cheap): (fits, largest batch), so a search can skip pricing misfits."""
    rep = _replicas(d)
    slots = (env.model.ffn.num_routed_experts + _f(d.redundant) + rep) / _f(d.ep)
    s = _Shape(tokens=_f(d.batch), seqs=_f(d.batch), A_d=_f(d.attention_dies) / _f(d.domains), E=_f(d.expert_dies),
               tp=_f(d.tp), ep=_f(d.ep), slots=slots, redundant=_f(d.redundant), replicas=rep)
    _, max_b, fits_experts = _memory(env, d, s)
    return (max_b >= _f(d.batch)) & fits_experts, np.where(fits_experts, max_b, 0.0)


def _memory(env: Env, d: TransformerlessArrays, s: _Shape) -> tuple[dict[str, Array], Array, Array]:
    """Attention-die memory (weights without routed experts, KV, workspace) and expert-die fit."""
    model, by = env.model, env.by
    q = 1 + env.draft_tokens
    routed = s.slots - s.replicas / s.ep
    share = dict(shared_slots=s.replicas / s.ep)
    att_w = mem.weight_bytes(model, by, mem.WeightShare(s.tp, routed, expert_side=False, **share))
    exp_w = mem.weight_bytes(model, by, mem.WeightShare(s.tp, routed, attention_side=False, **share))
    kv_seq = mem.kv_bytes_per_sequence(model, by, context=env.max_context_tokens, tp=s.tp)
    ws_seq = mem.workspace_bytes(model, tokens=s.tp * q, expert_copies=np.zeros_like(s.tp), logits_tokens=s.tp * q,
                                 tp=s.tp)
    usable = mem.usable_bytes(env.hw)
    max_b = mem.max_batch(usable - sum(att_w.values()), kv_seq + ws_seq)
    copies = s.A_d * _f(d.batch) / _f(d.micro_batches) * q * model.ffn.top_k / s.E
    exp_ws = mem.workspace_bytes(model, tokens=np.zeros_like(s.tp), expert_copies=copies * 2,
                                 logits_tokens=np.zeros_like(s.tp), tp=s.tp)
    fits_experts = sum(exp_w.values()) + exp_ws <= usable
    out = {f"weights_{n}": v for n, v in att_w.items()}
    out["kv_cache"] = _f(d.batch) * kv_seq
    out["workspace"] = _f(d.batch) * ws_seq
    out["expert_die_weights_routed_experts"] = exp_w.get("routed_experts", np.zeros_like(s.tp))
    if "shared_expert_replicas" in exp_w:
        out["expert_die_weights_shared_expert_replicas"] = exp_w["shared_expert_replicas"]
    out["expert_die_workspace"] = exp_ws
    return out, max_b, fits_experts
