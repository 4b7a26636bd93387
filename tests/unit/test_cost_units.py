"""Closed-form checks of the unit costs, each worked by hand in a comment.

The profile numbers are read from the TOML files with tomllib (not through the planner's
Device), so a unit mix-up between the profile and the cost model shows here.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from planner import catalog
from planner.attention.base import causal_pairs, keys_per_query
from planner.cost import elementwise
from planner.cost.expert_load import busiest_die_ratios
from planner.cost.memory import kv_bytes_per_sequence
from planner.cost.moe import expert_imbalance, expert_imbalances, expert_side, routed_dies
from planner.cost.precision import BytesPerElement
from planner.cost.roofline import Device, attention_core, attention_prefill_frac, gemm
from planner.inputs.expert_load import ExpertLoad, Policy, load_params
from planner.inputs.scenario import build_scenario, scenario_overrides
from planner.serving.context import Env
from planner.serving.decode import DecodeArrays, shared_decode_step
from planner.units import Dtype
from planner.xccl import AllReduce, allreduce_s, distinct

ROOT = Path(__file__).resolve().parents[2]


def _profile(name: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / "hardware_profiles" / f"{name}.toml").read_text(encoding="utf-8"))


def _one(x: float) -> np.ndarray:
    return np.array([float(x)])


def _bytes(hw: str, weights: str, acts: str, kv: str) -> BytesPerElement:
    return BytesPerElement.of(catalog.hardware(hw), Dtype(weights), Dtype(acts), Dtype(kv))


# --------------------------------------------------------------------------- (a) decode GEMM


def test_memory_bound_decode_gemm_on_h800() -> None:
    """M = 1, N = K = 7168, fp8 weights and activations, bf16 output, on the shipped H800 profile.

    traffic = N*K*1 + M*K*1 + M*N*2 = 51,380,224 + 7,168 + 14,336 = 51,401,728 B
    time = kernel_s + traffic / (hbm_bandwidth * memory.frac)   (values read from h800.toml);
    the compute side, 2*7168*7168 FLOP at fp8 peak * gemm eff(M=1), is far smaller at M = 1.
    """
    p = _profile("h800")
    bw, frac, kernel = (p["memory"]["hbm_bandwidth_bytes_per_s"], p["efficiency"]["memory"]["frac"],
                        p["overheads"]["kernel_s"])
    N = K = 7168
    traffic = N * K * 1 + 1 * K * 1 + 1 * N * 2
    assert traffic == 51_401_728
    g = p["efficiency"]["gemm"]
    eff = g["max_frac"] * 1 / (1 + g["m_half_tokens"]) * K / (K + g.get("k_half", 0.0))
    compute_s = 2 * N * K / (p["peak"]["fp8_flops_per_s"] * eff)
    assert compute_s < traffic / (bw * frac)

    dev = Device.of(catalog.hardware("h800"), Dtype.FP8)
    cost = gemm(dev, _one(1), N, K, weight_bytes=1.0, act_bytes=1.0, out_bytes=2.0)
    assert not cost.compute_bound[0]
    assert cost.bytes[0] == traffic
    assert cost.flops[0] == 2 * N * K
    assert cost.compute_s[0] == pytest.approx(compute_s, rel=1e-12)
    assert cost.time_s[0] == pytest.approx(kernel + traffic / (bw * frac), rel=1e-12)


@pytest.fixture
def npu(tmp_path: Path, profile_dict: dict[str, Any], write_toml: Any) -> Any:
    """The tests/conftest.py profile with the numbers these hand calculations use pinned here."""
    d = profile_dict
    d["peak"].update(bf16_flops_per_s=376e12, int8_flops_per_s=752e12)
    d["memory"]["hbm_bandwidth_bytes_per_s"] = 1.6e12
    d["efficiency"]["gemm"].update(max_frac=0.7, m_half_tokens=64.0, k_half=256.0)
    d["efficiency"]["memory"]["frac"] = 0.85
    d["overheads"]["kernel_s"] = 5e-6
    d["collectives"]["collective_s"] = 10e-6
    d["fabrics"][0].update(dies=2, bandwidth_bytes_per_s=200e9, latency_s=1e-6)
    d["fabrics"][0]["efficiency"].update(max_frac=0.8, decay_start_ranks=8.0, decay=0.0)
    d["fabrics"][1].update(dies=32, bandwidth_bytes_per_s=196e9, latency_s=2e-6)
    d["fabrics"][1]["efficiency"].update(max_frac=0.75, decay_start_ranks=8.0, decay=0.3)
    return catalog.hardware(str(write_toml(tmp_path / "hand-npu.toml", d)))


def test_memory_bound_decode_gemm_by_hand(npu: Any) -> None:
    """Same GEMM, int8, on the pinned test NPU:

    memory side = 51,401,728 B / (1.6e12 * 0.85) = 37.795 us
    compute side = 102,760,448 FLOP / (752e12 * 0.7 * 1/65 * 7168/7424 = 0.0103979) = 13.142 us
    time = 5 us + 37.795 us = 42.795 us, memory-bound
    """
    cost = gemm(Device.of(npu, Dtype.INT8), _one(1), 7168, 7168, weight_bytes=1.0, act_bytes=1.0, out_bytes=2.0)
    assert cost.memory_s[0] == pytest.approx(37.79539e-6, rel=1e-6)
    assert cost.compute_s[0] == pytest.approx(13.14206e-6, rel=1e-6)
    assert cost.time_s[0] == pytest.approx(42.79539e-6, rel=1e-6)


@pytest.fixture
def npu_fp4(tmp_path: Path, profile_dict: dict[str, Any], write_toml: Any) -> Any:
    """The pinned test NPU (as ``npu``) with FP8 and FP4 peaks and, for FP4 only, its own GEMM
    asymptote and weight-stream efficiency (``[efficiency.gemm.by_dtype.fp4]``)."""
    d = profile_dict
    d["peak"].update(fp8_flops_per_s=752e12, fp4_flops_per_s=1504e12)
    d["efficiency"]["gemm"].update(max_frac=0.7, m_half_tokens=64.0, k_half=256.0)
    d["efficiency"]["gemm"]["by_dtype"] = {"fp4": {"source": "test", "kind": "assumed", "max_frac": 0.9,
                                                   "memory_frac": 0.5}}
    d["efficiency"]["memory"]["frac"] = 0.85
    d["overheads"]["kernel_s"] = 5e-6
    with_override = catalog.hardware(str(write_toml(tmp_path / "fp4-npu.toml", d)))
    del d["efficiency"]["gemm"]["by_dtype"]
    return with_override, catalog.hardware(str(write_toml(tmp_path / "fp4-npu-shared.toml", d)))


def test_gemm_uses_its_dtypes_own_efficiency_by_hand(npu_fp4: Any) -> None:
    """FP8 vs FP4 GEMMs on a profile whose FP4 path has max_frac 0.9 and memory_frac 0.5 (shared: 0.7, 0.85).

    Compute-bound, M = 4096, N = K = 7168: eff shape = 4096/4160 * 7168/7424 = 0.950663;
    FLOPs 2 * 4096 * 7168^2 = 420,906,795,008.
      FP8: 4.209e11 / (752e12 * 0.7 * 0.950663) = 841.092 us (+ 5 us kernel)
      FP4: 4.209e11 / (1504e12 * 0.9 * 0.950663) = 327.091 us (+ 5 us)
    Weight-streaming, M = 1, N = K = 7168, BF16 out:
      FP8: 51,401,728 B / (1.6e12 * 0.85) = 37.795 us (+ 5 us)
      FP4: 7168^2 / 2 + 7168 / 2 + 7168 * 2 = 25,708,032 B / (1.6e12 * 0.5) = 32.135 us (+ 5 us)
    """
    hw, _ = npu_fp4
    fp8, fp4 = Device.of(hw, Dtype.FP8), Device.of(hw, Dtype.FP4)
    big8 = gemm(fp8, _one(4096), 7168, 7168, weight_bytes=1.0, act_bytes=1.0)
    big4 = gemm(fp4, _one(4096), 7168, 7168, weight_bytes=0.5, act_bytes=0.5)
    assert big8.compute_bound[0] and big4.compute_bound[0]
    assert big8.time_s[0] == pytest.approx(846.0918e-6, rel=1e-6)
    assert big4.time_s[0] == pytest.approx(332.0913e-6, rel=1e-6)
    small8 = gemm(fp8, _one(1), 7168, 7168, weight_bytes=1.0, act_bytes=1.0)
    small4 = gemm(fp4, _one(1), 7168, 7168, weight_bytes=0.5, act_bytes=0.5)
    assert small4.bytes[0] == 25_708_032
    assert small8.time_s[0] == pytest.approx(42.79539e-6, rel=1e-6)
    assert small4.time_s[0] == pytest.approx(37.13504e-6, rel=1e-6)
    # the override is the GEMM's only: streaming kernels keep efficiency.memory.frac
    assert fp4.memory_frac == fp8.memory_frac == 0.85


def test_gemm_without_dtype_override_keeps_the_shared_values(npu_fp4: Any) -> None:
    """FP8 has no table: its GEMMs cost exactly what they cost on the profile without any override;
    without the FP4 table, FP4 GEMMs take the shared max_frac 0.7 and memory frac 0.85
    (M = 1 FP4: 25,708,032 B / (1.6e12 * 0.85) = 18.903 us + 5 us)."""
    hw, shared = npu_fp4
    m = np.array([1.0, 64.0, 4096.0])
    a = gemm(Device.of(hw, Dtype.FP8), m, 7168, 2048, weight_bytes=1.0, act_bytes=1.0)
    b = gemm(Device.of(shared, Dtype.FP8), m, 7168, 2048, weight_bytes=1.0, act_bytes=1.0)
    assert np.array_equal(a.time_s, b.time_s)
    dev = Device.of(shared, Dtype.FP4)
    assert (dev.gemm_max_frac, dev.gemm_memory_frac) == (0.7, 0.85)
    small4 = gemm(dev, _one(1), 7168, 7168, weight_bytes=0.5, act_bytes=0.5)
    assert small4.time_s[0] == pytest.approx(23.902965e-6, rel=1e-6)


# --------------------------------------------------------------------------- (b) MLA decode


@pytest.mark.parametrize("S", [1, 4096, 32_768])
def test_mla_decode_core_flops_per_query_token(S: int) -> None:
    """2 * h * (576 + 512) * S = 2 * 128 * 1088 * S = 278,528 * S FLOPs per query token per layer."""
    model = catalog.model("deepseek-v3")
    by = _bytes("cloudmatrix384", "int8", "int8", "bf16")
    dev = Device.of(catalog.hardware("cloudmatrix384"), by.compute_dtype)
    for tokens in (1, 2):  # 2 = one MTP draft token per sequence
        ops = model.attention.decode_ops(dev, by, tokens=_one(tokens), seqs=_one(1), context=_one(S), tp=_one(1))
        assert ops["core"].flops[0] == 278_528 * S * tokens


def test_mla_decode_kv_bytes_per_sequence() -> None:
    """576 cached elements per token per layer: 576 * S * 2 B read per sequence in bf16, 576 * S in fp8.

    The latent is shared by all heads, so TP does not split it: 1152 B per token at any tp.
    """
    model = catalog.model("deepseek-v3")
    bf16 = _bytes("cloudmatrix384", "int8", "int8", "bf16")
    fp8 = _bytes("h800", "fp8", "fp8", "fp8")
    for tp in (1, 8, 128):
        assert model.attention.kv_bytes_per_token_per_die(bf16, _one(tp))[0] == 1152
        assert model.attention.kv_bytes_per_token_per_die(fp8, _one(tp))[0] == 576
    dev = Device.of(catalog.hardware("cloudmatrix384"), bf16.compute_dtype)

    def core_bytes(S: float, seqs: float) -> float:
        ops = model.attention.decode_ops(dev, bf16, tokens=_one(seqs), seqs=_one(seqs), context=_one(S), tp=_one(1))
        return float(ops["core"].bytes[0])

    # The KV read grows by 576 * 2 B per extra cached token and per sequence.
    assert core_bytes(5000, 1) - core_bytes(1000, 1) == 1152 * 4000
    assert core_bytes(5000, 3) - core_bytes(1000, 3) == 3 * 1152 * 4000


# --------------------------------------------------------------------------- (c) GQA KV bytes


def test_gqa_kv_bytes_llama_70b() -> None:
    """llama-3.1-70b: 2 (K and V) * 8 KV heads * 128 head_dim * 2 B = 4096 B per token per layer.

    TP 8 keeps one KV head per die (512 B); TP 16 cannot split a head further, so still 512 B.
    Per sequence of 1000 tokens over 80 layers at tp 1: 80 * 1000 * 4096 = 327,680,000 B.
    """
    model = catalog.model("llama-3.1-70b")
    by = _bytes("h100", "fp8", "fp8", "bf16")
    assert model.attention.kv_bytes_per_token_per_die(by, _one(1))[0] == 2 * 8 * 128 * 2 == 4096
    assert model.attention.kv_bytes_per_token_per_die(by, _one(8))[0] == 512
    assert model.attention.kv_bytes_per_token_per_die(by, _one(16))[0] == 512
    assert kv_bytes_per_sequence(model, by, context=_one(1000), tp=_one(1))[0] == 327_680_000
    fp8 = _bytes("h100", "fp8", "fp8", "fp8")
    assert model.attention.kv_bytes_per_token_per_die(fp8, _one(1))[0] == 2048


# --------------------------------------------------------------------------- (d) causal pairs


def test_causal_prefill_pairs() -> None:
    """N = 4096 new tokens: N^2/2 = 8,388,608 pairs; after a 1000-token prefix + N * P = 12,484,608;
    a 128-token window caps them at N * w = 524,288; a window wider than N/2 changes nothing."""
    N = _one(4096)
    assert causal_pairs(N, _one(0), 0.0)[0] == 8_388_608
    assert causal_pairs(N, _one(1000), 0.0)[0] == 4096 * 1000 + 8_388_608 == 12_484_608
    assert causal_pairs(N, _one(0), 128.0)[0] == 4096 * 128 == 524_288
    assert causal_pairs(N, _one(0), 8192.0)[0] == 8_388_608


def test_keys_per_query() -> None:
    """A causal prompt of N tokens: N / 2 keys per query row; after a prefix P: P + N / 2; a window
    caps it; no new tokens: 0 (not a division by zero)."""
    assert keys_per_query(_one(4096), _one(0), 0.0)[0] == 2048
    assert keys_per_query(_one(4096), _one(1000), 0.0)[0] == 3048
    assert keys_per_query(_one(4096), _one(0), 128.0)[0] == 128
    assert keys_per_query(_one(0), _one(1000), 0.0)[0] == 0


def test_mla_prefill_core_pays_the_fixed_work_per_query_row_by_hand() -> None:
    """DeepSeek-V3 on H800, one causal prompt of N = 4096 tokens, tp 1.

    FLOPs 2 H (d_qk + d_v) N^2 / 2 = 2 * 128 * 320 * 8,388,608 = 687,194,767,360.  Each query row
    attends s = N / 2 = 2048 keys and pays n_q = 273 keys' worth of fixed work
    (prefill_query_overhead_tokens), so the kernel runs at 0.669 * 2048 / 2321 of 989.4 TFLOPS =
    584.05 TFLOPS: 1.17660 ms, + 2.63 us per kernel = 1.17923 ms (compute-bound: Q, K, V, O in bf16
    are 671 MB, 0.222 ms at 0.901 x 3.35 TB/s).  Without the term it was 1.04082 ms.
    """
    model = catalog.model("deepseek-v3")
    by = _bytes("h800", "fp8", "fp8", "bf16")
    dev = Device.of(catalog.hardware("h800"), by.compute_dtype)
    ops = model.attention.prefill_ops(dev, by, tokens=_one(4096), seqs=_one(1), new_tokens=_one(4096),
                                      prefix_tokens=_one(0), tp=_one(1))
    assert ops["core"].flops[0] == 687_194_767_360
    assert ops["core"].time_s[0] == pytest.approx(1.17923e-3, rel=1e-5)
    assert attention_prefill_frac(dev, _one(2048))[0] == pytest.approx(0.669 * 2048 / 2321, rel=1e-12)


def test_prefill_attention_efficiency_rises_with_the_prompt_and_decode_keeps_compute_frac() -> None:
    """Longer prompts amortise the per-query-row work: eff(s) rises towards compute_frac, never past it;
    a decode core (no keys_per_query) runs at compute_frac."""
    dev = Device.of(catalog.hardware("h800"), Dtype.FP8)
    eff = attention_prefill_frac(dev, np.array([64.0, 512.0, 2048.0, 16384.0, 1e9]))
    assert np.all(np.diff(eff) > 0) and eff[-1] == pytest.approx(dev.attention_compute_frac, rel=1e-6)
    flops, traffic = _one(1e12), _one(1e6)
    assert attention_core(dev, flops, traffic).compute_s[0] == pytest.approx(
        1e12 / (dev.attention_peak_flops_per_s * dev.attention_compute_frac))


# --------------------------------------------------------------------------- (e) all-reduce


@pytest.mark.parametrize(("hw", "n", "fabric_name"), [
    ("h800", 8, "nvlink"),                # one server
    ("h800", 16, "infiniband"),           # two servers: the cluster fabric
    ("cloudmatrix384", 4, "ub"),          # two chips: the pod fabric
    ("cloudmatrix384", 16, "ub"),         # past decay_start_ranks: efficiency falls
])
def test_ring_allreduce(hw: str, n: int, fabric_name: str) -> None:
    """call_s + 2(n-1) * latency + 2(n-1)/n * B / (bw * eff(n)), eff(n) = max_frac * min(1, (n0/n)^decay),
    with every number read from the shipped profile."""
    p = _profile(hw)
    fabric = next(f for f in p["fabrics"] if f["name"] == fabric_name)
    e = fabric["efficiency"]
    eff = e["max_frac"] * min(1.0, (e.get("decay_start_ranks", 8.0) / n) ** e.get("decay", 0.0))
    B = 16e6
    expected = (p["collectives"]["collective_s"] + 2 * (n - 1) * fabric["latency_s"]
                + 2 * (n - 1) / n * B / (fabric["bandwidth_bytes_per_s"] * eff))
    got = allreduce_s(catalog.hardware(hw), _one(B), _one(n), p["collectives"]["collective_s"], AllReduce.RING)[0]
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("n", "by_hand_s"), [
    # 2 dies, chip link: 10 us + 2 * 1 us + (2/2) * 16 MB / (200 GB/s * 0.8) = 12 + 100 = 112 us
    (2, 112.0e-6),
    # 16 dies, pod fabric: eff = 0.75 * (8/16)^0.3 = 0.609189;
    # 10 us + 30 * 2 us + (30/16) * 16 MB / (196 GB/s * 0.609189) = 70 + 251.254 = 321.254 us
    (16, 321.254e-6),
])
def test_ring_allreduce_by_hand(npu: Any, n: int, by_hand_s: float) -> None:
    assert allreduce_s(npu, _one(16e6), _one(n), 10e-6)[0] == pytest.approx(by_hand_s, rel=1e-5)


def test_allreduce_of_one_die_is_free() -> None:
    assert allreduce_s(catalog.hardware("h800"), _one(1e9), _one(1), 6.6e-6)[0] == 0.0


def test_in_switch_allreduce_by_hand() -> None:
    """NVLS on 8 H200, 268 MB (a Llama-405B TP8 prefill chunk of 8192 tokens, 16384 x 2 bytes each):
    6.6 us + 21.6 us + 9/8 * (S + sqrt(S * 2.73e6)) / (450e9 * 0.696) with S = 268435456:
    sqrt(S * 2.73e6) = 27.0709e6, 9/8 * 295.506e6 = 332.445e6 bytes, / 313.2e9 = 1061.45 us; total 1089.65 us."""
    got = allreduce_s(catalog.hardware("h200"), _one(268435456), _one(8), 6.6e-6, AllReduce.IN_SWITCH)[0]
    assert got == pytest.approx(1089.65e-6, rel=1e-4)


def test_in_switch_allreduce_between_the_measured_sizes() -> None:
    """Azure's NVLS sweep on 8 H200 (rows az-h200-nccl-ar-nvls-134M / -1G) measured busBW 412.45 GB/s at
    128 MiB and 467.58 at 1 GiB; the model's busBW at 268 MB (not a fitted size) lies between them."""
    S = 268435456
    t = allreduce_s(catalog.hardware("h200"), _one(S), _one(8), 6.6e-6, AllReduce.IN_SWITCH)[0]
    assert 412.45e9 < S / t * 2 * 7 / 8 < 467.58e9


