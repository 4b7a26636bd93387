"""``planner validate``: every shipped measurement predicted, gated against its band, two medians.

It runs the same rows as ``tests/validation`` (each gated row at the band stored with it, known
misses listed apart) from the command line, for CI.  Rows outside their band without a
``known_miss`` mark fail (exit 1); a marked row back inside its band fails too (the mark must go).
"""

from __future__ import annotations

import json


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
