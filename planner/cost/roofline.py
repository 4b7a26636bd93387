"""The one roofline primitive, its efficiency curves, and the GEMM built on it.

Every unit cost in the planner is a sum of :func:`roofline` calls over numpy arrays (one
element per candidate layout).  Times are seconds, work is FLOPs, traffic is bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.inputs.files import FusedPass
from planner.inputs.hardware import HardwareSpec
from planner.units import Dtype

Array = np.ndarray


@dataclass(frozen=True, slots=True)
class Cost:
    """Cost of an operation (or a sum of sequential operations), arrays of shape (N,).

    ``compute_s`` and ``memory_s`` are the two roofline sides without overhead; the op is
    compute-bound where ``compute_s >= memory_s``.
    """

    time_s: Array
    flops: Array
    bytes: Array
    compute_s: Array
    memory_s: Array

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.time_s + other.time_s, self.flops + other.flops, self.bytes + other.bytes,
                    self.compute_s + other.compute_s, self.memory_s + other.memory_s)

    def scaled(self, factor: Array | float) -> Cost:
        """The cost of ``factor`` repetitions (e.g. layers)."""
        return Cost(self.time_s * factor, self.flops * factor, self.bytes * factor,
                    self.compute_s * factor, self.memory_s * factor)

    @property
    def compute_bound(self) -> Array:
        return self.compute_s >= self.memory_s


def fused_kernel(costs: list[Cost], fixed_s: float | Array) -> Cost:
    """``len(costs)`` kernels run as one fused kernel: their work summed, one fixed cost instead of ``n``.

    Notes
    -----
    Each part keeps its own roofline side (a fused prologue runs its GEMMs one after another
    inside one launch); the ``n - 1`` fixed per-kernel costs of the launched parts are dropped.
    """
    total = sum_costs(dict(enumerate(costs)))
    launched = sum(np.asarray(c.flops + c.bytes > 0, dtype=float) for c in costs)
    saved = np.maximum(launched - 1.0, 0.0) * fixed_s
    return Cost(total.time_s - saved, total.flops, total.bytes, total.compute_s, total.memory_s)


def sum_costs(costs: dict[str, Cost]) -> Cost:
    items = list(costs.values())
    total = items[0]
    for c in items[1:]:
        total = total + c
    return total


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """Scalars of one die for one precision choice, read once from the profile."""

    gemm_peak_flops_per_s: float
    attention_peak_flops_per_s: float
    hbm_bandwidth_bytes_per_s: float
    gemm_max_frac: float
    gemm_m_half: float
    gemm_k_half: float
    attention_compute_frac: float
    attention_memory_frac: float
    attention_query_overhead_tokens: float  # prefill kernels: keys' worth of work per query row (0: none)
    memory_frac: float
    gemm_memory_frac: float  # the weight stream of this dtype's GEMMs (efficiency.gemm.by_dtype, else memory_frac)
    kernel_s: float
    eager_launch_s: float
    scheduler_gap_s: float
    fused: frozenset[FusedPass] = frozenset()  # kernel groups the stack runs as one (profile [kernels])
    fused_eager: frozenset[FusedPass] = frozenset()  # ... in eager mode (prefill)

    @classmethod
    def of(cls, hw: HardwareSpec, compute_dtype: Dtype, attention_dtype: Dtype = Dtype.BF16) -> Device:
        g, a, o = hw.gemm_efficiency, hw.attention_efficiency, hw.overheads
        return cls(
            gemm_peak_flops_per_s=hw.peak_flops_per_s(compute_dtype),
            attention_peak_flops_per_s=hw.peak_flops_per_s(attention_dtype),
            hbm_bandwidth_bytes_per_s=hw.hbm_bandwidth_bytes_per_s,
            gemm_max_frac=hw.gemm_max_frac(compute_dtype), gemm_m_half=g.m_half_tokens, gemm_k_half=g.k_half,
            attention_compute_frac=a.compute_frac, attention_memory_frac=a.memory_frac,
            attention_query_overhead_tokens=a.prefill_query_overhead_tokens,
            memory_frac=hw.memory_efficiency.frac, gemm_memory_frac=hw.gemm_memory_frac(compute_dtype),
            kernel_s=o.kernel_s, eager_launch_s=o.eager_launch_s,
            scheduler_gap_s=o.scheduler_gap_s, fused=hw.kernels.fused, fused_eager=hw.kernels.fused_eager,
        )

    def eager(self) -> Device:
        """The same die under the eager-mode stack: its fused kernel groups (prefill)."""
        return replace(self, fused=self.fused_eager)


def roofline(flops: Array, bytes_: Array, peak_flops_per_s: float | Array, bandwidth_bytes_per_s: float,
             compute_frac: Array | float, memory_frac: float, overhead_s: float | Array) -> Cost:
    """Roofline time of one operation, seconds.

    Notes
    -----
    ``time = max(flops / (peak * compute_frac), bytes / (bandwidth * memory_frac)) + overhead``.
    Operations with no work cost nothing (no overhead either).
    """
    flops = np.asarray(flops, dtype=float)
    bytes_ = np.asarray(bytes_, dtype=float)
    compute_s = flops / (peak_flops_per_s * compute_frac)
    memory_s = bytes_ / (bandwidth_bytes_per_s * memory_frac)
    busy = (flops > 0) | (bytes_ > 0)
    time_s = np.maximum(compute_s, memory_s) + np.where(busy, overhead_s, 0.0)
    return Cost(time_s, flops, bytes_, compute_s, memory_s)


def gemm_efficiency(dev: Device, m: Array, k: Array | float) -> Array:
    """Fraction of the dense peak a GEMM reaches, by its shape.

    Notes
    -----
    ``eff(M, K) = max_frac * M / (M + m_half) * K / (K + k_half)``: small-M (decode) GEMMs
    and short reductions run far below peak.  Fit to DeepGEMM's published H800 shapes
    (``hardware_profiles/*.toml``, ``[efficiency.gemm]``); ``max_frac`` is the device's math
    dtype's own where the profile has ``[efficiency.gemm.by_dtype.<dtype>]`` (:meth:`Device.of`).
    """
    m = np.maximum(np.asarray(m, dtype=float), 1e-9)
    k = np.asarray(k, dtype=float)
    return dev.gemm_max_frac * m / (m + dev.gemm_m_half) * k / (k + dev.gemm_k_half)


def gemm(dev: Device, m: Array, n: Array | float, k: Array | float, *, weight_bytes: float,
         act_bytes: float, out_bytes: float = 2.0, count: Array | float = 1.0,
         weights_read_frac: Array | float = 1.0, launch_s: float | Array = 0.0) -> Cost:
    """Cost of ``count`` GEMMs of ``[m x k] @ [k x n]`` (grouped: one kernel).

    Parameters
    ----------
    m : tokens (rows) per GEMM, shape (N,)
    n, k : output and reduction dims
    weight_bytes, act_bytes, out_bytes : bytes per element of weights, inputs, outputs
    count : number of weight matrices (experts) in the grouped GEMM
    weights_read_frac : fraction of the ``count`` matrices actually read (experts hit)
    launch_s : extra host launch cost (eager mode)
    """
    m = np.asarray(m, dtype=float)
    flops = 2.0 * m * n * k * count
    weights = np.where(m > 0, n * k * weight_bytes * weights_read_frac, 0.0)  # no tokens: kernel not launched
    traffic = count * (weights + m * k * act_bytes + m * n * out_bytes)
    eff = gemm_efficiency(dev, m, k)
    return roofline(flops, traffic, dev.gemm_peak_flops_per_s, dev.hbm_bandwidth_bytes_per_s, eff,
                    dev.gemm_memory_frac, dev.kernel_s + launch_s)


def attention_prefill_frac(dev: Device, keys_per_query: Array) -> Array:
    """Fraction of the attention peak a prefill (FlashAttention-style) kernel reaches, by the keys
    each query row attends.

    Notes
    -----
    ``eff(s) = compute_frac * s / (s + n_q)``, ``s`` = attended keys per query row (``N / 2`` for
    a causal square of ``N`` tokens, ``N`` without a mask, ``P + N / 2`` after a cached prefix of
    ``P``), ``n_q`` = profile ``[efficiency.attention] prefill_query_overhead_tokens``.  A query
    tile of ``B`` rows loops over its key tiles; on top it pays a fixed prologue and epilogue
    (load Q, final rescale, write O) and, under a causal mask, computes a whole diagonal tile of
    which half is masked: a fixed work per query row, worth ``n_q`` keys.  A causal square of
    ``N`` tokens then runs at ``compute_frac * N / (N + 2 n_q)``: short prompts run below the
    long-sequence rate (cuDNN DeepSeek-V3 MHA prefill on H200: 643 / 599 / 522 TFLOPS at 8K / 4K /
    2K).  ``n_q = 0``: one efficiency at every length (the decode kernels and profiles without
    the key).
    """
    s = np.asarray(keys_per_query, dtype=float)
    n_q = dev.attention_query_overhead_tokens
    return dev.attention_compute_frac * s / np.maximum(s + n_q, 1e-9)


def attention_core(dev: Device, flops: Array, bytes_: Array, launch_s: float | Array = 0.0,
                   keys_per_query: Array | None = None) -> Cost:
    """Cost of a fused attention kernel (FlashAttention / FlashMLA class).

    ``keys_per_query``: a prefill kernel's attended keys per query row, (N,), whose compute side
    runs at :func:`attention_prefill_frac`; None (decode): ``compute_frac``.
    """
    frac = dev.attention_compute_frac if keys_per_query is None else attention_prefill_frac(dev, keys_per_query)
    return roofline(flops, bytes_, dev.attention_peak_flops_per_s, dev.hbm_bandwidth_bytes_per_s,
                    frac, dev.attention_memory_frac, dev.kernel_s + launch_s)


def streaming(dev: Device, bytes_: Array, launch_s: float | Array = 0.0) -> Cost:
    """Cost of a memory-streaming kernel (norms, activations, quantization)."""
    return roofline(np.zeros_like(np.asarray(bytes_, dtype=float)), bytes_, 1.0, dev.hbm_bandwidth_bytes_per_s,
                    1.0, dev.memory_frac, dev.kernel_s + launch_s)
