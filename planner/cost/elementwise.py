"""Small memory-bound kernels of a layer (norms, activation, quantization, routing) and their fusion.

In decode these kernels move little data but each pays the per-kernel cost; in prefill they
stream whole activations through HBM.  Counted per layer and micro-batch from an inventory of the
kernels an unfused MoE stack launches (SGLang / DeepSeek-V3 inference code), per token ``T``
of hidden size ``h``; every pass reads and writes its tensor once in bf16 (4 bytes per element):

===========================  ============================  =====================================
pass (unit)                  kernels                       bytes per token
===========================  ============================  =====================================
input, post-attention norm   2                             ``2 x 4 h``
attention norms (MLA q, kv)  ``extra_elementwise_kernels``  (low-rank tensors: not charged)
projection input quant       3 if activations < 2 bytes    ``3 x 4 h``
dense FFN / shared experts   1 SiLU-and-multiply (+2       ``6 inter`` (x 2 with quantization)
                             quantization)
MoE routing top-k            1                             ``8 E`` (fp32 logits)
expert side, per token copy  permute, SiLU-and-multiply,   ``8 h + 6 inter`` (+ ``6 inter``)
                             unpermute (+1 quantization)
===========================  ============================  =====================================

A stack's fused operators absorb some of these (profile ``[kernels] fused``,
planner.inputs.files.FusedPass):

- ``mla_prolog`` (CANN MLAProlog): the MLA q/kv norms and the quantization of the q_a/kv_a and
  q_b inputs run inside the projection kernel (the o_proj input quantization stays);
- ``swiglu_quant`` (dequant-SwiGLU-quant): SiLU-and-multiply and the down-projection input
  quantization are one kernel and one pass;
- ``expert_swiglu`` (grouped GEMM with fused SwiGLU / quantization): the expert activation and
  its quantization run in the GEMM epilogue (no kernel, no pass);
- ``expert_permute`` (distribute-dispatch / combine): permute, unpermute and the weighted sum
  run inside the communication kernels (no kernel, no pass).

The launch count does not depend on graph or eager mode; eager mode adds the launch cost to each.
"""

from __future__ import annotations

import numpy as np

from planner.cost.precision import BytesPerElement
from planner.cost.roofline import Array, Cost, Device, roofline
from planner.inputs.files import FusedPass
from planner.inputs.model import ModelSpec


def _kernels(dev: Device, count: int, bytes_: Array, launch_s: float | Array) -> Cost:
    bytes_ = np.asarray(bytes_, dtype=float)
    busy = bytes_ > 0
    over = np.where(busy, count * (dev.kernel_s + launch_s), 0.0)
    return roofline(np.zeros_like(bytes_), bytes_, 1.0, dev.hbm_bandwidth_bytes_per_s, 1.0, dev.memory_frac,
                    over)


def _ffn_activation(dev: Device, quant: bool) -> tuple[int, float]:
    """(kernels, pass multiplier) of a dense / shared FFN's activation and down-input quantization."""
    if FusedPass.SWIGLU_QUANT in dev.fused:
        return 1 + (1 if quant else 0), 1.0
    return 1 + (2 if quant else 0), 2.0 if quant else 1.0


def token_kernels(dev: Device, model: ModelSpec, by: BytesPerElement, ffn: str) -> int:
    """Elementwise kernels per layer and micro-batch on the die holding the tokens (the inventory above)."""
    return _token_inventory(dev, model, by, ffn, tokens=np.ones(1), tp=1.0)[0]


def _token_inventory(dev: Device, model: ModelSpec, by: BytesPerElement, ffn: str, *, tokens: Array,
                     tp: Array | float) -> tuple[int, Array]:
    tp = np.asarray(tp, dtype=float)
    h = model.hidden
    quant = by.act < 2.0
    prolog = FusedPass.MLA_PROLOG in dev.fused and model.attention.kind == "mla"
    attention_quant = (1 if prolog else 3) if quant else 0
    n = 2 + (0 if prolog else model.attention.extra_elementwise_kernels) + attention_quant
    bytes_ = 4.0 * tokens * h * (2 + attention_quant)
    act_n, act_x = _ffn_activation(dev, quant)
    if ffn == "dense":
        inter = model.ffn.dense_intermediate_size / tp
        n += act_n
        bytes_ = bytes_ + tokens * (2 * inter * 2.0 + inter * 2.0) * act_x
    else:
        f = model.ffn
        n += 1
        bytes_ = bytes_ + tokens * f.num_routed_experts * 4.0 * 2
        if f.num_shared_experts:
            inter = f.num_shared_experts * f.shared_expert_intermediate_size / tp
            n += act_n
            bytes_ = bytes_ + tokens * (2 * inter * 2.0 + inter * 2.0) * act_x
    return n, bytes_


def token_side(dev: Device, model: ModelSpec, by: BytesPerElement, *, tokens: Array, ffn: str, tp: Array | float = 1.0,
               launch_s: float | Array = 0.0) -> Cost:
    """Elementwise kernels on the tokens a die holds, for one layer with ``ffn`` 'dense' or 'moe'.

    FFN intermediates are split by ``tp`` like the FFN GEMMs.
    """
    n, bytes_ = _token_inventory(dev, model, by, ffn, tokens=tokens, tp=tp)
    return _kernels(dev, n, bytes_, launch_s)


def expert_kernels(dev: Device, by: BytesPerElement) -> int:
    """Elementwise kernels per layer and micro-batch on the token copies an expert die computes."""
    quant = by.act < 2.0
    n = 0 if FusedPass.EXPERT_PERMUTE in dev.fused else 2
    return n + (0 if FusedPass.EXPERT_SWIGLU in dev.fused else 1 + (1 if quant else 0))


def expert_side(dev: Device, model: ModelSpec, by: BytesPerElement, *, copies: Array,
                launch_s: float | Array = 0.0) -> Cost:
    """Elementwise kernels on the token copies an expert die computes (permute, act, unpermute)."""
    h, inter = model.hidden, model.ffn.moe_intermediate_size
    quant = by.act < 2.0
    permute = 0.0 if FusedPass.EXPERT_PERMUTE in dev.fused else 4.0 * h * 2
    act = 0.0 if FusedPass.EXPERT_SWIGLU in dev.fused else 3 * inter * 2.0 * (2 if quant else 1)
    return _kernels(dev, expert_kernels(dev, by), copies * (permute + act), launch_s)
