"""The predictors the Blackwell / Hopper kernel rows use, against hand-derived formulas.

Each predicted value is recomputed here from the profile's numbers with the row's own counting
(FlashInfer's weight bandwidth, FlashInfer's KV bytes, nccl-tests' ring), not through the
planner's cost functions.
"""

from __future__ import annotations

import pytest

from planner import catalog
from planner.ops import calibration


def _p(hw, path):
    return calibration.param_value(hw, path)


def test_weight_bandwidth_of_a_weight_streaming_gemm():
    """M = 1, N = K = 8192 NVFP4: memory-bound; weight bytes / (traffic / (HBM x frac) + kernel_s), with
    the NVFP4 weight stream's own frac ([efficiency.gemm.by_dtype.fp4] memory_frac)."""
    hw = catalog.hardware("b200")
    n = k = 8192
    weights = n * k * 0.5
    traffic = weights + 1 * k * 0.5 + 1 * n * 2.0  # weights, one activation row, one BF16 output row
    t = traffic / (hw.hbm_bandwidth_bytes_per_s * _p(hw, "efficiency.gemm.by_dtype.fp4.memory_frac")) \
        + _p(hw, "overheads.kernel_s")
    row = {"predict": {"kind": "gemm_weight_bandwidth", "profile": "b200", "m": 1, "n": n, "k": k, "dtype": "fp4"}}
    assert calibration.predict(row) == pytest.approx(weights / t, rel=1e-9)
    latency = {"predict": {**row["predict"], "kind": "gemm_latency"}}
    assert calibration.predict(latency) == pytest.approx(t, rel=1e-9)


def test_gqa_decode_reads_each_kv_head_once():
    """4 sequences x 1024 tokens, 8 KV heads of 64 (K and V), BF16: FlashInfer's byte count."""
    hw = catalog.hardware("b200")
    p = {"kind": "attention_memory_bandwidth", "profile": "b200", "form": "gqa_decode", "batch": 4, "context": 1024,
         "q_heads": 64, "kv_heads": 8, "d_qk": 64, "d_v": 64, "dtype": "bf16"}
    kv_bytes = (4 * 1024 * 8 * 128 + 4 * 64 * 128) * 2
    t = kv_bytes / (hw.hbm_bandwidth_bytes_per_s * _p(hw, "efficiency.attention.memory_frac")) \
        + _p(hw, "overheads.kernel_s")
    assert calibration.predict({"predict": p}) == pytest.approx(kv_bytes / t, rel=1e-9)


def test_unmasked_prefill_does_twice_the_causal_work():
    """cuDNN's no_mask rows count N^2 query-key pairs, causal ones N^2 / 2; each query row attends N
    keys unmasked, N / 2 causal, and pays n_q keys of fixed work (prefill_query_overhead_tokens), so the
    unmasked call takes 2 (N + n_q) / (N + 2 n_q) times the causal one (up to the fixed per-kernel cost)."""
    n = 32768
    base = {"kind": "attention_latency", "profile": "gb200-nvl72", "form": "mha_prefill", "batch": 2,
            "seq_len": n, "q_heads": 128, "d_qk": 192, "d_v": 128, "dtype": "bf16"}
    hw = catalog.hardware("gb200-nvl72")
    kernel_s = _p(hw, "overheads.kernel_s")
    n_q = _p(hw, "efficiency.attention.prefill_query_overhead_tokens")
    causal = calibration.predict({"predict": {**base, "causal": True}}) - kernel_s
    full = calibration.predict({"predict": {**base, "causal": False}}) - kernel_s
    assert full == pytest.approx(2 * causal * (n + n_q) / (n + 2 * n_q), rel=1e-9)
    flops = 2 * 2 * 128 * (192 + 128) * n**2 / 2
    eff = _p(hw, "efficiency.attention.compute_frac") * (n / 2) / (n / 2 + n_q)
    assert causal == pytest.approx(flops / (hw.peak_flops_per_s("bf16") * eff), rel=1e-9)


def test_decode_allreduce_latency_is_the_ring():
    """One token of 7168 BF16 among 8 GPUs of the NVL72: call cost + 14 hops + 2 (n - 1) / n of the bytes."""
    hw = catalog.hardware("gb200-nvl72")
    nvlink = hw.fabric_named("nvlink")
    n, size = 8, 7168 * 2
    eff = _p(hw, "fabrics.nvlink.efficiency.max_frac") * min(1.0, (8 / n) ** _p(hw, "fabrics.nvlink.efficiency.decay"))
    t = (_p(hw, "collectives.collective_s") + 2 * (n - 1) * nvlink.latency_s
         + 2 * (n - 1) / n * size / (nvlink.bandwidth_bytes_per_s * eff))
    row = {"predict": {"kind": "allreduce_latency", "profile": "gb200-nvl72", "ranks": n, "bytes": size}}
    assert calibration.predict(row) == pytest.approx(t, rel=1e-9)


def test_quantised_payload_scales_the_wire_time():
    """TRT-LLM's post-quantised dispatch: bytes_per_token replaces hidden x dtype; the wire part of the
    time scales with it, the per-call cost and the latency do not."""
    base = {"kind": "a2a_latency", "profile": "gb200-nvl72", "op": "dispatch", "ranks": 8, "tokens": 2048,
            "top_k": 8, "hidden": 7168, "dtype": "bf16", "dedup": False}
    hw = catalog.hardware("gb200-nvl72")
    fixed = _p(hw, "collectives.dispatch_s") + hw.fabric_named("nvlink").latency_s
    bf16 = calibration.predict({"predict": base}) - fixed
    same = calibration.predict({"predict": {**base, "bytes_per_token": 7168 * 2}}) - fixed
    nvfp4 = calibration.predict({"predict": {**base, "bytes_per_token": 4032}}) - fixed
    assert same == pytest.approx(bf16, rel=1e-12)
    assert nvfp4 == pytest.approx(bf16 * 4032 / (7168 * 2), rel=1e-9)
    wire = 2048 * 8 * 7 / 8 * 7168 * 2 / (900e9 * _p(hw, "fabrics.nvlink.efficiency.max_frac"))
    assert bf16 == pytest.approx(wire, rel=1e-9)
