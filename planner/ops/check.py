"""Regression gates for CI: saved plan baselines re-planned, published measurements re-predicted.

``check`` reads a saved ``planner plan --json`` report (the *baseline*: its scenario, modes,
``top`` and the SHA-256 of every data file it read), plans the same scenario again with
today's files and compares the top-ranked layout.  ``validate`` predicts every shipped
measurement (``measurements/calibration.json`` and ``measurements/validation.json``) and gates
each row at its tolerance.  Both return plain dicts (the ``--json`` documents); rendering is
``planner.report``'s job and exit codes the CLI's.

CI recipe (README-ready)
------------------------
Save one baseline per scenario you deploy, review it, and commit it::

    planner plan my-scenario.toml --json baselines/my-scenario.json

Then gate every pull request on the baselines and on the published measurements::

    # exit 1 = regression (or a row outside its tolerance), 2 = unreadable baseline
    planner validate || exit $?
    for f in baselines/*.json; do planner check "$f" || exit $?; done

A regression is: the best goodput per die down by more than ``--tolerance`` (default 5%), the
top layout changed without such a gain, or the scenario no longer feasible.  When a change is
intended, re-create the baseline with ``planner plan ... --json`` and commit the diff; the
check output names the data files whose content changed since the baseline was written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from planner.errors import DataFileError

CHECK_SCHEMA_VERSION = 1
VALIDATE_SCHEMA_VERSION = 1
DEFAULT_TOLERANCE = 0.05
DEFAULT_TOP = 10  # ``planner plan --top`` default, for baselines that do not record it

GATED_METRIC = "goodput_requests_per_s_per_die"  # the plan's ranking key
METRICS = (GATED_METRIC, "goodput_requests_per_s", "ttft_s", "tpot_s", "output_tokens_per_s_per_die",
           "output_tokens_per_s_per_chip")
_NUMBER = (int, float)
_ENTRY_TYPES: dict[str, type | tuple[type, ...]] = {
    "mode": str, "layout": dict, "dies": int, "mtp": bool, "goodput_requests_per_s": _NUMBER, "ttft_s": _NUMBER,
    "tpot_s": _NUMBER, "output_tokens_per_s_per_die": _NUMBER, "output_tokens_per_s_per_chip": _NUMBER}
_ENTRY_KEYS = tuple(_ENTRY_TYPES)
_FIX = "re-create the baseline with 'planner plan ... --json PATH'"


# --------------------------------------------------------------------------- baseline file


def _field(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, label: str = "") -> Any:
    """``doc[key]`` checked for type; a missing key or a wrong type names the file and the field."""
    name = f"{label}{key}"
    if key not in doc:
        raise DataFileError(f"missing field '{name}'", where=where, fix=_FIX)
    value = doc[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise DataFileError(f"field '{name}' has the wrong type ({type(value).__name__})", where=where, fix=_FIX)
    return value


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataFileError(f"cannot read baseline ({exc.strerror})", where=str(path),
                            fix="check the path; baselines are written by 'planner plan ... --json PATH'") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise DataFileError(f"not valid JSON ({exc})", where=str(path), fix=_FIX) from None
    if not isinstance(doc, dict):
        raise DataFileError("field '(top level)' is not a JSON object", where=str(path), fix=_FIX)
    return doc


def load_baseline(path: Path) -> dict[str, Any]:
    """Read a saved plan report and check the fields ``check`` uses (DataFileError, exit 2, if not)."""
    from planner.documents import SCHEMA_VERSION

    where = str(path)
    doc = _read_json(path)
    version = _field(doc, "schema_version", int, where)
    if version != SCHEMA_VERSION:
        raise DataFileError(f"field 'schema_version' is {version}; this planner reads plan reports of version "
                            f"{SCHEMA_VERSION}", where=where, fix=_FIX)
    _field(doc, "scenario", dict, where)
    files = _field(doc, "data_files", dict, where)
    for name in files:
        _field(files, name, str, where, "data_files.")
    layouts = _field(doc, "layouts", list, where)
    if layouts:
        top = _field({"layouts[0]": layouts[0]}, "layouts[0]", dict, where)
        for key, kind in _ENTRY_TYPES.items():
            _field(top, key, kind, where, "layouts[0].")
    return doc


def baseline_modes(doc: dict[str, Any], where: str) -> tuple:
    """Modes the baseline searched (all modes when it does not record them)."""
    from planner.inputs.layout import Mode
    from planner.search.plan import ALL_MODES

    if "modes" not in doc:
        return ALL_MODES
    names = _field(doc, "modes", list, where)
    valid = [m.value for m in Mode]
    if not names or any(n not in valid for n in names):
        raise DataFileError(f"field 'modes' must list some of {', '.join(valid)}", where=where, fix=_FIX)
    return tuple(Mode(n) for n in names)


def baseline_top(doc: dict[str, Any], where: str) -> int:
    """``--top`` of the baseline (the CLI default when it does not record it)."""
    if "top" not in doc:
        return DEFAULT_TOP
    top = _field(doc, "top", int, where)
    if top < 1:
        raise DataFileError("field 'top' must be >= 1", where=where, fix=_FIX)
    return top


# --------------------------------------------------------------------------- comparison


def top_metrics(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The top-ranked layout of a plan report and its metrics; None when nothing was feasible."""
    from planner.documents import sig

    if not doc["layouts"]:
        return None
    entry = doc["layouts"][0]
    out = {key: entry[key] for key in _ENTRY_KEYS}
    out[GATED_METRIC] = entry["goodput_requests_per_s"] / entry["dies"]
    return sig(out)


