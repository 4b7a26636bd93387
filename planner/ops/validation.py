"""Published measurements predicted and gated, each row against the band it claims.

Two files, never mixed (see measurements/README.md, "Bands"):

- ``measurements/calibration.json``: kernel and communication microbenchmarks.  ``fit`` rows
  calibrated the profiles (so their error shows the fit), ``check`` rows were never fitted on,
  an ``upper_bound`` row must not be exceeded, ``gap`` rows name a mechanism the cost model
  cannot express and are not gated.
- ``measurements/validation.json``: system-level throughput (``system`` rows), predicted with
  ``planner evaluate`` on the published layout without refitting.  Each row names a scenario, a
  layout, the metric of the evaluate report it is compared with (``pool.key``), a scale (e.g. 8
  dies per node) and the measured value.

Every gated row states its band (``tolerance``: the accepted ``|predicted / measured - 1|``) and
``band_reason``: what the model leaves out and the measurement's own spread.  A row outside its
band is a failure unless it carries ``known_miss`` (why the planner misses it): known misses are
listed apart and do not fail; a known miss back inside its band fails until the mark is removed,
so a mark is never stale.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from planner.catalog import data_dir
from planner.documents.base import SCHEMA_VERSION
from planner.documents.evaluate import evaluate_report
from planner.documents.ops import (
    ErrorStats,
    LatencyCheck,
    PublishedParallelismCheck,
    Status,
    ValidateReport,
    ValidationRow,
    ValidationSummary,
)
from planner.errors import DataFileError
from planner.evaluate import evaluate
from planner.inputs.layout import parse_layout
from planner.inputs.scenario import ScenarioFile, build_scenario

CALIBRATION_FILE = "measurements/calibration.json"
VALIDATION_FILE = "measurements/validation.json"
_FLOP_KINDS = {"gemm", "grouped_gemm", "gemm_peak", "attention_compute"}

# --------------------------------------------------------------------------- system rows


def validation_path() -> Path:
    return data_dir("measurements") / "validation.json"


# What every system row carries (measurements/README.md), and the numbers among them: a row without
# one, or with a number that is not positive and finite, is refused in one line naming the row and key.
_ROW_KEYS = ("id", "metric", "measured", "unit", "tolerance", "band_reason", "used_for_calibration", "source",
             "scenario")
_ROW_NUMBERS = ("measured", "tolerance")
_LATENCY_NUMBERS = ("requests_per_s_per_die", "ttft_p99_s", "tpot_p99_s")
_PARALLELISM_NUMBERS = ("tp", "pp", "max_batch_per_instance")


def load_rows(path: Path | None = None) -> list[dict[str, Any]]:
    path = path or validation_path()
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataFileError(f"cannot read validation rows ({exc})", where=str(path)) from None
    if not isinstance(rows, list):
        raise DataFileError("field 'rows': not a list of rows", where=str(path))
    for i, row in enumerate(rows):
        _check_row(row, i, str(path))
    return rows


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < float("inf")


def _check_row(row: Any, index: int, where: str) -> None:
    """One line (exit 2) for a system row missing a key or holding a number that cannot be priced."""
    name = row.get("id", f"rows[{index}]") if isinstance(row, dict) else f"rows[{index}]"
    if not isinstance(row, dict):
        raise DataFileError(f"row {name}: not a table of fields", where=where)
    missing = [k for k in _ROW_KEYS if k not in row]
    if missing:
        raise DataFileError(f"row {name}: field '{missing[0]}' is missing; add it (measurements/README.md)",
                            where=where)
    for key in _ROW_NUMBERS:
        if not _positive(row[key]):
            raise DataFileError(f"row {name}: field '{key}' = {row[key]!r} is not a positive number", where=where)
    latency = row.get("measured_latency")
    if latency is not None:
        bad = [k for k in _LATENCY_NUMBERS if not isinstance(latency, dict) or not _positive(latency.get(k))]
        if bad:
            raise DataFileError(f"row {name}: field 'measured_latency.{bad[0]}' is missing or not a positive number",
                                where=where)
    par = row.get("published_parallelism")
    if par is not None:
        bad = [k for k in _PARALLELISM_NUMBERS
               if not isinstance(par, dict) or not isinstance(par.get(k), int) or isinstance(par.get(k), bool)
               or par[k] < 1]
        if bad:
            raise DataFileError(f"row {name}: field 'published_parallelism.{bad[0]}' is missing or not a positive "
                                "integer", where=where)


Prediction = tuple[float, LatencyCheck | None, PublishedParallelismCheck | None]


def predict_plan(row: dict[str, Any]) -> Prediction:
    """A ``plan`` row (MLPerf, ../shared/reference/mlperf/README.md): ``planner plan`` on the row's
    scenario; the top layout's output tokens/s per die times ``scale`` (the system's GPU count).

    With ``measured_latency`` (a Server / Interactive run's published p99 TTFT and TPOT), also the
    top layout's p99 TTFT and TPOT at the run's request rate per die times the layout's dies
    (:func:`latency_at_measured_rate`; not gated).  With ``published_parallelism``, also the plan
    held to it (:func:`at_published_parallelism`; not gated)."""
    from planner.search.plan import plan  # ops sits beside the CLI: the search is a leaf here

    where = f"validation row {row['id']}"
    scenario = build_scenario(ScenarioFile.model_validate(row["scenario"]), {}, where)
    result = plan(scenario)
    free_top = result.layouts[0] if result.layouts else None
    pinned = at_published_parallelism(scenario, row, free_top) if row.get("published_parallelism") else None
    if not result.layouts:
        return 0.0, None, pinned  # no layout meets the benchmark's constraints: an error of -100%
    top = result.layouts[0]
    latency = latency_at_measured_rate(top, row["measured_latency"]) if row.get("measured_latency") else None
    return top.metrics.output_tokens_per_s / top.dies * float(row["scale"]), latency, pinned


def at_published_parallelism(scenario: Any, row: dict[str, Any], free_top: Any = None) -> PublishedParallelismCheck:
    """The row's plan held to its published TP and stages, decode batch per die at most the published
    maximum batch per instance over the instance's ``tp x pp`` dies (``planner plan --tp --pp --max-batch``).

    Where the free search's top layout (``free_top``) already meets the pins it is the pinned plan's top
    too (the pins keep a subset of the candidates that holds it), and is not searched again."""
    from planner.modes import MODES
    from planner.search.plan import Pins, plan

    par = row["published_parallelism"]
    tp, pp = int(par["tp"]), int(par["pp"])
    max_batch = max(1, int(par["max_batch_per_instance"]) // (tp * pp))
    pins = Pins(tp=tp, pp=pp, max_batch=max_batch)
    result = plan(scenario, top=1, pins=pins) if free_top is None or not pins.allow(free_top.layout) else None
    if result is not None and not result.layouts:
        return PublishedParallelismCheck(tp=tp, pp=pp, max_batch_per_die=max_batch, layout=None, predicted=None,
                                         error=None)
    top = free_top if result is None else result.layouts[0]
    predicted = top.metrics.output_tokens_per_s / top.dies * float(row["scale"])
    return PublishedParallelismCheck(tp=tp, pp=pp, max_batch_per_die=max_batch,
                                     layout=MODES[top.layout.mode].summary(top.layout.decode.model_dump()),
                                     predicted=predicted, error=None)  # the error: validation_table


def latency_at_measured_rate(top: Any, measured: dict[str, Any]) -> LatencyCheck:
    """The planned layout's p99 TTFT and TPOT (the row's SLO percentiles) at the measured request rate.

    The rate is the run's requests/s per GPU times the layout's dies (the planner's layout may use
    fewer dies than the system); None where the layout saturates at that rate (TTFT unbounded).
    """
    from planner.evaluate import evaluate as evaluate_layout
    from planner.evaluate import load_point
    from planner.inputs.layout import own_scenario
    from planner.modes import MODES

    ev = top.evaluation or evaluate_layout(top.layout, own_scenario(top.layout, None), "validation")
    rate = float(measured["requests_per_s_per_die"]) * top.dies
    point = load_point(ev, rate)

    def finite(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    def error(predicted: float | None, published: float) -> float | None:
        return None if predicted is None else predicted / published - 1.0

    ttft, tpot = finite(point.ttft_at_slo_percentile_s), finite(point.tpot_at_slo_statistic_s)
    ttft_measured, tpot_measured = float(measured["ttft_p99_s"]), float(measured["tpot_p99_s"])
    return LatencyCheck(layout=MODES[top.layout.mode].summary(top.layout.decode.model_dump()),
                        rate_requests_per_s=rate, measured_ttft_s=ttft_measured, predicted_ttft_s=ttft,
                        ttft_error=error(ttft, ttft_measured), measured_tpot_s=tpot_measured,
                        predicted_tpot_s=tpot, tpot_error=error(tpot, tpot_measured),
                        saturated_pool=point.saturated_pool)


# What a system row's prediction depends on: its scenario, layout, metric and scale (never its
# measured value, band or marks), and the content of the data files it reads.
_PREDICTION_KEYS = ("scenario", "layout", "metric", "scale", "measured_latency", "published_parallelism")


def _data_fingerprint() -> tuple[tuple[str, int, int], ...]:
    """(name, size, mtime) of every profile, card and expert-load file the predictions read (a copy of
    the data made with its times kept, as ``$PLANNER_DATA_DIR`` jobs do, has the same fingerprint)."""
    files = [*sorted(data_dir("hardware_profiles").glob("*.toml")), *sorted(data_dir("models").glob("*.toml")),
             data_dir("measurements") / "expert_load.toml"]
    return tuple((f"{f.parent.name}/{f.name}", f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file())


@lru_cache(maxsize=256)
def _predict_cached(inputs: str, fingerprint: tuple[tuple[str, int, int], ...]) -> Prediction:
    return _predict(json.loads(inputs))


def predict(row: dict[str, Any]) -> float:
    """The planner's prediction of ``row['metric']`` (times ``row['scale']``) for the row's layout.

    Memoized on the row's inputs and the data files' modification times: ``planner validate``
    re-run in one process (the test suite, a CI job gating several edits) re-prices only what changed.
    """
    return predict_with_latency(row)[0]


def predict_with_latency(row: dict[str, Any]) -> Prediction:
    """:func:`predict`, the latency check of a row with ``measured_latency`` and the plan held to a row's
    ``published_parallelism`` (each None where the row has none)."""
    inputs = json.dumps({k: row.get(k) for k in (*_PREDICTION_KEYS, "id")}, sort_keys=True)
    return _predict_cached(inputs, _data_fingerprint())


def _predict(row: dict[str, Any]) -> Prediction:
    if row["metric"] == "plan.output_tokens_per_s_per_die":
        return predict_plan(row)
    where = f"validation row {row['id']}"
    layout = parse_layout(row["layout"], where)
    scenario = build_scenario(ScenarioFile.model_validate(row["scenario"]), {}, where)
    report = evaluate_report(evaluate(layout, scenario, where))
    pool, key = row["metric"].split(".")
    return float(getattr(getattr(report, pool), key)) * float(row.get("scale", 1.0)), None, None


def validation_table(path: Path | None = None) -> list[dict[str, Any]]:
    """Predicted vs measured for every system row: signed relative error, band, and the band's verdict."""
    out = []
    for row in load_rows(path):
        predicted, latency, pinned = predict_with_latency(row)
        error = predicted / row["measured"] - 1.0
        if pinned is not None and pinned.predicted is not None:  # a prediction never reads the measured value
            pinned = pinned.model_copy(update={"error": pinned.predicted / row["measured"] - 1.0})
        out.append({"id": row["id"], "predicted": predicted, "measured": row["measured"], "unit": row["unit"],
                    "error": error, "tolerance": row["tolerance"], "within": abs(error) <= row["tolerance"],
                    "band_reason": row["band_reason"], "known_miss": row.get("known_miss"),
                    "used_for_calibration": row["used_for_calibration"], "source": row["source"],
                    "latency": latency, "published_parallelism": pinned})
    return out


