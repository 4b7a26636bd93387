"""Bytes per element of each tensor class for one precision choice."""

from __future__ import annotations

from dataclasses import dataclass

from planner.inputs.hardware import HardwareSpec
from planner.units import Dtype

# Embedding and LM head stay in bf16 in every published low-precision deployment
# (DeepSeek-V3 README_WEIGHTS: "norms/embeddings/gate stay BF16"; gpt-oss keeps lm_head bf16).
HEAD_DTYPE = Dtype.BF16
# Attention softmax/PV math runs in bf16 (FlashMLA: "FP8 KV dequant to BF16").
ATTENTION_MATH_DTYPE = Dtype.BF16


def attention_math_dtype(hw: HardwareSpec, kv: Dtype | str) -> Dtype:
    """The dtype the attention core computes in with a ``kv`` cache on ``hw``.

    The profile's ``[attention_math]`` names the pairs its stack runs quantised (CANN W8A8C8:
    INT8 query x INT8 KV for the non-RoPE part, reference row B_q1); any other pair dequantises
    to bf16.  The RoPE part (64 of MLA's 576 + 512 dims per head, 6% of the FLOPs) is priced
    at the same dtype: an approximation of at most ~3% of the core's time.
    """
    return hw.attention_math.get(Dtype(kv), ATTENTION_MATH_DTYPE)


# MoE combine returns bf16 partial sums (DeepEP, DeepEP-Ascend, XCCL: "BF16 combine").
COMBINE_DTYPE = Dtype.BF16


@dataclass(frozen=True, slots=True, kw_only=True)
class BytesPerElement:
    """Bytes per element: weights, GEMM activations, KV cache, outputs, head, dispatch, combine."""

    weight: float
    act: float
    kv: float
    out: float
    head: float
    dispatch: float
    combine: float
    compute_dtype: Dtype

    @classmethod
    def of(cls, hw: HardwareSpec, weights: Dtype, activations: Dtype, kv: Dtype) -> BytesPerElement:
        compute = hw.compute_dtype(weights, activations)
        hw.peak_flops_per_s(ATTENTION_MATH_DTYPE)
        return cls(weight=Dtype(weights).bytes_per_element, act=Dtype(activations).bytes_per_element,
                   kv=Dtype(kv).bytes_per_element, out=2.0, head=HEAD_DTYPE.bytes_per_element,
                   dispatch=Dtype(activations).bytes_per_element,
                   combine=COMBINE_DTYPE.bytes_per_element, compute_dtype=compute)
