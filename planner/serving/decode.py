"""Decode step on dies that run attention and experts together: ``pd`` and ``collocated``.

pd decode: DP (or TP) attention and EP experts on the same dies; with two micro-batches the
dispatch/combine of one overlaps the compute of the other.  Collocated: a step may also carry
a prefill chunk of ``prefill_chunk_tokens`` per die when ``chunk_tokens > 0``: this prices such a
step; planner.modes.collocated mixes it with the step without a chunk by the load.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.cost import memory as mem
from planner.cost import moe
from planner.cost.roofline import Array, Cost, gemm
from planner.serving.context import Env
from planner.serving.layers import (
    LayerClass,
    SharedDieShape,
    overlapped_layer_s,
    shared_die_layer,
    shared_die_layers,
)
from planner.serving.pipeline import pipeline_extra
from planner.serving.result import PoolStep


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodeArrays:
    """Decode knobs per candidate, (N,) each; ``chunk_tokens`` is 0 outside collocated mode."""

    dies: Array
    tp: Array
    ep: Array
    batch: Array
    micro_batches: Array
    redundant: Array
    chunk_tokens: Array
    shared_replicas: Array | None = None  # replicas of the shared experts on expert slots (None / 0: token die)
    pp: Array | None = None  # pipeline stages (None: 1); planner.serving.pipeline


def _as_float(x: Array) -> Array:
    return np.asarray(x, dtype=float)


def _replicas(d: DecodeArrays) -> Array:
    """Shared-expert replicas per candidate (0: the shared experts run on the token die)."""
    return np.zeros(np.shape(d.ep)) if d.shared_replicas is None else _as_float(d.shared_replicas)


def _attention_fn(env: Env, tokens: Array, seqs: Array, tp: Array, chunk_group: Array):
    def attention(cls: LayerClass) -> dict[str, Cost]:
        ctx = env.decode_context_tokens
        if cls.sliding:
            ctx = min(ctx, env.window)
        att = env.model.attention
        # the chunk's tokens share the step's projection GEMMs with the decode tokens (one packed
        # batch, as the FFN); only the decode queries attend the cached context
        ops = att.decode_ops(env.dev, env.by, tokens=tokens + chunk_group, seqs=seqs,
                             context=np.full(np.shape(tokens), ctx), tp=tp, query_tokens=tokens)
        if np.any(chunk_group > 0):
            pre = att.prefill_ops(env.dev, env.by, tokens=chunk_group, seqs=chunk_group / env.new_input_tokens,
                                  new_tokens=env.new_input_tokens, prefix_tokens=env.prefix_tokens, tp=tp,
                                  window=env.window if cls.sliding else 0.0)
            for name in att.prefill_context_ops:
                ops[f"prefill_{name}"] = pre[name]
        return ops
    return attention


def lm_head(env: Env, tokens: Array, tp: Array) -> Cost:
    """Output projection ``[M x h] @ [h x V/tp]`` (vocab-parallel under TP), bf16 weights."""
    return gemm(env.dev, tokens, env.model.vocab_size / _as_float(tp), env.model.hidden,
                weight_bytes=env.by.head, act_bytes=env.by.out, out_bytes=4.0)


def mtp_draft_s(env: Env, shape: SharedDieShape, tp: Array, batch: Array, m: Array, attention) -> Array:
    """One MTP draft pass: a full-attention decoder layer at one token per sequence, the 2h->h
    projection and the shared LM head (DeepSeek-V3 MTP module)."""
    cls = LayerClass(sliding=False, moe=env.model.is_moe, count=1)
    layer, tail = overlapped_layer_s(shared_die_layer(env, cls, shape, attention), m, env.hw.overlap,
                                     bulk_comm=shape.dedup, calls=env.calls)
    proj = gemm(env.dev, tp * batch, env.model.hidden, 2 * env.model.hidden, weight_bytes=env.by.weight,
                act_bytes=env.by.out)
    return layer + tail + proj.time_s + lm_head(env, tp * batch, tp).time_s


def decode_memory(env: Env, d: DecodeArrays, imb: Array) -> tuple[dict[str, Array], Array]:
    """Per-die memory by kind at the candidate's batch, and the largest batch that fits."""
    model, by = env.model, env.by
    tp, batch = _as_float(d.tp), _as_float(d.batch)
    slots = (model.ffn.num_routed_experts + _as_float(d.redundant)) / _as_float(d.ep)
    weights = mem.weight_bytes(model, by, mem.WeightShare(tp, slots, shared_slots=_replicas(d) / _as_float(d.ep),
                                                          pp=1.0 if d.pp is None else _as_float(d.pp)))
    kv_seq = mem.kv_bytes_per_sequence(model, by, context=env.max_context_tokens, tp=tp)
    q = 1 + env.draft_tokens
    k = model.ffn.top_k if model.is_moe else 0
    ws_seq = mem.workspace_bytes(model, tokens=tp * q, expert_copies=q * k * imb, logits_tokens=tp * q, tp=tp)
    chunk = _as_float(d.chunk_tokens)
    ws_chunk = mem.workspace_bytes(model, tokens=tp * chunk, expert_copies=chunk * k * imb,
                                   logits_tokens=np.zeros_like(chunk), tp=tp)
    out = {f"weights_{name}": v for name, v in weights.items()}
    out["kv_cache"] = batch * kv_seq
    out["workspace"] = batch * ws_seq + ws_chunk
    fixed = sum(weights.values()) + ws_chunk
    free = mem.usable_bytes(env.hw) - fixed
    return out, mem.max_batch(free, kv_seq + ws_seq)