# --------------------------------------------------------------------------- gating


def band_status(within: bool | None, known_miss: str | None) -> Status:
    """A row's verdict: inside or outside its band, and whether it is marked as a known miss."""
    if within is None:
        return "not_gated"
    if known_miss:
        return "known_miss_passes" if within else "known_miss"
    return "pass" if within else "fail"


_RATIO_KINDS = {"core_split_slowdown", "core_share", "sm_share"}  # the overlap rows (B_l1, B_l2, C_o1)


def _si_unit(kind: str) -> str:
    """SI unit of a calibration row's value, by predictor kind (expert-load rows: a ratio or a fraction)."""
    if kind.endswith("latency") or kind == "attention_layer":
        return "s"
    if kind.startswith("expert_load") or kind in _RATIO_KINDS:
        return "ratio"
    return "FLOP/s" if kind in _FLOP_KINDS else "B/s"


def _calibration_role(row: dict[str, Any]) -> str:
    if row["gap"]:
        return "gap"
    if row["bound"]:
        return f"{row['bound']}_bound"
    return "check" if row["check_only"] else "fit"


def _calibration_row(row: dict[str, Any], band: dict[str, Any]) -> ValidationRow:
    """A row of ``calibration_table`` with its band from ``calibration.json`` (``band``: the raw row)."""
    role = _calibration_role(row)
    tolerance = band.get("tolerance")
    if role == "gap":
        within = None
    elif role == "upper_bound":
        within = row["predicted"] <= row["measured"]
    else:
        within = abs(row["error"]) <= tolerance
    known_miss = band.get("known_miss")
    return ValidationRow(id=row["key"], data_file=CALIBRATION_FILE, role=role, profile=row["profile"],
                         predicted=row["predicted"], measured=row["measured"], unit=_si_unit(row["kind"]),
                         error=row["error"], tolerance=tolerance, band_reason=band.get("band_reason"),
                         known_miss=known_miss, gated=role != "gap", within=within,
                         status=band_status(within, known_miss))


