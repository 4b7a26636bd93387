"""The per-stack kernel inventory: how many kernels one decode layer launches, and which passes are fused.

The counts are worked by hand from the inventory table of planner/cost/elementwise.py for
DeepSeek-R1 (MLA, 256 routed + 1 shared expert, 58 MoE layers) with 8-bit activations:

unfused stack (GPU profiles, no ``[kernels]`` fusion), one MoE layer:
  GEMMs and attention core: q_a, q_b, kv_a, absorb_uk, core, absorb_uv, o_proj, router,
  shared gate_up, shared down, experts gate_up, experts down                          = 12
  token-side elementwise: 2 norms + 2 MLA norms + 3 input quantizations + routing top-k
  + shared SiLU-and-multiply + 2 quantizations                                        = 11
  expert-side elementwise: permute, SiLU-and-multiply, quantization, unpermute        =  4
                                                                                 total 27
CloudMatrix384 (CANN graph mode: mla_prolog, swiglu_quant, expert_swiglu, expert_permute):
  GEMMs: mla_prolog (q_a, q_b, kv_a, absorb_uk), core, absorb_uv, o_proj, router,
  shared gate_up, shared down, experts gate_up, experts down                           =  9
  token side: 2 norms + o_proj input quantization + routing top-k + shared input
  quantization + dequant-SwiGLU-quant                                                  =  6
  expert side: fused into the grouped GEMM and dispatch / combine                      =  0
                                                                                 total 15
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from planner import catalog
from planner.cost import elementwise
from planner.cost.precision import BytesPerElement
from planner.cost.roofline import Device
from planner.inputs.files import FusedPass
from planner.units import Dtype

MODEL = catalog.model("deepseek-r1")


def _device(profile: str, fused: frozenset | None = None) -> tuple[Device, BytesPerElement]:
    hw = catalog.hardware(profile)
    by = BytesPerElement.of(hw, Dtype.INT8, Dtype.INT8, Dtype.INT8)
    dev = Device.of(hw, by.compute_dtype)
    return (dev if fused is None else dataclasses.replace(dev, fused=fused)), by


def _decode_ops(dev: Device, by: BytesPerElement) -> dict:
    one = np.array([32.0])
    return MODEL.attention.decode_ops(dev, by, tokens=one, seqs=one, context=np.array([4096.0]), tp=np.array([1.0]))


def test_cloudmatrix384_fuses_the_cann_operators() -> None:
    assert catalog.hardware("cloudmatrix384").kernels.fused == frozenset(FusedPass)
    for gpu in ("h800", "h100", "h200"):
        assert catalog.hardware(gpu).kernels.fused == frozenset(), gpu


@pytest.mark.parametrize(("fused", "token", "expert", "gemms"), [
    (frozenset(), 11, 4, 12),
    (frozenset(FusedPass), 6, 0, 9),
])
def test_moe_decode_layer_kernel_count(fused, token, expert, gemms) -> None:
    dev, by = _device("cloudmatrix384", fused)
    assert elementwise.token_kernels(dev, MODEL, by, "moe") == token
    assert elementwise.expert_kernels(dev, by) == expert
    attention = len(_decode_ops(dev, by))           # projections (or mla_prolog), core, absorb_uv, o_proj
    assert attention + 1 + 2 + 2 == gemms           # + router, 2 shared-expert GEMMs, 2 grouped expert GEMMs
    assert token + expert + gemms == (27 if not fused else 15)


def test_fused_expert_passes_cost_nothing() -> None:
    dev, by = _device("cloudmatrix384")
    cost = elementwise.expert_side(dev, MODEL, by, copies=np.array([256.0]))
    assert cost.time_s[0] == 0.0 and cost.bytes[0] == 0.0


def test_unfused_expert_side_is_the_hand_count() -> None:
    """Unfused, int8: 4 kernels x 5 us + copies x (8 h + 12 inter) bytes at 0.6 x 1.6 TB/s."""
    dev, by = _device("cloudmatrix384", frozenset())
    h, inter = MODEL.hidden, MODEL.ffn.moe_intermediate_size
    cost = elementwise.expert_side(dev, MODEL, by, copies=np.array([256.0]))
    expected = 256 * (8 * h + 12 * inter) / (1.6e12 * 0.6) + 4 * 5e-6
    assert cost.time_s[0] == pytest.approx(expected, rel=1e-12)


def test_mla_prolog_is_one_kernel_with_the_same_work() -> None:
    """The fused prologue does the four GEMMs' work and pays one 5 us kernel cost instead of four."""
    fused_dev, by = _device("cloudmatrix384")
    plain_dev, _ = _device("cloudmatrix384", frozenset())
    fused, plain = _decode_ops(fused_dev, by), _decode_ops(plain_dev, by)
    parts = ("q_a_proj", "q_b_proj", "kv_a_proj", "absorb_uk")
    assert "mla_prolog" in fused and not set(parts) & set(fused)
    prolog = fused["mla_prolog"]
    assert prolog.flops[0] == pytest.approx(sum(plain[p].flops[0] for p in parts))
    assert prolog.bytes[0] == pytest.approx(sum(plain[p].bytes[0] for p in parts))
    assert prolog.time_s[0] == pytest.approx(sum(plain[p].time_s[0] for p in parts) - 3 * 5e-6)
    for name in ("core", "absorb_uv", "o_proj"):
        assert fused[name].time_s[0] == plain[name].time_s[0]


def test_fusion_never_slows_a_layer() -> None:
    """Each fused group removes kernels and passes: the token side never costs more with a fusion."""
    base_dev, by = _device("cloudmatrix384", frozenset())
    tokens = np.array([1.0, 64.0, 4096.0])
    base = elementwise.token_side(base_dev, MODEL, by, tokens=tokens, ffn="moe").time_s
    for one in FusedPass:
        dev = dataclasses.replace(base_dev, fused=frozenset({one}))
        assert np.all(elementwise.token_side(dev, MODEL, by, tokens=tokens, ffn="moe").time_s <= base), one
