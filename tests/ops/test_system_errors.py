"""measurements/system_errors.json (the system-level spread of the bands) is what ``planner validate`` gives today.

The bands read the stored errors instead of predicting the system rows on every plan (the MLPerf
rows run a search each).  This test recomputes them from the shared ``planner validate --json``
run: the same rows (known misses left out) and, per platform with two or more rows and over all
rows, the spread and bias within 0.02 in log units.  ``--update-golden`` rewrites the file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from planner.ops.spreads import SYSTEM_ERRORS_FILE, system_errors_document
from planner.ops.validation import load_rows

PATH = Path(__file__).resolve().parents[2] / "measurements" / SYSTEM_ERRORS_FILE
TOLERANCE_LOG = 0.02


def _stats(rows: list[dict]) -> dict[str, tuple[int, float, float]]:
    by: dict[str, list[float]] = {"(all)": []}
    for r in rows:
        by.setdefault(r["hardware"], []).append(r["log_error"])
        by["(all)"].append(r["log_error"])
    return {k: (len(v), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, float(np.mean(v))) for k, v in by.items()}


def test_stored_system_errors_match_validate(validate_run, update_golden):
    assert validate_run.returncode in (0, 1), validate_run.stderr
    hardware = {r["id"]: r["scenario"].get("hardware", "cloudmatrix384") for r in load_rows()}
    rows = [(r["id"], hardware[r["id"]], r["error"], r["known_miss"]) for r in validate_run.json()["rows"]
            if r["role"] == "system"]
    now = system_errors_document(rows)
    if update_golden:
        PATH.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    stored = json.loads(PATH.read_text(encoding="utf-8"))
    assert [r["id"] for r in stored["rows"]] == [r["id"] for r in now["rows"]], \
        "system rows or known-miss marks changed: regenerate with --update-golden"
    assert stored["known_misses_left_out"] == now["known_misses_left_out"]
    old, new = _stats(stored["rows"]), _stats(now["rows"])
    for name, (n, sigma, mean) in new.items():
        assert old[name][0] == n
        assert math.isclose(old[name][1], sigma, abs_tol=TOLERANCE_LOG), (name, old[name], sigma)
        assert math.isclose(old[name][2], mean, abs_tol=TOLERANCE_LOG), (name, old[name], mean)
