"""Memory per die: weight shards, KV cache, activation workspace, communication buffers.

Gives the largest batch a die can hold; a layout that does not fit says by how much.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.cost.attention import kv_bytes_per_token_per_die
from planner.cost.precision import Bytes
from planner.cost.roofline import Array
from planner.spec.hardware import HardwareSpec
from planner.spec.model import ModelSpec


def attention_params_per_die(model: ModelSpec, tp: Array) -> Array:
    """Attention weights of one layer held by one TP rank (elements), (N,).

    Heads split by ``tp``; GQA's K/V heads are replicated when ``tp > num_kv_heads``; MLA's
    down-projections (q_a, kv_a) are replicated on every rank.
    """
    a, h = model.file.attention, model.hidden
    t = np.asarray(tp, dtype=float)
    if model.is_mla:
        rep = h * (a.kv_lora_rank + a.qk_rope_head_dim) + (h * a.q_lora_rank if a.q_lora_rank else 0)
        return rep + (model.attention_params_per_layer() - rep) / t
    d = a.head_dim
    kv = 2 * h * a.num_kv_heads * d
    kv_per_die = 2 * h * np.ceil(a.num_kv_heads / t) * d
    return (model.attention_params_per_layer() - kv) / t + kv_per_die


@dataclass(frozen=True, slots=True)
class WeightShare:
    """Which weights a die holds: attention side (TP ``tp``) and/or ``slots`` routed experts."""

    tp: Array
    slots: Array
    attention_side: bool = True
    expert_side: bool = True


def weight_bytes(model: ModelSpec, by: Bytes, share: WeightShare) -> dict[str, Array]:
    """Weight bytes one die holds, by kind, (N,) each.

    The MTP module (if any) is held like one more layer; its experts are sharded like the
    main model's.
    """
    f = model.file
    t = np.asarray(share.tp, dtype=float)
    slots = np.asarray(share.slots, dtype=float)
    layers_moe = model.num_moe_layers + (f.num_mtp_layers if model.is_moe else 0)
    out: dict[str, Array] = {}
    zero = np.zeros(np.broadcast_shapes(t.shape, slots.shape))
    if share.attention_side:
        att_layers = model.num_layers + f.num_mtp_layers
        out["attention"] = zero + att_layers * attention_params_per_die(model, t) * by.weight
        dense_layers = model.num_dense_layers + (f.num_mtp_layers if not model.is_moe else 0)
        out["dense_ffn"] = zero + dense_layers * model.dense_ffn_params() / t * by.weight
        out["shared_experts"] = zero + layers_moe * model.shared_expert_params() / t * by.weight
        out["router"] = zero + layers_moe * model.router_params() * by.head
        mtp_proj = f.num_mtp_layers * 2 * model.hidden * model.hidden * by.weight
        counts = model.param_counts()
        out["embedding_head"] = zero + (counts.embedding + counts.lm_head) / t * by.head + mtp_proj
    if share.expert_side and model.is_moe:
        out["routed_experts"] = zero + layers_moe * slots * model.expert_params() * by.weight
    return out


def kv_bytes_per_sequence(model: ModelSpec, by: Bytes, *, context: Array, tp: Array) -> Array:
    """KV-cache bytes a die holds for one of its sequences at ``context`` cached tokens, (N,).

    MLA caches one latent per token that every TP rank keeps whole, so the group's ``tp``
    times more sequences all land on each die (``tp`` x); MHA/GQA shard by KV heads.
    """
    a = model.file.attention
    per_token = kv_bytes_per_token_per_die(model, by, tp)
    full_layers = model.num_layers - model.num_sliding_layers + model.file.num_mtp_layers
    ctx = np.asarray(context, dtype=float)
    tokens = full_layers * ctx + model.num_sliding_layers * np.minimum(ctx, a.sliding_window_tokens or ctx)
    group = np.asarray(tp, dtype=float) if model.is_mla else 1.0
    return tokens * per_token * group


def workspace_bytes(model: ModelSpec, *, tokens: Array, expert_copies: Array, logits_tokens: Array,
                    tp: Array) -> Array:
    """Activation workspace for one forward, bytes, (N,).

    Notes
    -----
    An assumption, not a measurement: eight bf16 hidden-size buffers per token (residual,
    norms, projections, communication staging), the expert intermediates of the token copies a
    die computes (bf16 ``2*I + h``), and fp32 logits for the tokens that reach the LM head.
    """
    f = model.file.ffn
    h = model.hidden
    inter = f.moe_intermediate_size if model.is_moe else f.dense_intermediate_size / np.asarray(tp, dtype=float)
    return (tokens * 8 * h * 2.0 + expert_copies * (2 * inter + h) * 2.0
            + logits_tokens * model.file.vocab_size / np.asarray(tp, dtype=float) * 4.0)


def usable_bytes(hw: HardwareSpec) -> float:
    """HBM a model may use per die: usable fraction minus runtime and communication areas."""
    r = hw.file.memory_reserve
    return hw.hbm_bytes * r.usable_frac - r.runtime_reserved_bytes - r.comm_buffer_bytes


def max_batch(free_bytes: Array, per_sequence_bytes: Array) -> Array:
    """Largest whole number of sequences that fit, (N,); 0 when nothing fits."""
    per = np.maximum(np.asarray(per_sequence_bytes, dtype=float), 1.0)
    return np.maximum(np.floor(np.asarray(free_bytes, dtype=float) / per), 0.0)