def decode_fits(env: Env, d: DecodeArrays) -> tuple[Array, Array]:
    """Memory check alone (cheap): (fits, largest batch), so a search can skip pricing misfits."""
    model = env.model
    ep, m = _as_float(d.ep), _as_float(d.micro_batches)
    die_tokens = _as_float(d.batch) / m * (1 + env.draft_tokens) + _as_float(d.chunk_tokens) / m
    k = model.ffn.top_k if model.is_moe else 1
    imb = moe.expert_imbalance(model, env.decode_load, ep=ep, redundant=_as_float(d.redundant),
                               copies_per_die=die_tokens * k)
    _, max_b = decode_memory(env, d, imb)
    return max_b >= _as_float(d.batch), max_b


def shared_decode_step(env: Env, d: DecodeArrays) -> PoolStep:
    """Decode iteration of pd or collocated dies (all candidates at once)."""
    model = env.model
    tp, ep, m = _as_float(d.tp), _as_float(d.ep), _as_float(d.micro_batches)
    q = 1 + env.draft_tokens
    b_mb = _as_float(d.batch) / m
    chunk_mb = _as_float(d.chunk_tokens) / m
    die_tokens = b_mb * q + chunk_mb
    rep = _replicas(d)
    slots = (model.ffn.num_routed_experts + _as_float(d.redundant) + rep) / ep if model.is_moe else ep * 0 + 1
    red = _as_float(d.redundant)
    shape = SharedDieShape(group_tokens=tp * die_tokens, die_tokens=die_tokens, tp=tp, ep=ep, slots=slots,
                           redundant=red, load=env.decode_load, dedup=False, dp_seqs=tp * b_mb,
                           dp_work_cv=env.decode_context_cv, dp_dispersion=env.dp_count_dispersion,
                           context_ops=("core",), shared_replicas=rep)
    attention = _attention_fn(env, tp * b_mb * q, tp * b_mb, tp, tp * chunk_mb)
    layers, layer_s, counts, tail = shared_die_layers(env, shape, attention, m)
    extra = {"pipeline_tail": tail, "lm_head": lm_head(env, tp * _as_float(d.batch) * q, tp).time_s}
    if env.draft_tokens:
        draft_shape = replace(shape, group_tokens=tp * b_mb, die_tokens=b_mb)
        draft_attn = _attention_fn(env, tp * b_mb, tp * b_mb, tp, np.zeros_like(tp))
        extra["mtp"] = env.draft_tokens * mtp_draft_s(env, draft_shape, tp, _as_float(d.batch), m, draft_attn)
    layers_s = sum(layer_s[n] * counts[n] for n in layer_s)
    extra.update(pipeline_extra(env, d.pp, tp, tp * (_as_float(d.batch) * q + _as_float(d.chunk_tokens)),
                                extra["lm_head"], layers_s))
    extra["scheduler_gap"] = np.full(np.shape(tp), env.dev.scheduler_gap_s)
    step = sum(layer_s[n] * counts[n] for n in layer_s) + sum(extra.values())
    k = model.ffn.top_k if model.is_moe else 1
    imb = moe.expert_imbalance(model, env.decode_load, ep=ep, redundant=shape.redundant,
                               copies_per_die=die_tokens * k)
    memory, max_b = decode_memory(env, d, imb)
    fits = max_b >= _as_float(d.batch)
    return PoolStep(step_s=step, layers=layers, layer_s=layer_s, layer_counts=counts, extra=extra,
                    memory=memory, capacity_bytes=mem.usable_bytes(env.hw), fits=fits, max_batch=max_b)
