"""Attention units (MHA, GQA, MLA) per layer and per die, for decode and prefill.

Shapes follow DESIGN.md section 3 and ../shared/reference/specs.md section 2c.  TP splits
heads (KV heads are replicated when tp > num_kv_heads; MLA's latent cache cannot be split by
heads, so every TP rank reads all of it).  DP splits sequences.
"""

from __future__ import annotations

import numpy as np

from planner.cost.precision import Bytes
from planner.cost.roofline import Array, Cost, Device, attention_core, gemm
from planner.spec.model import ModelSpec


def kv_bytes_per_token_per_die(model: ModelSpec, by: Bytes, tp: Array) -> Array:
    """KV-cache bytes one die holds per cached token per full-attention layer."""
    a = model.file.attention
    if model.is_mla:
        return np.full(np.shape(tp), (a.kv_lora_rank + a.qk_rope_head_dim) * by.kv, dtype=float)
    kv_heads = np.ceil(a.num_kv_heads / np.asarray(tp, dtype=float))
    return 2.0 * kv_heads * a.head_dim * by.kv


def _mla_projections(dev: Device, model: ModelSpec, by: Bytes, m: Array, heads: Array,
                     launch_s: float | Array) -> dict[str, Cost]:
    a, h = model.file.attention, model.hidden
    qk = a.qk_nope_head_dim + a.qk_rope_head_dim
    kw = dict(weight_bytes=by.weight, act_bytes=by.act, out_bytes=by.out, launch_s=launch_s)
    ops: dict[str, Cost] = {}
    if a.q_lora_rank:
        ops["q_a_proj"] = gemm(dev, m, a.q_lora_rank, h, **kw)
        ops["q_b_proj"] = gemm(dev, m, heads * qk, a.q_lora_rank, **kw)
    else:
        ops["q_proj"] = gemm(dev, m, heads * qk, h, **kw)
    ops["kv_a_proj"] = gemm(dev, m, a.kv_lora_rank + a.qk_rope_head_dim, h, **kw)
    return ops


def attention_decode(dev: Device, model: ModelSpec, by: Bytes, *, tokens: Array, seqs: Array,
                     context: Array, tp: Array) -> dict[str, Cost]:
    """One attention layer on one die in decode.

    Parameters
    ----------
    tokens : query tokens through this die's projections, (N,) (= tp * sequences * tokens/seq)
    seqs : sequences whose KV this die reads, (N,)
    context : cached tokens attended per sequence (window-capped by the caller), (N,)
    tp : tensor-parallel degree (heads split), (N,)

    Notes
    -----
    MLA decode uses the absorbed form (FlashMLA "MQA mode"): W_UK folds into the query and
    W_UV into the output; the core attends one 576-dim key / 512-dim value shared by all
    heads: ``2 * h * (576 + 512) * S`` FLOPs per query token, ``576 * S`` cached elements read
    per sequence.  MHA/GQA: ``4 * h * d * S`` FLOPs per query token, ``2 * kv_heads * d * S``.
    """
    a, h = model.file.attention, model.hidden
    heads = a.num_heads / np.asarray(tp, dtype=float)
    kv_read = seqs * context * kv_bytes_per_token_per_die(model, by, tp)
    kw = dict(weight_bytes=by.weight, act_bytes=by.act, out_bytes=by.out)
    if model.is_mla:
        ops = _mla_projections(dev, model, by, tokens, heads, 0.0)
        ops["absorb_uk"] = gemm(dev, tokens, a.kv_lora_rank, a.qk_nope_head_dim, count=heads, **kw)
        c, r = a.kv_lora_rank, a.qk_rope_head_dim
        flops = 2.0 * tokens * heads * (c + r + c) * context
        q_bytes = tokens * heads * (c + r + c) * 2.0
        ops["core"] = attention_core(dev, flops, kv_read + q_bytes)
        ops["absorb_uv"] = gemm(dev, tokens, a.v_head_dim, c, count=heads, **kw)
        ops["o_proj"] = gemm(dev, tokens, h, heads * a.v_head_dim, **kw)
        return ops
    d = a.head_dim
    kv_heads = np.ceil(a.num_kv_heads / np.asarray(tp, dtype=float))
    ops = {"qkv_proj": gemm(dev, tokens, (heads + 2 * kv_heads) * d, h, **kw)}
    flops = 4.0 * tokens * heads * d * context
    ops["core"] = attention_core(dev, flops, kv_read + tokens * heads * d * 4.0)
    ops["o_proj"] = gemm(dev, tokens, h, heads * d, **kw)
    return ops


def causal_pairs(new_tokens: Array, prefix_tokens: Array, window: float) -> Array:
    """Query-key pairs per sequence for causal prefill of ``new`` tokens after a cached prefix.

    ``N * P + N**2 / 2`` (causal halving), capped at ``N * window`` on sliding-window layers.
    """
    pairs = new_tokens * prefix_tokens + new_tokens**2 / 2.0
    if window > 0:
        pairs = np.minimum(pairs, new_tokens * window)
    return pairs


def attention_prefill(dev: Device, model: ModelSpec, by: Bytes, *, tokens: Array, seqs: Array,
                      new_tokens: Array, prefix_tokens: Array, tp: Array, window: float = 0.0,
                      launch_s: float | Array = 0.0) -> dict[str, Cost]:
    """One attention layer on one die in prefill (TP splits heads; causal).

    Parameters
    ----------
    tokens : new tokens through this die's projections, (N,)
    seqs : sequences in the batch on this die's TP group, (N,)
    new_tokens, prefix_tokens : per sequence, (N,); prefix tokens come from the prefix cache
    window : sliding window (0 = full attention)

    Notes
    -----
    MLA prefill uses the non-absorbed "MHA mode" (FlashMLA): K/V are decompressed from the
    latent with W_UK/W_UV for every attended token (new and cached prefix), then a
    192/128-dim attention runs per head.
    """
    a, h = model.file.attention, model.hidden
    heads = a.num_heads / np.asarray(tp, dtype=float)
    pairs = seqs * causal_pairs(new_tokens, prefix_tokens, window)
    kw = dict(weight_bytes=by.weight, act_bytes=by.act, out_bytes=by.out, launch_s=launch_s)
    kv_tokens = seqs * (new_tokens + prefix_tokens)
    if model.is_mla:
        ops = _mla_projections(dev, model, by, tokens, heads, launch_s)
        dk, dv = a.qk_nope_head_dim + a.qk_rope_head_dim, a.v_head_dim
        ops["kv_b_proj"] = gemm(dev, kv_tokens, heads * (a.qk_nope_head_dim + dv), a.kv_lora_rank, **kw)
        flops = 2.0 * heads * (dk + dv) * pairs
        traffic = kv_tokens * heads * (dk + dv) * 2.0 + tokens * heads * (dk + dv) * 2.0
        ops["core"] = attention_core(dev, flops, traffic, launch_s)
        ops["o_proj"] = gemm(dev, tokens, h, heads * dv, **kw)
        return ops
    d = a.head_dim
    kv_heads = np.ceil(a.num_kv_heads / np.asarray(tp, dtype=float))
    ops = {"qkv_proj": gemm(dev, tokens, (heads + 2 * kv_heads) * d, h, **kw)}
    flops = 4.0 * heads * d * pairs
    traffic = kv_tokens * 2 * kv_heads * d * 2.0 + tokens * heads * d * 4.0
    ops["core"] = attention_core(dev, flops, traffic, launch_s)
    ops["o_proj"] = gemm(dev, tokens, h, heads * d, **kw)
    return ops