def test_fastest_allreduce_is_the_faster_algorithm_per_message() -> None:
    """NCCL's tuner: a 1 MB decode all-reduce rides the ring (15 us start-up against NVLS's 28 us),
    a 268 MB prefill all-reduce NVLS (the ring moves 2 (n-1)/n = 1.75 x the message, NVLS 9/8 x)."""
    hw, S, n = catalog.hardware("h200"), np.array([1e6, 268435456.0]), np.array([8.0, 8.0])
    ring = allreduce_s(hw, S, n, 6.6e-6, AllReduce.RING)
    switch = allreduce_s(hw, S, n, 6.6e-6, AllReduce.IN_SWITCH)
    fastest = allreduce_s(hw, S, n, 6.6e-6)
    assert fastest[0] == ring[0] < switch[0]
    assert fastest[1] == switch[1] < ring[1]
    # vector == scalar
    for i in range(2):
        assert allreduce_s(hw, S[i:i + 1], n[i:i + 1], 6.6e-6)[0] == fastest[i]


@pytest.mark.parametrize(("hw", "n"), [("h200", 16), ("gb200-nvl72", 8), ("b200", 8), ("cloudmatrix384", 16)])
def test_no_in_switch_reduction_is_a_ring(hw: str, n: int) -> None:
    """Beyond the NVSwitch (16 H200 span InfiniBand) or on a fabric without in-switch reduction in its
    profile, the fastest all-reduce is the ring and a forced in-switch one is impossible (inf)."""
    h, S = catalog.hardware(hw), _one(268435456)
    assert allreduce_s(h, S, _one(n), 6.6e-6)[0] == allreduce_s(h, S, _one(n), 6.6e-6, AllReduce.RING)[0]
    assert np.isinf(allreduce_s(h, S, _one(n), 6.6e-6, AllReduce.IN_SWITCH)[0])


