"""The interface every attention kind implements, and the helpers they share.

An attention kind is a frozen dataclass holding the shape of one attention layer (the fields
of the model card's ``[attention]`` table it uses, plus the model width ``hidden``).  It knows
its parameters, its KV cache, its per-die weights under tensor parallelism, and the roofline
ops of one layer on one die in decode and in prefill.

Shapes follow DESIGN.md section 3 and ../shared/reference/specs.md section 2c.  TP splits
query heads; DP splits sequences.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np

from planner.cost.precision import BytesPerElement
from planner.cost.roofline import Array, Cost, Device
from planner.inputs.files import ModelAttention, plain


@dataclass(frozen=True, slots=True, kw_only=True)
class Attention(ABC):
    """One attention layer of a model: shape, weights, KV cache and costs.

    Class attributes
    ----------------
    decode_tp_useful : whether TP > 1 can pay off in decode (False when every TP rank must read
        the whole KV cache, so TP only adds communication; a search keeps tp = 1 then)
    extra_elementwise_kernels : small kernels per layer beyond input norm and RoPE (MLA's
        q_a and kv_a norms)
    prefill_context_ops : ops of :meth:`prefill_ops` whose work grows with the attended tokens
        (priced for a collocated prefill chunk on top of the decode batch; the chunk's projections
        are priced in :meth:`decode_ops`, packed with the decode tokens)
    """

    kind: str
    hidden: int
    num_heads: int
    num_kv_heads: int

    decode_tp_useful: ClassVar[bool] = True
    extra_elementwise_kernels: ClassVar[int] = 0
    prefill_context_ops: ClassVar[tuple[str, ...]] = ("core",)

    @classmethod
    def from_section(cls, section: ModelAttention, hidden: int) -> Self:
        """Build from a validated ``[attention]`` table: copy the fields this kind declares."""
        return plain(cls, section, kind=section.kind.value, hidden=hidden)

    def heads_per_die(self, tp: Array) -> Array:
        """Query heads per TP rank, ``H / tp``, (N,)."""
        return self.num_heads / np.asarray(tp, dtype=float)

    @abstractmethod
    def params_per_layer(self) -> int:
        """Attention weights of one layer (elements), including projection biases and norms."""

    @abstractmethod
    def params_per_die(self, tp: Array) -> Array:
        """Attention weights of one layer held by one TP rank (elements), (N,)."""

    @abstractmethod
    def kv_elements_per_token(self) -> int:
        """Cached elements per token per (full-attention) layer, whole model."""

    @abstractmethod
    def kv_bytes_per_token_per_die(self, by: BytesPerElement, tp: Array) -> Array:
        """KV-cache bytes one die reads per cached token of a sequence it attends, per layer, (N,)."""

    @abstractmethod
    def kv_cache_bytes_per_token(self, by: BytesPerElement, tp: Array) -> Array:
        """KV-cache bytes one die holds per cached token of each sequence of its batch, per layer, (N,).

        The TP group serves ``tp`` times a die's batch; this says what of their caches lands on
        each die.
        """

    @abstractmethod
    def decode_ops(self, dev: Device, by: BytesPerElement, *, tokens: Array, seqs: Array, context: Array,
                   tp: Array, query_tokens: Array | None = None) -> dict[str, Cost]:
        """One attention layer on one die in decode, by op.

        Parameters
        ----------
        tokens : tokens through this die's projections, (N,) (= tp * sequences * tokens/seq, plus a
            collocated step's prefill chunk, which the step packs into the same GEMMs)
        seqs : sequences whose KV this die reads, (N,)
        context : cached tokens attended per sequence (window-capped by the caller), (N,)
        tp : tensor-parallel degree (heads split), (N,)
        query_tokens : decode query tokens that attend the ``context`` (the core and any other
            per-query op), (N,); default ``tokens`` (no chunk). A chunk's own attention is
            :meth:`prefill_ops`' ``prefill_context_ops``.
        """

    @abstractmethod
    def prefill_ops(self, dev: Device, by: BytesPerElement, *, tokens: Array, seqs: Array, new_tokens: Array,
                    prefix_tokens: Array, tp: Array, window: float = 0.0,
                    launch_s: float | Array = 0.0) -> dict[str, Cost]:
        """One attention layer on one die in prefill (TP splits heads; causal), by op.

        Parameters
        ----------
        tokens : new tokens through this die's projections, (N,)
        seqs : sequences in the batch on this die's TP group, (N,)
        new_tokens, prefix_tokens : per sequence, (N,); prefix tokens come from the prefix cache
        window : sliding window (0 = full attention)
        launch_s : extra host launch cost per kernel (eager mode)
        """


def causal_pairs(new_tokens: Array, prefix_tokens: Array, window: float) -> Array:
    """Query-key pairs per sequence for causal prefill of ``new`` tokens after a cached prefix.

    ``N * P + N**2 / 2`` (causal halving), capped at ``N * window`` on sliding-window layers.
    """
    pairs = new_tokens * prefix_tokens + new_tokens**2 / 2.0
    if window > 0:
        pairs = np.minimum(pairs, new_tokens * window)
    return pairs


def keys_per_query(new_tokens: Array, prefix_tokens: Array, window: float) -> Array:
    """Keys a query row of a causal prefill attends on average: :func:`causal_pairs` / ``new_tokens``.

    ``P + N / 2`` (capped at ``window`` on sliding-window layers); 0 where there are no new tokens.
    """
    n = np.asarray(new_tokens, dtype=float)
    pairs = causal_pairs(n, prefix_tokens, window)
    return np.divide(pairs, n, out=np.zeros(np.broadcast(pairs, n).shape), where=n > 0)


def gemm_bytes(by: BytesPerElement, launch_s: float | Array = 0.0) -> dict[str, float | Array]:
    """Keyword arguments of :func:`~planner.cost.roofline.gemm` for a projection at precision ``by``."""
    return dict(weight_bytes=by.weight, act_bytes=by.act, out_bytes=by.out, launch_s=launch_s)
