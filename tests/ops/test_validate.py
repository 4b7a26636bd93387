"""``planner validate``: every shipped measurement predicted, gated against its band, two medians.

It runs the same rows as ``tests/validation`` (each gated row at the band stored with it, known
misses listed apart) from the command line, for CI.  Rows outside their band without a
``known_miss`` mark fail (exit 1); a marked row back inside its band fails too (the mark must go).
"""

from __future__ import annotations

import json

import pytest


def test_validate_exits_0_and_prints_both_medians_and_the_known_misses(run_planner):
    run = run_planner("validate")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert "median" in run.stdout
    assert "calibration (fitted on)" in run.stdout and "held out (check + system rows)" in run.stdout
    assert "ds-profile-prefill-node" in run.stdout and "deepgemm" in run.stdout
    assert "known misses" in run.stdout and "known miss" in run.stdout


def test_json_report(validate_run):
    assert validate_run.returncode == 0
    doc = validate_run.json()
    assert doc["verdict"] == "ok" and doc["failing"] == [] and doc["known_misses_now_passing"] == []
    summary = doc["summary"]
    assert summary["calibration"]["rows"] >= 60 and summary["held_out"]["rows"] >= 15
    assert 0 <= summary["calibration"]["median_abs_error"] <= 0.05  # the calibration gate's median
    roles = {r["role"] for r in doc["rows"]}
    assert roles >= {"fit", "check", "upper_bound", "gap", "system"}
    assert all(r["gated"] == (r["role"] != "gap") for r in doc["rows"])


def test_every_gated_row_states_its_band_and_known_misses_are_listed_apart(validate_run):
    doc = validate_run.json()
    for r in doc["rows"]:
        if r["gated"]:
            assert r["band_reason"] and len(r["band_reason"]) > 60, r["id"]
            assert (r["tolerance"] is None) == (r["role"] == "upper_bound"), r["id"]
        else:
            assert r["tolerance"] is None and r["band_reason"] is None and r["known_miss"] is None, r["id"]
    marked = [r["id"] for r in doc["rows"] if r["known_miss"]]
    assert doc["known_misses"] == marked, "every marked row is outside its band"
    assert all(r["status"] == "known_miss" and not r["within"] for r in doc["rows"] if r["known_miss"])


def _edit_row(data, name: str, row_id: str, **values) -> None:
    path = data / "measurements" / name
    doc = json.loads(path.read_text())
    row = next(r for r in doc["rows"] if r["id"] == row_id)
    for key, value in values.items():
        if value is None:
            row.pop(key, None)
        elif callable(value):
            row[key] = value(row[key])
        else:
            row[key] = value
    path.write_text(json.dumps(doc))


def test_a_validation_row_off_by_10x_exits_1_naming_the_row(data, run_planner):
    _edit_row(data, "validation.json", "ds-profile-decode-node", measured=lambda m: m * 10)
    run = run_planner("validate", data=data)
    assert run.returncode == 1
    assert "ds-profile-decode-node" in run.stderr_line() and "outside their band: ds-profile-decode-node" in run.stdout
    failing = run_planner("validate", "--json", "-", data=data).json()["failing"]
    assert failing == ["ds-profile-decode-node"]


def test_a_known_miss_without_its_mark_fails(data, run_planner):
    _edit_row(data, "validation.json", "sgl-h100-prefill-4k", known_miss=None)
    run = run_planner("validate", data=data)
    assert run.returncode == 1 and "sgl-h100-prefill-4k" in run.stderr_line()


def test_a_known_miss_back_inside_its_band_fails_until_the_mark_is_removed(data, run_planner):
    # sgl-h100-prefill-4k is predicted ~40% high: a measured value 40% higher puts it inside its band.
    _edit_row(data, "validation.json", "sgl-h100-prefill-4k", measured=lambda m: m * 1.40)
    run = run_planner("validate", data=data)
    assert run.returncode == 1
    line = run.stderr_line()
    assert "known miss now passes, remove the mark: sgl-h100-prefill-4k" in line
    doc = run_planner("validate", "--json", "-", data=data).json()
    assert doc["failing"] == [] and doc["known_misses_now_passing"] == ["sgl-h100-prefill-4k"]
    _edit_row(data, "validation.json", "sgl-h100-prefill-4k", known_miss=None)
    assert run_planner("validate", data=data).returncode == 0


def test_a_calibration_fit_row_off_by_2x_exits_1(data, run_planner):
    _edit_row(data, "calibration.json", "deepgemm-dense-m4096-n24576-k1536", measured_si=lambda m: m * 2)
    run = run_planner("validate", data=data)
    assert run.returncode == 1 and "deepgemm-dense-m4096-n24576-k1536" in run.stderr_line()


def test_system_medians_are_the_system_rows_alone(validate_run):
    """The summary's system medians are the median |error| of the system rows, with and without marks."""
    import statistics

    doc = validate_run.json()
    system = [r for r in doc["rows"] if r["role"] == "system"]
    s = doc["summary"]
    assert s["system"]["rows"] == len(system) >= 20
    # the JSON keeps 6 significant digits
    every = [abs(r["error"]) for r in system]
    assert s["system"]["median_abs_error"] == pytest.approx(statistics.median(every), rel=1e-5)
    unmarked = [abs(r["error"]) for r in system if not r["known_miss"]]
    assert s["system_without_known_misses"]["median_abs_error"] == pytest.approx(statistics.median(unmarked), rel=1e-5)