def _system_row(row: dict[str, Any]) -> ValidationRow:
    within = bool(row["within"])
    return ValidationRow(id=row["id"], data_file=VALIDATION_FILE, role="system", profile=None,
                         predicted=row["predicted"], measured=row["measured"], unit=row["unit"], error=row["error"],
                         tolerance=row["tolerance"],
                         band_reason=row["band_reason"], known_miss=row["known_miss"], gated=True, within=within,
                         status=band_status(within, row["known_miss"]), latency=row["latency"],
                         published_parallelism=row["published_parallelism"])


def error_stats(rows: list[ValidationRow]) -> ErrorStats:
    """Median and maximum absolute relative error of ``rows`` and their count (None if empty)."""
    errors = np.abs([r.error for r in rows])
    if not errors.size:
        return ErrorStats(median_abs_error=None, max_abs_error=None, rows=0)
    return ErrorStats(median_abs_error=float(np.median(errors)), max_abs_error=float(np.max(errors)),
                      rows=int(errors.size))


def validation_rows() -> list[ValidationRow]:
    """Every shipped measurement predicted, with its band and status (calibration rows first)."""
    from planner.ops.calibration import calibration_table, row_key
    from planner.ops.calibration import load_rows as calibration_rows

    bands = {row_key(r): r for r in calibration_rows()}
    return ([_calibration_row(r, bands[r["key"]]) for r in calibration_table()]
            + [_system_row(r) for r in validation_table()])


