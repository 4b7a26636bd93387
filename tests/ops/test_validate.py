"""``planner validate``: every shipped measurement predicted, gated per row, two medians.

It runs the same rows as ``tests/validation`` (calibration gates 35% for fitted rows, 20% for
check rows; validation rows at their stored tolerance) from the command line, for CI.
"""

from __future__ import annotations

import json


def test_validate_exits_0_and_prints_both_medians(run_planner):
    run = run_planner("validate")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert "median" in run.stdout
    assert "calibration (fitted on)" in run.stdout and "held out (check + system rows)" in run.stdout
    assert "ds-profile-prefill-node" in run.stdout and "deepgemm" in run.stdout


def test_json_report(validate_run):
    assert validate_run.returncode == 0
    doc = validate_run.json()
    assert doc["verdict"] == "ok" and doc["failing"] == []
    summary = doc["summary"]
    assert summary["calibration"]["rows"] >= 60 and summary["held_out"]["rows"] >= 15
    assert 0 <= summary["calibration"]["median_abs_error"] <= 0.05  # the calibration gate's median
    roles = {r["role"] for r in doc["rows"]}
    assert roles >= {"fit", "check", "upper_bound", "gap", "system"}
    assert all(r["gated"] == (r["role"] != "gap") for r in doc["rows"])


def _edit_rows(data, name: str, row_id: str, key: str, factor: float) -> None:
    path = data / "measurements" / name
    doc = json.loads(path.read_text())
    row = next(r for r in doc["rows"] if r["id"] == row_id)
    row[key] *= factor
    path.write_text(json.dumps(doc))


def test_a_validation_row_off_by_10x_exits_1_naming_the_row(data, run_planner):
    _edit_rows(data, "validation.json", "sgl-h100-decode-2k", "measured", 10.0)
    run = run_planner("validate", data=data)
    assert run.returncode == 1
    assert "sgl-h100-decode-2k" in run.stderr_line() and "outside their tolerance: sgl-h100-decode-2k" in run.stdout
    failing = run_planner("validate", "--json", "-", data=data).json()["failing"]
    assert failing == ["sgl-h100-decode-2k"]


def test_a_calibration_fit_row_off_by_2x_exits_1(data, run_planner):
    _edit_rows(data, "calibration.json", "deepgemm-dense-m4096-n24576-k1536", "measured_si", 2.0)
    run = run_planner("validate", data=data)
    assert run.returncode == 1 and "deepgemm-dense-m4096-n24576-k1536" in run.stderr_line()
