"""Multi-head latent attention (DeepSeek-V2/V3, Kimi K2).

The cache holds one compressed latent of ``c = kv_lora_rank`` dims plus one shared RoPE key of
``r = qk_rope_head_dim`` dims per token and layer (576 for DeepSeek-V3), shared by all heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.attention.base import Attention, causal_pairs, gemm_bytes, keys_per_query
from planner.cost.precision import BytesPerElement
from planner.cost.roofline import Array, Cost, Device, attention_core, fused_kernel, gemm
from planner.inputs.files import FusedPass

# The decode ops an MLA prologue kernel (CANN MLAProlog) runs as one launch.
PROLOG_OPS = ("q_a_proj", "q_b_proj", "q_proj", "kv_a_proj", "absorb_uk")


@dataclass(frozen=True, slots=True, kw_only=True)
class MlaAttention(Attention):
    """MLA: low-rank q (``q_lora_rank``, 0 = plain q projection) and a latent KV cache.

    TP splits the heads, but the latent cannot be split by heads: every TP rank reads (and
    holds) all of it, so TP > 1 only adds communication in decode.
    """

    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    decode_tp_useful = False
    extra_elementwise_kernels = 2
    prefill_context_ops = ("core", "kv_b_proj")

    def params_per_layer(self) -> int:
        """q: ``h q' + q' + q' H (dn + dr)`` (or ``h H (dn + dr)`` without ``q'``); kv:
        ``h (c + dr) + c + c H (dn + dv)``; o: ``H dv h`` (``+ q'`` and ``+ c`` are the norms)."""
        h, H = self.hidden, self.num_heads
        qk = self.qk_nope_head_dim + self.qk_rope_head_dim
        if self.q_lora_rank:
            q = h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * H * qk
        else:
            q = h * H * qk
        kv = h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
        kv += self.kv_lora_rank * H * (self.qk_nope_head_dim + self.v_head_dim)
        o = H * self.v_head_dim * h
        return q + kv + o

    def params_per_die(self, tp: Array) -> Array:
        """The down-projections (q_a, kv_a) are replicated on every rank, the rest split by heads."""
        h = self.hidden
        t = np.asarray(tp, dtype=float)
        rep = h * (self.kv_lora_rank + self.qk_rope_head_dim) + (h * self.q_lora_rank if self.q_lora_rank else 0)
        return rep + (self.params_per_layer() - rep) / t

    def kv_elements_per_token(self) -> int:
        """``c + dr`` (512 + 64 = 576 for DeepSeek-V3)."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    def kv_bytes_per_token_per_die(self, by: BytesPerElement, tp: Array) -> Array:
        """The whole latent at any ``tp``: ``(c + dr) * by.kv``."""
        return np.full(np.shape(tp), self.kv_elements_per_token() * by.kv, dtype=float)

    def kv_cache_bytes_per_token(self, by: BytesPerElement, tp: Array) -> Array:
        """Every TP rank keeps the whole latent of all the group's ``tp`` x more sequences."""
        return self.kv_bytes_per_token_per_die(by, tp) * np.asarray(tp, dtype=float)

    def _projections(self, dev: Device, by: BytesPerElement, m: Array, heads: Array,
                     launch_s: float | Array) -> dict[str, Cost]:
        """q (low-rank q_a, q_b or one q_proj) and the joint kv_a down-projection."""
        h, qk = self.hidden, self.qk_nope_head_dim + self.qk_rope_head_dim
        kw = gemm_bytes(by, launch_s)
        ops: dict[str, Cost] = {}
        if self.q_lora_rank:
            ops["q_a_proj"] = gemm(dev, m, self.q_lora_rank, h, **kw)
            ops["q_b_proj"] = gemm(dev, m, heads * qk, self.q_lora_rank, **kw)
        else:
            ops["q_proj"] = gemm(dev, m, heads * qk, h, **kw)
        ops["kv_a_proj"] = gemm(dev, m, self.kv_lora_rank + self.qk_rope_head_dim, h, **kw)
        return ops

    def decode_ops(self, dev: Device, by: BytesPerElement, *, tokens: Array, seqs: Array, context: Array,
                   tp: Array, query_tokens: Array | None = None) -> dict[str, Cost]:
        """Projections, ``absorb_uk``, ``core``, ``absorb_uv``, ``o_proj`` of one decode layer.

        A stack that fuses ``mla_prolog`` (profile ``[kernels]``) runs the projections and
        ``absorb_uk`` as one kernel, the op ``mla_prolog``.

        Notes
        -----
        The absorbed form (FlashMLA "MQA mode"): W_UK folds into the query and W_UV into the
        output; the core attends one ``c + dr`` = 576-dim key / ``c`` = 512-dim value shared by
        all heads: ``2 (H / tp) (c + dr + c) S`` FLOPs per query token, ``(c + dr) S`` cached
        elements read per sequence, q and o in bf16.  The projections and ``o_proj`` run over
        ``tokens`` (a collocated chunk's tokens included), ``absorb_uk``, the core and
        ``absorb_uv`` over the decode ``query_tokens`` (default ``tokens``).
        """
        queries = tokens if query_tokens is None else query_tokens
        h, c, r = self.hidden, self.kv_lora_rank, self.qk_rope_head_dim
        heads = self.heads_per_die(tp)
        kv_read = seqs * context * self.kv_bytes_per_token_per_die(by, tp)
        kw = gemm_bytes(by)
        ops = self._projections(dev, by, tokens, heads, 0.0)
        ops["absorb_uk"] = gemm(dev, queries, c, self.qk_nope_head_dim, count=heads, **kw)
        if FusedPass.MLA_PROLOG in dev.fused:  # one MLAProlog launch (its norms and quantisation: elementwise.py)
            ops = {"mla_prolog": fused_kernel([ops.pop(n) for n in PROLOG_OPS if n in ops], dev.kernel_s)}
        flops = 2.0 * queries * heads * (c + r + c) * context
        q_bytes = queries * heads * (c + r + c) * 2.0
        ops["core"] = attention_core(dev, flops, kv_read + q_bytes)
        ops["absorb_uv"] = gemm(dev, queries, self.v_head_dim, c, count=heads, **kw)
        ops["o_proj"] = gemm(dev, tokens, h, heads * self.v_head_dim, **kw)
        return ops

    def prefill_ops(self, dev: Device, by: BytesPerElement, *, tokens: Array, seqs: Array, new_tokens: Array,
                    prefix_tokens: Array, tp: Array, window: float = 0.0,
                    launch_s: float | Array = 0.0) -> dict[str, Cost]:
        """Projections, ``kv_b_proj``, ``core``, ``o_proj`` of one prefill layer (causal).

        Notes
        -----
        The non-absorbed "MHA mode" (FlashMLA): K/V are decompressed from the latent with
        W_UK/W_UV (``kv_b_proj``) for every attended token (new and cached prefix), then a
        ``dn + dr`` = 192 / ``dv`` = 128-dim attention runs per head: ``2 (H / tp) (dk + dv)``
        FLOPs per query-key pair.
        """
        h, dv = self.hidden, self.v_head_dim
        dk = self.qk_nope_head_dim + self.qk_rope_head_dim
        heads = self.heads_per_die(tp)
        pairs = seqs * causal_pairs(new_tokens, prefix_tokens, window)
        kw = gemm_bytes(by, launch_s)
        kv_tokens = seqs * (new_tokens + prefix_tokens)
        ops = self._projections(dev, by, tokens, heads, launch_s)
        ops["kv_b_proj"] = gemm(dev, kv_tokens, heads * (self.qk_nope_head_dim + dv), self.kv_lora_rank, **kw)
        flops = 2.0 * heads * (dk + dv) * pairs
        traffic = kv_tokens * heads * (dk + dv) * 2.0 + tokens * heads * (dk + dv) * 2.0
        ops["core"] = attention_core(dev, flops, traffic, launch_s,
                                     keys_per_query=keys_per_query(new_tokens, prefix_tokens, window))
        ops["o_proj"] = gemm(dev, tokens, h, heads * dv, **kw)
        return ops