def test_allreduce_is_monotone_in_message_and_bandwidth() -> None:
    """Larger messages never take less time; more NVLink bandwidth never more (both algorithms, and their min)."""
    from planner.ops.calibration import with_params
    hw = catalog.hardware("h200")
    S = np.geomspace(1e3, 1e10, 200)
    n = np.full_like(S, 8.0)
    for algorithm in AllReduce:
        t = allreduce_s(hw, S, n, 6.6e-6, algorithm)
        assert np.all(np.diff(t) >= 0)
        faster = with_params(hw, {"fabrics.nvlink.bandwidth_bytes_per_s": 900e9})
        assert np.all(allreduce_s(faster, S, n, 6.6e-6, algorithm) <= t)


# --------------------------------------------------------------------------- (f) distinct targets


@pytest.mark.parametrize(("n", "k"), [(4, 2), (8, 8), (32, 8), (288, 8), (16, 40)])
def test_distinct_targets_match_monte_carlo(n: int, k: int) -> None:
    """E[distinct] = n (1 - (1 - 1/n)^k) for k uniform picks with replacement; e.g. n=4, k=2: 1.75."""
    rng = np.random.default_rng(20240611 + n * 100 + k)
    picks = np.sort(rng.integers(0, n, size=(40_000, k)), axis=1)
    hits = 1 + (np.diff(picks, axis=1) != 0).sum(axis=1)
    estimate = hits.mean()
    value = float(distinct(_one(n), k)[0])
    assert value == pytest.approx(n * (1 - (1 - 1 / n) ** k), rel=1e-12)
    assert value == pytest.approx(estimate, rel=0.02)


