"""Memory per die: weight shards, KV cache, activation workspace, communication buffers.

Gives the largest batch a die can hold; a layout that does not fit says by how much.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.cost.precision import BytesPerElement
from planner.cost.roofline import Array
from planner.inputs.hardware import HardwareSpec
from planner.inputs.model import ModelSpec


@dataclass(frozen=True, slots=True)
class WeightShare:
    """Which weights a die holds: attention side (TP ``tp``) and/or ``slots`` routed experts.

    ``shared_slots``: replicas of the shared experts this die hosts among its expert slots
    (``k / ep``); where it is above 0 the shared experts leave the attention side.
    """

    tp: Array
    slots: Array
    attention_side: bool = True
    expert_side: bool = True
    shared_slots: Array | float = 0.0
    pp: Array | float = 1.0  # pipeline stages: a die holds 1/pp of the layers (dense models)


def weight_bytes(model: ModelSpec, by: BytesPerElement, share: WeightShare) -> dict[str, Array]:
    """Weight bytes one die holds, by kind, (N,) each.

    The MTP module (if any) is held like one more layer; its experts are sharded like the
    main model's; attention weights per die are the attention kind's
    (:meth:`~planner.attention.base.Attention.params_per_die`).
    """
    mtp = model.num_mtp_layers
    t = np.asarray(share.tp, dtype=float)
    pp = np.asarray(share.pp, dtype=float)
    slots = np.asarray(share.slots, dtype=float)
    layers_moe = model.num_moe_layers + (mtp if model.is_moe else 0)
    out: dict[str, Array] = {}
    zero = np.zeros(np.broadcast_shapes(t.shape, slots.shape))
    if share.attention_side:
        att_layers = model.num_layers + mtp
        out["attention"] = zero + att_layers * model.attention.params_per_die(t) * by.weight / pp
        dense_layers = model.num_dense_layers + (mtp if not model.is_moe else 0)
        out["dense_ffn"] = zero + dense_layers * model.dense_ffn_params() / t * by.weight / pp
        on_token_die = np.asarray(share.shared_slots) <= 0
        out["shared_experts"] = zero + on_token_die * layers_moe * model.shared_expert_params() / t * by.weight
        out["router"] = zero + layers_moe * model.router_params() * by.head
        mtp_proj = mtp * 2 * model.hidden * model.hidden * by.weight
        counts = model.param_counts()
        # one stage: embedding and head; a pipeline's first stage holds the embedding, its last the
        # head: every die must fit, so the larger of the two
        ends = np.where(pp > 1, max(counts.embedding, counts.lm_head), counts.embedding + counts.lm_head)
        out["embedding_head"] = zero + ends / t * by.head + mtp_proj
    if share.expert_side and model.is_moe:
        out["routed_experts"] = zero + layers_moe * slots * model.expert_params() * by.weight
        if np.any(np.asarray(share.shared_slots) > 0):
            out["shared_expert_replicas"] = (zero + layers_moe * np.asarray(share.shared_slots, dtype=float)
                                             * model.shared_expert_params() * by.weight)
    return out


def kv_bytes_per_sequence(model: ModelSpec, by: BytesPerElement, *, context: Array, tp: Array) -> Array:
    """KV-cache bytes a die holds for one of its sequences at ``context`` cached tokens, (N,).

    Cached tokens summed over layers (sliding-window layers cap them at the window, the MTP
    layer caches like a full one) times the attention kind's bytes per cached token
    (:meth:`~planner.attention.base.Attention.kv_cache_bytes_per_token`: MLA's latent is kept
    whole on every TP rank, MHA/GQA shard by KV heads).
    """
    full_layers = model.num_layers - model.num_sliding_layers + model.num_mtp_layers
    ctx = np.asarray(context, dtype=float)
    tokens = full_layers * ctx + model.num_sliding_layers * np.minimum(ctx, model.sliding_window_tokens or ctx)
    return tokens * model.attention.kv_cache_bytes_per_token(by, tp)


def workspace_bytes(model: ModelSpec, *, tokens: Array, expert_copies: Array, logits_tokens: Array,
                    tp: Array) -> Array:
    """Activation workspace for one forward, bytes, (N,).

    Notes
    -----
    An assumption, not a measurement: eight bf16 hidden-size buffers per token (residual,
    norms, projections, communication staging), the expert intermediates of the token copies a
    die computes (bf16 ``2*I + h``), and fp32 logits for the tokens that reach the LM head.
    """
    f = model.ffn
    h = model.hidden
    inter = f.moe_intermediate_size if model.is_moe else f.dense_intermediate_size / np.asarray(tp, dtype=float)
    return (tokens * 8 * h * 2.0 + expert_copies * (2 * inter + h) * 2.0
            + logits_tokens * model.vocab_size / np.asarray(tp, dtype=float) * 4.0)


def usable_bytes(hw: HardwareSpec) -> float:
    """HBM a model may use per die: usable fraction minus runtime and communication areas."""
    r = hw.memory_reserve
    return hw.hbm_bytes * r.usable_frac - r.runtime_reserved_bytes - r.comm_buffer_bytes


def max_batch(free_bytes: Array, per_sequence_bytes: Array) -> Array:
    """Largest whole number of sequences that fit, (N,); 0 when nothing fits."""
    per = np.maximum(np.asarray(per_sequence_bytes, dtype=float), 1.0)
    return np.maximum(np.floor(np.asarray(free_bytes, dtype=float) / per), 0.0)
