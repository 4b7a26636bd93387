"""Latency at a load (``evaluate --rate``), inverse sizing (``plan --target-rate``), the load curve."""

from __future__ import annotations

import json
import math

import pytest

PD = "examples/deepseek-v3-cloudmatrix384-pd.toml"          # prefill (TTFT) bound at its goodput
H800 = "examples/deepseek-v3-h800-pd.toml"                  # decode (batch x TPOT) bound
SMALL = ("--model", "qwen3-30b-a3b", "--hardware", "h100", "--weights-dtype", "fp8", "--activations-dtype", "fp8",
         "--input-tokens", "2048", "--output-tokens", "256", "--dies", "32", "--pods", "4")
SMALL_16 = (*SMALL[:-4], "--dies", "16", "--pods", "2")  # the same scenario on two pods of 8


def _json(run) -> dict:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("example", [PD, H800])
def test_rate_at_goodput_reproduces_the_goodput_point(example, run_planner):
    base = _json(run_planner("evaluate", example, "--json", "-"))
    g = base["goodput"]
    at = _json(run_planner("evaluate", example, "--json", "-", "--rate", repr(g["goodput_requests_per_s"])))["at_rate"]
    assert at["saturated_pool"] is None
    # the goodput point is priced a hair (1e-9 relative) inside the decode capacity, to stay stable
    assert at["ttft_at_slo_percentile_s"] == pytest.approx(g["ttft_s"], rel=1e-6)
    assert at["tpot_mean_s"] == pytest.approx(g["tpot_s"], rel=1e-6)
    assert at["decode_batch_per_die"] == pytest.approx(g["decode_batch_at_goodput"], rel=1e-6)
    assert at["meets_ttft_slo"] and at["meets_tpot_slo"]
    # the goodput point's TTFT breakdown adds up, and matches the at-goodput load point
    parts = g["ttft_breakdown"]
    assert parts["total_s"] == pytest.approx(parts["queueing_s"] + parts["prefill_s"] + parts["step_boundary_s"]
                                             + parts["kv_transfer_s"] + parts["first_decode_step_s"], rel=1e-12)
    assert parts["step_boundary_s"] > 0 and parts["queueing_s"] >= 0
    assert base["at_goodput"]["ttft_at_slo_percentile_s"] == pytest.approx(g["ttft_s"], rel=1e-9)


@pytest.mark.parametrize(("example", "pool"), [(PD, "prefill"), (H800, "decode")])
def test_ten_percent_past_goodput_misses_an_slo_and_names_the_pool(example, pool, run_planner):
    g = _json(run_planner("evaluate", example, "--json", "-"))["goodput"]["goodput_requests_per_s"]
    at = _json(run_planner("evaluate", example, "--json", "-", "--rate", repr(1.1 * g)))["at_rate"]
    assert not (at["meets_ttft_slo"] and at["meets_tpot_slo"])
    assert at["saturated_pool"] == pool
    table = run_planner("evaluate", example, "--rate", repr(1.1 * g))
    # the verdict is a table title, wrapped at the table's width
    assert table.returncode == 0 and f"the {pool} pool saturates" in " ".join(table.stdout.split())
    assert "MISSED" in table.stdout


def test_ttft_percentiles_are_ordered_and_tpot_percentile_slo_is_stricter(run_planner):
    doc = _json(run_planner("evaluate", PD, "--json", "-", "--tpot-percentile", "99"))
    at = doc["at_goodput"]
    ttft = [t["total_s"] for t in at["ttft"]]
    tpot = [q["value_s"] for q in at["tpot"]]
    assert ttft == sorted(ttft) and tpot == sorted(tpot)
    assert at["tpot_at_slo_statistic_s"] == pytest.approx(tpot[-1])  # the SLO is on p99 now
    mean = _json(run_planner("evaluate", PD, "--json", "-"))["goodput"]["goodput_requests_per_s"]
    assert doc["goodput"]["goodput_requests_per_s"] <= mean