def test_measured_latency_entries_match_the_published_notes():
    """Each row's measured_latency: rate = published tokens/s / output tokens per sample / GPUs, and the
    p99 TTFT / TPOT as the run's summary states them (read from the row's own notes)."""
    import re
    from pathlib import Path

    rows = json.loads((Path(__file__).resolve().parents[2] / "measurements/validation.json").read_text())["rows"]
    checked = 0
    for r in rows:
        notes = r.get("published_notes") or ""
        m = re.search(r"p99 TTFT ([\d,.]+) ms, p99 TPOT ([\d,.]+) ms", notes)
        assert (m is not None) == ("measured_latency" in r), r["id"]
        if m is None:
            continue
        per_sample = float(re.search(r"samples/s\) = ([\d,]+)", notes).group(1).replace(",", ""))
        lat = r["measured_latency"]
        assert lat["requests_per_s_per_die"] == pytest.approx(r["measured"] / per_sample / r["scale"], rel=1e-8)
        assert lat["ttft_p99_s"] == float(m.group(1).replace(",", "")) / 1e3
        assert lat["tpot_p99_s"] == float(m.group(2).replace(",", "")) / 1e3
        assert r["scenario"]["slo"]["ttft_percentile"] == r["scenario"]["slo"]["tpot_percentile"] == 99.0
        checked += 1
    assert checked >= 9


def test_latency_at_the_measured_rate_agrees_with_the_goodput(validate_run):
    """The top layout meets both p99 SLOs at the run's rate exactly when its goodput per GPU is at least
    that rate (the goodput is the largest rate meeting them): rows the planner over-predicts show finite
    p99s within the SLOs, rows it under-predicts miss one or saturate."""
    from pathlib import Path

    rows = {r["id"]: r for r in
            json.loads((Path(__file__).resolve().parents[2] / "measurements/validation.json").read_text())["rows"]}
    seen = 0
    for doc_row in validate_run.json()["rows"]:
        lat = doc_row.get("latency")
        if lat is None:
            continue
        row = rows[doc_row["id"]]
        slo = row["scenario"]["slo"]
        goodput_per_gpu = doc_row["predicted"] / row["scale"] / row["scenario"]["workload"]["output_tokens"]
        measured = row["measured_latency"]["requests_per_s_per_die"]
        meets = (lat["predicted_ttft_s"] is not None and lat["predicted_tpot_s"] is not None
                 and lat["predicted_ttft_s"] <= slo["ttft_s"] * (1 + 1e-6)
                 and lat["predicted_tpot_s"] <= slo["tpot_s"] * (1 + 1e-6))
        if abs(goodput_per_gpu / measured - 1) > 1e-3:  # away from the edge
            assert meets == (goodput_per_gpu > measured), (doc_row["id"], goodput_per_gpu, measured, lat)
        seen += 1
    assert seen >= 9


def test_published_parallelism_entries_match_the_published_layout():
    """Each MLPerf row whose published layout states its parallelism and batch carries them as
    published_parallelism: "TP<tp>" (and "PP<pp>" where pp > 1) and the batch appear in the row's own
    published_layout text; the Cisco and B200 rows (layout not inspected / not public) carry none."""
    from pathlib import Path

    rows = json.loads((Path(__file__).resolve().parents[2] / "measurements/validation.json").read_text())["rows"]
    checked = 0
    for r in rows:
        par = r.get("published_parallelism")
        text = r.get("published_layout") or ""
        if par is None:
            assert not r["id"].startswith("mlperf-") or "not inspected" in text or "not in public" in text, r["id"]
            continue
        assert f"TP{par['tp']}" in text.replace(" ", ""), (r["id"], text)
        assert (f"PP{par['pp']}" in text.replace(" ", "")) == (par["pp"] > 1), (r["id"], text)
        assert f"{par['max_batch_per_instance']}" in text, (r["id"], text)
        checked += 1
    assert checked == 10


def test_the_plan_at_the_published_parallelism_never_beats_the_free_search(validate_run):
    """Pins keep a subset of the search's candidates, so each row's plan at its published parallelism
    predicts at most the free search's top layout (the row's own prediction), and its error is its
    prediction over the row's measured value."""
    seen = 0
    for row in validate_run.json()["rows"]:
        par = row.get("published_parallelism")
        if par is None:
            continue
        assert par["predicted"] is not None and par["predicted"] <= row["predicted"] * (1 + 1e-6), row["id"]
        # the JSON keeps 6 significant digits of each number: the error agrees to ~1e-6
        assert par["error"] == pytest.approx(par["predicted"] / row["measured"] - 1, abs=1e-5)
        seen += 1
    assert seen == 10


@pytest.mark.parametrize(("edit", "needle"), [
    ({"tolerance": -0.1}, "field 'tolerance' = -0.1 is not a positive number"),
    ({"band_reason": None}, "field 'band_reason' is missing"),  # _edit_row: None removes the key
    ({"measured_latency": {"requests_per_s_per_die": 0.04, "ttft_p99_s": "4.3", "tpot_p99_s": 0.07}},
     "field 'measured_latency.ttft_p99_s' is missing or not a positive number"),
    ({"published_parallelism": {"tp": 8, "pp": 0, "max_batch_per_instance": 512}},
     "field 'published_parallelism.pp' is missing or not a positive integer"),
])
def test_a_malformed_validation_row_is_one_line_and_exit_2(data, run_planner, edit, needle):
    """A system row missing a key or holding a number that cannot be priced: one line naming the row and field."""
    row = "mlperf-v51-nebius-h200x8-llama3.1-405b-interactive"
    _edit_row(data, "validation.json", row, **edit)
    run = run_planner("validate", data=data)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.count("planner: error:") == 1 and row in run.stderr and needle in run.stderr