def relative_change(baseline: float | None, current: float | None) -> float | None:
    """``current / baseline - 1``; None when either is missing or the baseline is zero."""
    if baseline is None or current is None or baseline == 0:
        return None
    return float(current) / float(baseline) - 1.0


def _effect(key: str, rel: float | None, tolerance: float) -> str:
    """Regression / improvement beyond the tolerance for the gated metric; the others are info."""
    if key != GATED_METRIC or rel is None:
        return "info"
    if rel < -tolerance:
        return "regression"
    return "improvement" if rel > tolerance else "within_tolerance"


def _change(item: str, baseline: Any, current: Any, rel: float | None, effect: str) -> dict[str, Any]:
    return {"item": item, "baseline": baseline, "current": current, "relative_change": rel, "effect": effect}


def metric_changes(base: dict[str, Any], now: dict[str, Any], tolerance: float) -> list[dict[str, Any]]:
    """Top-layout identity and every metric whose value differs, each with its effect.

    A changed top layout is a regression unless the best goodput per die rose by more than the
    tolerance (then the new layout is the improvement and is reported as one).
    """
    from planner.documents import sig

    out = []
    gain = relative_change(base[GATED_METRIC], now[GATED_METRIC])
    same = (base["mode"], base["layout"]) == (now["mode"], now["layout"])
    if not same:
        effect = "improvement" if gain is not None and gain > tolerance else "regression"
        out.append(_change("top_layout", {k: base[k] for k in ("mode", "dies", "layout")},
                           {k: now[k] for k in ("mode", "dies", "layout")}, None, effect))
    for key in METRICS:
        if base[key] != now[key]:
            rel = relative_change(base[key], now[key])
            out.append(_change(key, base[key], now[key], sig(rel), _effect(key, rel, tolerance)))
    return out


def changed_files(baseline: dict[str, str], current: dict[str, str]) -> list[str]:
    """Data files (``kind/name.toml``) whose SHA-256 differs, or that only one side read."""
    return sorted(name for name in set(baseline) | set(current) if baseline.get(name) != current.get(name))


def compare(baseline: dict[str, Any], current: dict[str, Any], tolerance: float, name: str) -> dict[str, Any]:
    """The check report: a baseline plan report against the same scenario planned today."""
    base, now = top_metrics(baseline), top_metrics(current)
    if base is not None and now is not None:
        changes = metric_changes(base, now, tolerance)
    elif base is not None or now is not None:
        changes = [_change("feasible", base is not None, now is not None, None,
                           "regression" if now is None else "improvement")]
    else:
        changes = []
    regression = any(c["effect"] == "regression" for c in changes)
    return {"schema_version": CHECK_SCHEMA_VERSION, "baseline": name, "verdict": "regression" if regression else "ok",
            "tolerance": tolerance, "modes": current["modes"], "top": current["top"], "changes": changes,
            "data_files_changed": changed_files(baseline["data_files"], current["data_files"]),
            "baseline_metrics": base, "current_metrics": now}