def test_a_p99_tpot_slo_never_raises_the_best_goodput(run_planner):
    # on 16 dies (two pods), not SMALL's 32: a stricter statistic shrinks the feasible set at any budget,
    # and the two searches take ~1.5 s instead of ~2.6 s
    mean = _json(run_planner("plan", *SMALL_16, "--json", "-", "--tpot-s", "0.02"))["layouts"][0]
    p99 = _json(run_planner("plan", *SMALL_16, "--json", "-", "--tpot-s", "0.02", "--tpot-percentile", "99"))
    assert p99["layouts"][0]["goodput_requests_per_s"] / p99["layouts"][0]["dies"] <= (
        mean["goodput_requests_per_s"] / mean["dies"] * (1 + 1e-9))


def test_plan_target_rate_reports_dies_and_headroom(run_planner, tmp_path):
    # One search gives both outputs: the table on stdout and the same report as JSON (--json PATH).
    # A 16-die budget (60 req/s takes 4 dies, tests/search/test_target_rate.py): the flags' wiring
    # does not depend on the budget, and each search is ~40% cheaper than on SMALL's 32.
    table = run_planner("plan", *SMALL_16, "--target-rate", "60", "--json", str(tmp_path / "plan.json"), "--top", "5")
    assert table.returncode == 0 and "headroom" in table.stdout and "fewest dies" in table.stdout
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert doc["target_rate_requests_per_s"] == 60
    first = doc["layouts"][0]
    assert first["dies"] < 16
    assert first["goodput_requests_per_s"] >= 60
    # both written to 6 significant digits (REPORT_DIGITS): the goodput's rounding (half a unit in its 6th
    # digit, over the target) plus the headroom's own
    g = first["goodput_requests_per_s"]
    tol = 0.5 * 10 ** (math.floor(math.log10(g)) - 5) / 60 + 0.5 * 10 ** (math.floor(math.log10(abs(g / 60 - 1))) - 5)
    assert first["headroom_frac"] == pytest.approx(g / 60 - 1, abs=tol)
    by_tokens = _json(run_planner("plan", *SMALL_16, "--target-output-tokens-per-s", str(60 * 256), "--json", "-",
                                  "--top", "5"))
    assert by_tokens["layouts"][0]["dies"] == first["dies"]


def test_plan_target_rate_out_of_reach_is_infeasible(run_planner):
    run = run_planner("plan", *SMALL, "--target-rate", "1e6")
    assert run.returncode == 3
    assert "serves 1e+06 req/s" in run.stderr and len(run.stderr.splitlines()) == 1


def test_both_target_flags_are_refused(run_planner):
    run = run_planner("plan", *SMALL, "--target-rate", "5", "--target-output-tokens-per-s", "100")
    assert run.returncode == 2 and "not both" in run.stderr


@pytest.mark.parametrize("flag", ["--target-rate", "--target-output-tokens-per-s"])
@pytest.mark.parametrize("value", ["0", "inf"])
def test_a_target_of_zero_or_infinity_is_bad_input_naming_the_flag(flag, value, run_planner):
    run = run_planner("plan", *SMALL, flag, value)  # refused before the search: 0 once leaked 'prefill.instances'
    assert run.returncode == 2 and f"{flag} must be positive and finite" in run.stderr
    assert len(run.stderr.splitlines()) == 1


def test_an_infinite_evaluate_rate_is_bad_input(run_planner):
    run = run_planner("evaluate", H800, "--rate", "inf", "--samples", "0")
    assert run.returncode == 2 and run.stderr.startswith("planner: error: --rate:")
    assert len(run.stderr.splitlines()) == 1


def test_a_bad_load_plot_suffix_names_its_own_flag(run_planner):
    run = run_planner("evaluate", H800, "--plot-load", "load.txt")
    assert run.returncode == 2 and run.stderr.startswith("planner: error: --plot-load: unsupported plot format")


def test_load_curve_plot(tmp_path, run_planner):
    pytest.importorskip("matplotlib")
    out = tmp_path / "load.png"
    run = run_planner("evaluate", PD, "--plot-load", str(out))
    assert run.returncode == 0, run.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = _json(run_planner("evaluate", PD, "--json", "-", "--plot-load", str(tmp_path / "again.svg")))
    rates = [p["rate_requests_per_s"] for p in doc["load_curve"]]
    assert rates == sorted(rates) and len(rates) == 40
    sat = min(doc["load_curve"][0]["prefill_saturation_requests_per_s"],
              doc["load_curve"][0]["decode_saturation_requests_per_s"])
    assert rates[-1] < sat
    assert b"<svg" in (tmp_path / "again.svg").read_bytes()[:1000]  # the curve written beside the JSON