def test_distinct_by_hand() -> None:
    assert distinct(_one(4), 2)[0] == pytest.approx(1.75, rel=1e-15)
    assert distinct(_one(1), 8)[0] == pytest.approx(1.0, rel=1e-15)


# --------------------------------------------------------------------------- (g) expert load

# The expert-load model (EPLB placement, per-layer skew, sampling noise) has its own closed-form
# tests (tests/unit/test_expert_load.py) and invariants (tests/property/test_expert_load_props.py,
# where the old strict xfail on monotonicity in the redundant experts now passes).


def test_dense_model_has_no_expert_imbalance() -> None:
    model = catalog.model("llama-3.1-70b")
    lo = ExpertLoad(policy=Policy.EPLB, params=load_params(), rebalance_period_s=60.0)
    imb = expert_imbalance(model, lo, ep=_one(8), redundant=_one(0), copies_per_die=_one(5))
    assert np.all(imb == 1.0)


# --------------------------------------------------------------------------- elementwise under TP


def _dense_elementwise_bytes(tp: int, batch_per_die: int) -> float:
    """Per-die bytes of the elementwise kernels of one llama-3.1-70b decode layer (fp8, no MTP)."""
    sc = build_scenario(None, scenario_overrides(model="llama-3.1-70b", hardware="h100", weights_dtype="fp8",
                                                 activations_dtype="fp8", kv_dtype="fp8", mtp_acceptance=0.0))
    d = DecodeArrays(dies=_one(tp), tp=_one(tp), ep=_one(1), batch=_one(batch_per_die), micro_batches=_one(1),
                     redundant=_one(0), chunk_tokens=_one(0))
    step = shared_decode_step(Env.of(sc), d)
    return float(step.layers["full-attention/dense"].ops["elementwise"].bytes[0])