def validate() -> ValidateReport:
    """Predict every shipped measurement and gate each row against its band (``planner validate``).

    Notes
    -----
    Two medians, never mixed: ``calibration`` over the rows the profiles were fitted on (so a
    small error there shows the fit, not predictive power) and ``held_out`` over the rows no
    parameter was fitted on (calibration ``check_only`` rows and the system-level rows of
    ``validation.json``), known misses included.  Upper-bound and gap rows are in neither median.
    ``verdict`` is ``fail`` when a row is outside its band without a ``known_miss`` mark, or a
    marked row is back inside its band (the mark must go).
    """
    rows = validation_rows()

    def ids(status: str) -> list[str]:
        return [r.id for r in rows if r.status == status]

    failing, stale = ids("fail"), ids("known_miss_passes")
    system = [r for r in rows if r.role == "system"]
    summary = ValidationSummary(calibration=error_stats([r for r in rows if r.role == "fit"]),
                                held_out=error_stats([r for r in rows if r.role in ("check", "system")]),
                                system=error_stats(system),
                                system_without_known_misses=error_stats([r for r in system if not r.known_miss]))
    return ValidateReport(schema_version=SCHEMA_VERSION, verdict="fail" if failing or stale else "ok",
                          failing=failing, known_misses=ids("known_miss"), known_misses_now_passing=stale,
                          summary=summary, rows=rows)
