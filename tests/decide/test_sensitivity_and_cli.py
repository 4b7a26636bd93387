"""Sensitivity (each input +-X%, sorted, the deciding input named) and the decision flags of the CLI."""

from __future__ import annotations

import json

import pytest

from planner.decide.sensitivity import sensitivity
from planner.evaluate import evaluate, layout_goodput
from planner.inputs.layout import parse_layout
from planner.inputs.scenario import build_scenario, scenario_overrides

SMALL = dict(model="qwen3-30b-a3b", hardware="h100", weights_dtype="fp8", activations_dtype="fp8",
             input_tokens=2048, output_tokens=256, dies=16, pods=2)
SMALL_FLAGS = ("--model", "qwen3-30b-a3b", "--hardware", "h100", "--dies", "16", "--pods", "2", "--weights-dtype",
               "fp8", "--activations-dtype", "fp8", "--input-tokens", "2048", "--output-tokens", "256")
PD = {"mode": "pd", "prefill": {"instances": 3, "dies": 1, "batch_tokens": 8192},
      "decode": {"instances": 2, "dies": 2, "ep": 2, "batch": 64}}


def test_sensitivity_is_sorted_names_the_decider_and_moves_the_right_way():
    sc = build_scenario(None, scenario_overrides(**SMALL))
    layout = parse_layout(PD, "test")
    s = sensitivity(layout, sc, 0.1)
    point = s.point_tokens_per_s_per_die
    assert point == pytest.approx(layout_goodput(evaluate(layout, sc)).output_tokens_per_s_per_die, rel=1e-12)
    swings = [e.swing(point) for e in s.inputs]
    assert swings == sorted(swings, reverse=True) and s.decides is s.inputs[0] and swings[0] > 0
    by = {e.name: e for e in s.inputs}
    for faster in ("peak FLOP/s", "HBM bandwidth", "GEMM efficiency"):  # more of a resource never slows the layout
        assert by[faster].low_tokens_per_s_per_die <= point <= by[faster].high_tokens_per_s_per_die
    assert not by["MTP acceptance"].applies  # qwen3 has no MTP layers
    assert by["MTP acceptance"].swing(point) == 0.0


def test_plan_with_bands_failures_and_cost(run_planner, tmp_path):
    flags = (*SMALL_FLAGS, "--top", "3", "--samples", "16", "--tolerate-failures", "node", "--usd-per-chip-hour", "2.5")
    run = run_planner("plan", *flags, "--json", str(tmp_path / "plan.json"))  # tables, and the JSON to a file
    assert run.returncode == 0, run.stderr
    for title in ("uncertainty: point (p10-p90)", "failure what-if", "cost at $2.5 per die-hour",
                  "survives one node failure"):
        assert title in " ".join(run.stdout.split()), title
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert doc["tolerate_failures"] == "node" and doc["uncertainty"]["samples"] == 16
    assert doc["price"]["usd_per_die_hour"] == 2.5
    first, second = doc["layouts"][:2]
    assert first["bands"]["tied_with_rank1"] is None and isinstance(second["bands"]["tied_with_rank1"], bool)
    assert [f["kind"] for f in first["failures"]] == ["dies", "node", "pod"]
    assert first["cost"]["usd_per_hour"] == pytest.approx(2.5 * first["dies"])
    assert json.loads(run_planner("plan", *flags, "--json", "-").stdout) == doc  # seeded: the same bands twice


def test_decision_flags_refuse_what_they_cannot_do(run_planner):
    run = run_planner("plan", *SMALL_FLAGS, "--rank-by", "cost")
    assert run.returncode == 2 and "needs a hardware price" in run.stderr_line()
    run = run_planner("plan", *SMALL_FLAGS, "--target-rate", "10", "--tolerate-failures", "pod")
    assert run.returncode == 2 and "--target-rate" in run.stderr_line()


def test_sensitivity_and_evaluate_commands(run_planner, tmp_path):
    path = tmp_path / "pd.toml"
    lines = ["mode = 'pd'", "[prefill]", "instances = 3", "dies = 1", "batch_tokens = 8192", "[decode]",
             "instances = 2", "dies = 2", "ep = 2", "batch = 64", "[scenario]",
             *(f"{k} = {json.dumps(v)}" for k, v in SMALL.items() if k in ("model", "hardware", "dies", "pods")),
             "[scenario.precision]", "weights = 'fp8'", "activations = 'fp8'", "[scenario.workload]",
             "input_tokens = 2048", "output_tokens = 256"]
    path.write_text("\n".join(lines) + "\n")
    run = run_planner("sensitivity", "--layout", str(path), "--delta", "0.05", "--json", "-")
    assert run.returncode == 0, run.stderr
    doc = run.json()
    assert doc["delta_frac"] == 0.05 and doc["decides"] == doc["inputs"][0]["input"]
    run = run_planner("evaluate", str(path), "--samples", "8", "--failures", "--usd-per-die-hour", "1", "--json", "-")
    assert run.returncode == 0, run.stderr
    doc = run.json()
    assert doc["bands"]["output_tokens_per_s_per_die"]["low"] <= doc["goodput"]["output_tokens_per_s_per_die"]
    assert len(doc["failures"]) == 3 and doc["cost"]["usd_per_hour"] == 7.0
    plain = run_planner("evaluate", str(path), "--samples", "0", "--json", "-").json()
    assert "bands" not in plain and "failures" not in plain and "cost" not in plain
    run = run_planner("sensitivity", "--layout", str(path), "--tp", "2")
    assert run.returncode == 2 and "a --layout is analysed as written" in run.stderr_line()