def test_elementwise_token_side_counts_every_kernel_on_the_die_tokens() -> None:
    """tp = 1, 64 tokens, fp8 activations (quantized inputs), dense FFN, llama-3.1-70b (h 8192, I 28672):
    attention side 4 B * 64 * 8192 * (2 + 3) = 10,485,760 B; FFN SiLU-and-mul (2I in, I out, bf16)
    quantized twice: 64 * 3 * 28672 * 2 * 2 = 22,020,096 B; total 32,505,856 B."""
    model = catalog.model("llama-3.1-70b")
    by = _bytes("h100", "fp8", "fp8", "fp8")
    dev = Device.of(catalog.hardware("h100"), by.compute_dtype)
    cost = elementwise.token_side(dev, model, by, tokens=_one(64), ffn="dense")
    assert cost.bytes[0] == 32_505_856
    assert _dense_elementwise_bytes(1, 64) == 32_505_856


def test_elementwise_ffn_activation_is_split_by_tp() -> None:
    """TP 2 with 64 sequences per die: each die normalizes all 128 group tokens (norms double), but the
    SiLU-and-mul over I/2 columns of 128 tokens moves what tp 1 moves for 64 tokens; so the per-die bytes
    must be below twice the tp-1 bytes (the planner gives exactly twice)."""
    tp1, tp2 = _dense_elementwise_bytes(1, 64), _dense_elementwise_bytes(2, 64)
    # Correct: 2 * 10,485,760 (norms, RoPE, quant of 128 tokens) + 22,020,096 (FFN half) = 42,991,616 B.
    assert tp2 < 2 * tp1, f"tp 2 elementwise bytes {tp2:.0f} = {tp2 / tp1:.3f} x tp 1 ({tp1:.0f})"
    assert tp2 == 42_991_616


