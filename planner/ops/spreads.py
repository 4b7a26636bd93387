"""The spreads of a shipped profile from today's measurements (planner.decide.spreads is the model).

Reads the calibration rows' residuals (planner.ops.residuals: the fit groups of every shipped
profile, stored in measurements/calibration_residuals.json while its data key matches, else
predicted; once per process) and the system rows' errors (planner.ops.validation; stored
in measurements/system_errors.json because predicting them runs a search per MLPerf row).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from planner import catalog
from planner.decide.spreads import Group, Spreads, build_spreads, components
from planner.errors import DataFileError
from planner.inputs.hardware import HardwareSpec
from planner.ops.residuals import residuals


def _data_key() -> str:
    """The data directories in use ($PLANNER_DATA_DIR may point elsewhere): the caches' key."""
    return "|".join(str(catalog.data_dir(kind)) for kind in ("measurements", "hardware_profiles", "models"))


def fit_groups(profile: str) -> tuple[Group, ...]:
    """The calibration groups of a shipped profile, with the residuals of today's model.

    Rows that are bounds or gaps (planner.ops.calibration) count as fitted rows but leave no
    residual.  The residuals are the stored ones while their data key matches
    (planner.ops.residuals), else predicted now: the same floats.
    """
    return _fit_groups(profile, _data_key())


@lru_cache(maxsize=16)
def _fit_groups(profile: str, _key: str) -> tuple[Group, ...]:
    rows = residuals(profile)
    return tuple(components(rows)) if rows else ()


def _all_groups() -> tuple[Group, ...]:
    return _all_groups_cached(_data_key())


@lru_cache(maxsize=4)
def _all_groups_cached(_key: str) -> tuple[Group, ...]:
    return tuple(g for name in catalog.shipped_names("hardware_profiles") for g in fit_groups(name))


SYSTEM_ERRORS_FILE = "system_errors.json"
REGENERATE = "pytest tests/ops/test_system_errors.py --update-golden"


def system_errors_document(rows: Iterable[tuple[str, str, float, str | None]]) -> dict[str, Any]:
    """The ``measurements/system_errors.json`` document from ``(row id, hardware, error, known_miss)``.

    Each system row's ``log(1 + error)`` (4 decimals), known misses left out (their miss has a
    stated cause the model does not capture, a mechanism rather than an efficiency: one -98% row of
    an SLO-bound MLPerf scenario would otherwise set the width of every band).
    """
    kept = sorted((r for r in rows if not r[3] and r[2] > -1.0), key=lambda r: r[0])
    return {"description": "log(predicted / measured) of the system rows of measurements/validation.json, known "
                           "misses left out: the system-level spread of planner/decide/spreads.py. Derived, not "
                           f"edited: regenerate with `{REGENERATE}` after a model change.",
            "known_misses_left_out": sorted(r[0] for r in rows if r[3]),
            "rows": [{"id": i, "hardware": hw, "log_error": round(math.log1p(e), 4)} for i, hw, e, _ in kept]}


def system_errors_now() -> list[tuple[str, str, float, str | None]]:
    """(row id, hardware, error, known_miss) of every system row, predicted now (a plan per MLPerf row: slow)."""
    from planner.ops.validation import load_rows, validation_table  # here: a plan's bands never need it (~0.004 s)

    hardware = {r["id"]: r["scenario"].get("hardware", "cloudmatrix384") for r in load_rows()}
    return [(r["id"], hardware[r["id"]], r["error"], r["known_miss"]) for r in validation_table()]


def system_log_errors() -> tuple[tuple[str, float], ...]:
    """(hardware profile, log(1 + error)) of the system rows, as stored in measurements/system_errors.json.

    Stored, not recomputed on every plan: predicting the MLPerf rows runs a search each (seconds);
    tests/ops/test_system_errors.py recomputes them and requires the stored spread back.
    """
    return _system_log_errors(str(catalog.data_dir("measurements") / SYSTEM_ERRORS_FILE))


@lru_cache(maxsize=4)
def _system_log_errors(file: str) -> tuple[tuple[str, float], ...]:
    path = Path(file)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
        return tuple((str(r["hardware"]), float(r["log_error"])) for r in rows)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataFileError(f"cannot read the system errors ({exc})", where=str(path),
                            fix=f"regenerate it: {REGENERATE}") from None


def profile_spreads(hw: HardwareSpec) -> Spreads:
    """The spreads of ``hw`` from today's measurements and model (planner.decide.spreads, module notes);
    a profile that is not shipped has no calibration rows: every parameter takes the pooled spread."""
    shipped = hw.name in catalog.shipped_names("hardware_profiles")
    return build_spreads(hw, fit_groups(hw.name) if shipped else (), _all_groups(), system_log_errors())


