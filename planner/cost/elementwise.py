"""Small memory-bound kernels of a layer: norms, RoPE, activation, quantization, routing.

In decode these kernels move little data but each pays the per-kernel overhead; in prefill they
stream whole activations through HBM.  Counted per layer and micro-batch (an inventory of the
kernels an optimized MoE stack launches, e.g. SGLang/DeepSeek-V3 inference code):

- attention side: input RMSNorm, RoPE, (MLA: q_a and kv_a norms), one activation
  quantization per projection input when activations are 8-bit or narrower (3);
- dense FFN: post-attention RMSNorm, SiLU-and-multiply, (quantization of its 2 inputs);
- MoE, token side: post-attention RMSNorm, routing top-k, (shared expert SiLU-and-multiply,
  quantization of its 2 inputs);
- MoE, expert side (on the token copies a die computes): permute, SiLU-and-multiply,
  (quantization of the down-projection input), unpermute with the weighted sum.

Each kernel reads and writes its tensor once in bf16.
"""

from __future__ import annotations

import numpy as np

from planner.cost.precision import BytesPerElement
from planner.cost.roofline import Array, Cost, Device, roofline
from planner.inputs.model import ModelSpec


def _kernels(dev: Device, count: int, bytes_: Array, launch_s: float | Array) -> Cost:
    bytes_ = np.asarray(bytes_, dtype=float)
    busy = bytes_ > 0
    over = np.where(busy, count * (dev.kernel_s + launch_s), 0.0)
    return roofline(np.zeros_like(bytes_), bytes_, 1.0, dev.hbm_bandwidth_bytes_per_s, 1.0, dev.memory_frac,
                    over)


def token_side(dev: Device, model: ModelSpec, by: BytesPerElement, *, tokens: Array, ffn: str, tp: Array | float = 1.0,
               launch_s: float | Array = 0.0) -> Cost:
    """Elementwise kernels on the tokens a die holds, for one layer with ``ffn`` 'dense' or 'moe'.

    FFN intermediates are split by ``tp`` like the FFN GEMMs.
    """
    tp = np.asarray(tp, dtype=float)
    h = model.hidden
    quant = by.act < 2.0
    n = 2 + model.attention.extra_elementwise_kernels + (3 if quant else 0)
    bytes_ = 4.0 * tokens * h * (2 + (3 if quant else 0))
    if ffn == "dense":
        inter = model.ffn.dense_intermediate_size / tp
        n += 1 + (2 if quant else 0)
        bytes_ = bytes_ + tokens * (2 * inter * 2.0 + inter * 2.0) * (2 if quant else 1)
    else:
        f = model.ffn
        n += 1
        bytes_ = bytes_ + tokens * f.num_routed_experts * 4.0 * 2
        if f.num_shared_experts:
            inter = f.num_shared_experts * f.shared_expert_intermediate_size / tp
            n += 1 + (2 if quant else 0)
            bytes_ = bytes_ + tokens * (2 * inter * 2.0 + inter * 2.0) * (2 if quant else 1)
    return _kernels(dev, n, bytes_, launch_s)


def expert_side(dev: Device, model: ModelSpec, by: BytesPerElement, *, copies: Array,
                launch_s: float | Array = 0.0) -> Cost:
    """Elementwise kernels on the token copies an expert die computes (permute, act, unpermute)."""
    h, inter = model.hidden, model.ffn.moe_intermediate_size
    quant = by.act < 2.0
    n = 3 + (1 if quant else 0)
    bytes_ = copies * (4.0 * h * 2 + 3 * inter * 2.0 + (3 * inter * 2.0 if quant else 0.0))
    return _kernels(dev, n, bytes_, launch_s)