# --------------------------------------------------------------------------- shared-expert replicas on expert dies

R1 = catalog.model("deepseek-r1")   # 256 routed experts, top-8, one shared expert


def _eplb(policy: str = "eplb") -> ExpertLoad:
    return ExpertLoad(policy=Policy(policy), params=load_params(), rebalance_period_s=60.0)


@pytest.mark.parametrize(("ep", "redundant", "replicas", "policy", "dies"), [
    (288, 288, 32, "eplb", 256),   # xDeepServe: the replica dies' routed slots hold cold pieces
    (288, 288, 32, "none", 272),   # static: (E + R) / s = 544 / 2 dies of two routed slots
    (288, 0, 32, "eplb", 256),     # one slot per die: exactly the 256 routed-expert dies
    (320, 32, 32, "eplb", 288),    # CloudMatrix-Infer EP320: 288 routed-expert dies
    (64, 32, 64, "eplb", 64),      # k >= ep: every die alike
])
def test_routed_dies_by_hand(ep: int, redundant: int, replicas: int, policy: str, dies: int) -> None:
    n = routed_dies(R1, _eplb(policy), ep=_one(ep), redundant=_one(redundant), shared_replicas=_one(replicas))
    assert n[0] == pytest.approx(dies, rel=1e-12)


def test_replica_dies_ratio_is_over_the_routed_dies() -> None:
    """EP288, 32 shared replicas, no redundant experts: the busiest-die ratio is the one of 256 one-expert
    dies at their own mean (288 / 256 of the group's mean copies), not of 288 dies."""
    lo, c = _eplb(), 960.0
    got = expert_imbalances(R1, lo, ep=_one(288), redundant=_one(0), copies_per_die=_one(c), shared_replicas=_one(32))
    want = busiest_die_ratios(lo, experts=256, top_k=8, ep=_one(256), redundant=_one(0),
                              copies_per_die=_one(c * 288 / 256))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_published_xdeepserve_layout_waits_nothing_under_perfect_balance() -> None:
    """288 dies of two slots (256 routed + 288 redundant + 32 shared replicas): with perfect balance a
    routed-only die computes 8 * 288 / 256 = 9 copies per token of a die, as a replica die does
    (288 / 32 = 9): nothing to wait for.  With imbalance the wait grows with it."""
    dev = Device.of(catalog.hardware("cloudmatrix384"), Dtype.INT8)
    by = _bytes("cloudmatrix384", "int8", "int8", "bf16")
    t = 60.0 * 2                                                     # tokens per die (60 sequences, MTP 1)
    kw = dict(copies=_one(t * 8), slots=_one(2.0), launch_s=0.0, shared_replicas=_one(32), tokens=_one(t),
              ep=_one(288), redundant=_one(288))
    waits = [expert_side(dev, R1, by, imbalance=_one(m), load=_eplb(p), **kw)["combine_wait"].time_s[0]
             for m, p in ((1.0, "perfect"), (1.2, "eplb"), (1.5, "eplb"))]
    assert waits[0] == 0.0 and 0.0 < waits[1] < waits[2]


def test_workspace_is_sized_by_the_hottest_layer() -> None:
    kw = dict(ep=_one(32), redundant=_one(32), copies_per_die=_one(1024))
    mean, hottest = expert_imbalances(R1, _eplb(), **kw)
    assert expert_imbalance(R1, _eplb(), **kw)[0] == hottest[0] > mean[0]