def test_sensitivity_analyses_the_rank_1_of_the_pinned_search(run_planner):
    """sensitivity without --layout analyses the plan's rank 1 under the same pins a plan takes: Llama-2-70B on
    one 8-GPU H100 server pinned to TP2 and one stage (MLPerf lengths) analyses a TP2 layout."""
    args = ("--model", "llama-2-70b", "--hardware", "h100", "--input-tokens", "222", "--output-tokens", "294",
            "--weights-dtype", "fp8", "--activations-dtype", "fp8", "--kv-dtype", "fp8", "--tp", "2", "--pp", "1")
    run = run_planner("sensitivity", *args, "--json", "-")
    assert run.returncode == 0, run.stderr
    layout = run.json()["layout"]
    assert layout["decode"]["tp"] == 2 and (layout["decode"].get("pp") or 1) == 1


def test_per_dtype_gemm_efficiency_is_a_level_the_bands_sample():
    """B200's FP4 GEMM asymptote and weight stream ([efficiency.gemm.by_dtype.fp4]) are level parameters
    like the shared ones: listed with their values, and a sampled array reaches FP4 GEMMs only."""
    import numpy as np

    from planner import catalog
    from planner.cost.roofline import Device
    from planner.decide.outcomes import hardware_with
    from planner.decide.spreads import level_values
    from planner.units import Dtype

    hw = catalog.hardware("b200")
    levels = {path: value for path, value, _ in level_values(hw)}
    own = hw.gemm_efficiency.by_dtype[Dtype.FP4]
    assert levels["efficiency.gemm.by_dtype.fp4.max_frac"] == own.max_frac
    assert levels["efficiency.gemm.by_dtype.fp4.memory_frac"] == own.memory_frac
    sampled = hardware_with(hw, {"efficiency.gemm.by_dtype.fp4.max_frac": np.array([0.5, 0.6])})
    assert list(Device.of(sampled, Dtype.FP4).gemm_max_frac) == [0.5, 0.6]
    assert Device.of(sampled, Dtype.FP4).gemm_memory_frac == own.memory_frac
    assert Device.of(sampled, Dtype.FP8).gemm_max_frac == hw.gemm_efficiency.max_frac


def test_in_switch_reduction_is_a_level_the_bands_sample():
    """H200's NVLS rate and start-up ([fabrics.in_switch_reduction]) are level parameters: listed with their
    values, and a sampled array reaches the in-switch all-reduce only (the ring keeps its efficiency)."""
    import numpy as np

    from planner import catalog
    from planner.decide.outcomes import hardware_with
    from planner.decide.spreads import level_values
    from planner.xccl import AllReduce, allreduce_s

    hw = catalog.hardware("h200")
    isr = hw.fabric_named("nvlink").in_switch_reduction
    levels = {path: value for path, value, _ in level_values(hw)}
    assert levels["fabrics.nvlink.in_switch_reduction.max_frac"] == isr.max_frac
    assert levels["fabrics.nvlink.in_switch_reduction.latency_s"] == isr.latency_s
    assert not any("in_switch" in p for p, _, _ in level_values(catalog.hardware("gb200-nvl72")))
    frac = np.array([isr.max_frac / 2, isr.max_frac])
    sampled = hardware_with(hw, {"fabrics.nvlink.in_switch_reduction.max_frac": frac})
    S, n = np.full(2, 8e9), np.full(2, 8.0)
    t = allreduce_s(sampled, S, n, 6.6e-6, AllReduce.IN_SWITCH)
    assert t[1] == allreduce_s(hw, S[:1], n[:1], 6.6e-6, AllReduce.IN_SWITCH)[0]
    assert t[0] > 1.9 * t[1]  # half the rate: ~twice the time for an 8 GB message
    assert np.all(allreduce_s(sampled, S, n, 6.6e-6, AllReduce.RING) == allreduce_s(hw, S, n, 6.6e-6, AllReduce.RING))
