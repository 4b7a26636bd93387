"""The spreads of a shipped profile from today's measurements (planner.decide.spreads is the model).

Reads the calibration rows (planner.ops.calibration: residuals of the fit groups of every shipped
profile) and the system rows (planner.ops.validation: errors per platform), each computed once per
process.
"""

from __future__ import annotations

import math
from functools import lru_cache

from planner import catalog
from planner.decide.spreads import Group, Spreads, build_spreads, components
from planner.inputs.hardware import HardwareSpec
from planner.ops.calibration import calibration_table, fit_rows, row_key
from planner.ops.validation import load_rows, validation_table


@lru_cache(maxsize=16)
def fit_groups(profile: str) -> tuple[Group, ...]:
    """The calibration groups of a shipped profile, with the residuals of today's model.

    Rows that are bounds or gaps (planner.ops.calibration) count as fitted rows but leave no
    residual.
    """
    table = {r["key"]: r for r in calibration_table(profile)}
    rows = []
    for raw in fit_rows(profile):
        key = row_key(raw)
        row = table.get(key)
        usable = row is not None and not row["bound"] and not row["gap"]
        rows.append((key, list(raw["fits"][profile]), math.log1p(row["error"]) if usable else None))
    return tuple(components(rows)) if rows else ()


@lru_cache(maxsize=1)
def _all_groups() -> tuple[Group, ...]:
    return tuple(g for name in catalog.shipped_names("hardware_profiles") for g in fit_groups(name))


@lru_cache(maxsize=1)
def system_log_errors() -> tuple[tuple[str, float], ...]:
    """(hardware profile, log(1 + error)) of the system rows of measurements/validation.json.

    Rows marked ``known_miss`` are left out: their miss has a stated cause the model does not
    capture (a mechanism, not an efficiency), and one such row (-98% on an SLO-bound MLPerf
    scenario) would otherwise set the width of every band.
    """
    hardware = {r["id"]: r["scenario"].get("hardware", "cloudmatrix384") for r in load_rows()}
    return tuple((hardware[r["id"]], math.log1p(r["error"])) for r in validation_table()
                 if not r["known_miss"] and r["error"] > -1.0)


def profile_spreads(hw: HardwareSpec) -> Spreads:
    """The spreads of ``hw`` from today's measurements and model (planner.decide.spreads, module notes);
    a profile that is not shipped has no calibration rows: every parameter takes the pooled spread."""
    shipped = hw.name in catalog.shipped_names("hardware_profiles")
    return build_spreads(hw, fit_groups(hw.name) if shipped else (), _all_groups(), system_log_errors())


