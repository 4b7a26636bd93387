"""Multi-head and grouped-query attention (MHA is GQA with ``num_kv_heads == num_heads``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.attention.base import Attention, causal_pairs, gemm_bytes, keys_per_query
from planner.cost.precision import BytesPerElement
from planner.cost.roofline import Array, Cost, Device, attention_core, gemm


@dataclass(frozen=True, slots=True, kw_only=True)
class GqaAttention(Attention):
    """MHA / GQA: ``H`` query heads share ``KV`` key/value heads of ``d`` dims each.

    TP splits the query heads; the K/V heads are split too, and replicated when
    ``tp > num_kv_heads`` (a die keeps at least one whole KV head).
    """

    head_dim: int
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    sinks: bool = False

    def kv_heads_per_die(self, tp: Array) -> Array:
        """K/V heads a TP rank holds, ``ceil(KV / tp)``, (N,)."""
        return np.ceil(self.num_kv_heads / np.asarray(tp, dtype=float))

    def params_per_layer(self) -> int:
        """``h (H + 2 KV) d`` (q, k, v) ``+ H d h`` (o), plus biases, q/k norms and sinks.

        Biases ``(H + 2 KV) d`` on q, k, v and ``h`` on o; q/k RMSNorm ``2 d``; one sink
        logit per head.
        """
        h, H, KV, d = self.hidden, self.num_heads, self.num_kv_heads, self.head_dim
        qkv = h * (H + 2 * KV) * d
        if self.qkv_bias:
            qkv += (H + 2 * KV) * d
        o = H * d * h + (h if self.o_bias else 0)
        extra = (2 * d if self.qk_norm else 0) + (H if self.sinks else 0)
        return qkv + o + extra

    def params_per_die(self, tp: Array) -> Array:
        """``(P - 2 h KV d) / tp + 2 h ceil(KV / tp) d``: everything split by heads, K/V heads
        replicated beyond ``tp = KV``."""
        h, KV, d = self.hidden, self.num_kv_heads, self.head_dim
        t = np.asarray(tp, dtype=float)
        kv = 2 * h * KV * d
        kv_per_die = 2 * h * np.ceil(KV / t) * d
        return (self.params_per_layer() - kv) / t + kv_per_die

    def kv_elements_per_token(self) -> int:
        """``2 KV d`` (keys and values)."""
        return 2 * self.num_kv_heads * self.head_dim

    def kv_bytes_per_token_per_die(self, by: BytesPerElement, tp: Array) -> Array:
        """``2 ceil(KV / tp) d`` elements of ``by.kv`` bytes."""
        return 2.0 * self.kv_heads_per_die(tp) * self.head_dim * by.kv

    def kv_cache_bytes_per_token(self, by: BytesPerElement, tp: Array) -> Array:
        """The group's ``tp`` x more sequences, each sharded by KV heads: ``tp * 2 ceil(KV / tp) d``.

        (Before 2026-11-29 the ``tp`` factor was missing: GQA/MHA layouts with tp > 1 were given
        ``tp`` times too little KV memory, and so too large a batch.)
        """
        return self.kv_bytes_per_token_per_die(by, tp) * np.asarray(tp, dtype=float)

    def decode_ops(self, dev: Device, by: BytesPerElement, *, tokens: Array, seqs: Array, context: Array,
                   tp: Array, query_tokens: Array | None = None) -> dict[str, Cost]:
        """``qkv_proj``, ``core``, ``o_proj`` of one decode layer on one die.

        Notes
        -----
        The projections run over ``tokens`` (a collocated chunk's tokens included), the core over
        the ``query_tokens`` (default ``tokens``): ``4 (H / tp) d S`` FLOPs per query token (QK^T
        and PV), reading ``2 ceil(KV / tp) d S`` cached elements per sequence plus q and o in fp32.
        """
        queries = tokens if query_tokens is None else query_tokens
        h, d = self.hidden, self.head_dim
        heads, kv_heads = self.heads_per_die(tp), self.kv_heads_per_die(tp)
        kv_read = seqs * context * self.kv_bytes_per_token_per_die(by, tp)
        kw = gemm_bytes(by)
        ops = {"qkv_proj": gemm(dev, tokens, (heads + 2 * kv_heads) * d, h, **kw)}
        flops = 4.0 * queries * heads * d * context
        ops["core"] = attention_core(dev, flops, kv_read + queries * heads * d * 4.0)
        ops["o_proj"] = gemm(dev, tokens, h, heads * d, **kw)
        return ops

    def prefill_ops(self, dev: Device, by: BytesPerElement, *, tokens: Array, seqs: Array, new_tokens: Array,
                    prefix_tokens: Array, tp: Array, window: float = 0.0,
                    launch_s: float | Array = 0.0) -> dict[str, Cost]:
        """``qkv_proj``, ``core``, ``o_proj`` of one prefill layer on one die (causal).

        Notes
        -----
        Core: ``4 (H / tp) d`` FLOPs per query-key pair (:func:`causal_pairs`); traffic K and V
        of every attended token (new and prefix) in bf16, q and o in fp32.
        """
        h, d = self.hidden, self.head_dim
        heads, kv_heads = self.heads_per_die(tp), self.kv_heads_per_die(tp)
        pairs = seqs * causal_pairs(new_tokens, prefix_tokens, window)
        kw = gemm_bytes(by, launch_s)
        kv_tokens = seqs * (new_tokens + prefix_tokens)
        ops = {"qkv_proj": gemm(dev, tokens, (heads + 2 * kv_heads) * d, h, **kw)}
        flops = 4.0 * heads * d * pairs
        traffic = kv_tokens * 2 * kv_heads * d * 2.0 + tokens * heads * d * 4.0
        ops["core"] = attention_core(dev, flops, traffic, launch_s,
                                     keys_per_query=keys_per_query(new_tokens, prefix_tokens, window))
        ops["o_proj"] = gemm(dev, tokens, h, heads * d, **kw)
        return ops