def check(path: Path, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Re-plan a baseline's scenario (same modes and ``top``) with today's data files and compare.

    Parameters
    ----------
    path : a saved ``planner plan --json`` report
    tolerance : accepted relative drop of the best goodput per die (fraction, e.g. 0.05)

    Returns
    -------
    The check report (see :func:`compare`); ``verdict`` is ``"regression"`` or ``"ok"``.
    """
    from planner.documents import plan_dict
    from planner.inputs.scenario import build_scenario
    from planner.search.plan import plan

    where = str(path)
    baseline = load_baseline(path)
    modes, top = baseline_modes(baseline, where), baseline_top(baseline, where)
    scenario = build_scenario(None, baseline["scenario"], where=f"{where}: scenario")
    current = plan_dict(plan(scenario, modes=modes, top=top), top)
    return compare(baseline, current, tolerance, path.name)


# --------------------------------------------------------------------------- validate

# Per-row gates of tests/validation/test_calibration.py (MAX_GATE, HELD_OUT_GATE): rows the
# profiles were fitted on within 35%, held-out check rows within 20%; an upper-bound row must
# not be exceeded; gap rows (mechanism the cost model cannot express) are reported, not gated.
CALIBRATION_FIT_GATE = 0.35
CALIBRATION_CHECK_GATE = 0.20
_FLOP_KINDS = {"gemm", "grouped_gemm", "gemm_peak", "attention_compute"}


def _si_unit(kind: str) -> str:
    """SI unit of a calibration row's value, by predictor kind."""
    if kind.endswith("latency") or kind == "attention_layer":
        return "s"
    return "FLOP/s" if kind in _FLOP_KINDS else "B/s"


def _calibration_role(row: dict[str, Any]) -> str:
    if row["gap"]:
        return "gap"
    if row["bound"]:
        return f"{row['bound']}_bound"
    return "check" if row["check_only"] else "fit"


def _calibration_row(row: dict[str, Any]) -> dict[str, Any]:
    role = _calibration_role(row)
    tolerance = {"fit": CALIBRATION_FIT_GATE, "check": CALIBRATION_CHECK_GATE}.get(role)
    if role == "upper_bound":
        within = row["predicted"] <= row["measured"]
    else:
        within = None if tolerance is None else abs(row["error"]) <= tolerance
    return {"id": row["key"], "file": "measurements/calibration.json", "role": role, "profile": row["profile"],
            "predicted": row["predicted"], "measured": row["measured"], "unit": _si_unit(row["kind"]),
            "error": row["error"], "tolerance": tolerance, "gated": role != "gap", "within": within}


def _validation_row(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "file": "measurements/validation.json", "role": "system", "profile": None,
            "predicted": row["predicted"], "measured": row["measured"], "unit": row["unit"], "error": row["error"],
            "tolerance": row["tolerance"], "gated": True, "within": bool(row["within"])}


def error_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and maximum absolute relative error of ``rows`` and their count (None if empty)."""
    errors = np.abs([r["error"] for r in rows])
    if not errors.size:
        return {"median_abs_error": None, "max_abs_error": None, "rows": 0}
    return {"median_abs_error": float(np.median(errors)), "max_abs_error": float(np.max(errors)),
            "rows": int(errors.size)}


def validate() -> dict[str, Any]:
    """Predict every shipped measurement and gate each row (the ``planner validate`` report).

    Notes
    -----
    Two medians, never mixed: ``calibration`` over the rows the profiles were fitted on (so a
    small error there shows the fit, not predictive power) and ``held_out`` over the rows no
    parameter was fitted on (calibration ``check_only`` rows and the system-level rows of
    ``validation.json``).  Upper-bound and gap rows are in neither median.
    """
    from planner.documents import sig
    from planner.ops.calibration import calibration_table
    from planner.ops.validation import validation_table

    rows = [_calibration_row(r) for r in calibration_table()] + [_validation_row(r) for r in validation_table()]
    failing = [r["id"] for r in rows if r["gated"] and not r["within"]]
    summary = {"calibration": error_stats([r for r in rows if r["role"] == "fit"]),
               "held_out": error_stats([r for r in rows if r["role"] in ("check", "system")])}
    return sig({"schema_version": VALIDATE_SCHEMA_VERSION, "verdict": "fail" if failing else "ok",
                "failing": failing, "summary": summary, "rows": rows})
