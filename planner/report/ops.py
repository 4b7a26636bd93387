"""Tables for ``planner check`` and ``planner validate``."""


from __future__ import annotations

from rich.table import Table
from rich.text import Text

from planner.documents.ops import CheckReport, ValidateReport, ValidationRow
from planner.report.base import _NONE, _cell
from planner.report.plan import layout_summary
from planner.units import fmt_rate, fmt_seconds

# --------------------------------------------------------------------------- check

_CHECK_LABELS = {
    "goodput_requests_per_s_per_die": "goodput per die (req/s/die; ranking key)",
    "goodput_requests_per_s": "goodput (req/s)",
    "ttft_s": "TTFT at the goodput",
    "tpot_s": "TPOT",
    "output_tokens_per_s_per_die": "output tok/s per die",
    "output_tokens_per_s_per_chip": "output tok/s per chip",
}


def _check_value(key: str, value: float | None) -> str:
    if value is None:
        return _NONE
    return fmt_seconds(value) if key in ("ttft_s", "tpot_s") else f"{value:,.5g}"


def _pct(frac: float | None) -> str:
    return _NONE if frac is None else f"{frac:+.1%}"


def _top_layout_title(doc: CheckReport) -> str:
    """What happened to the top layout: same, changed, or none (a side with no feasible layout)."""
    base, now = doc.baseline_metrics, doc.current_metrics
    if now is None:
        return "top layout: none now (no layout meets the SLOs" + (" in the baseline either)" if base is None else ")")
    if base is None:
        return "top layout: new (the baseline had no layout meeting the SLOs)"
    return f"top layout: {'CHANGED' if any(c.item == 'top_layout' for c in doc.changes) else 'same'}"


def _check_layout_table(doc: CheckReport) -> Table:
    table = Table(title=_top_layout_title(doc), title_justify="left")
    for col in ("", "mode", "dies", "layout"):
        table.add_column(col, overflow="fold")
    for label, m in (("baseline", doc.baseline_metrics), ("now", doc.current_metrics)):
        if m is None:
            table.add_row(label, _NONE, _NONE, "infeasible: no layout meets the SLOs")
        else:
            table.add_row(label, m.mode.value, str(m.dies), _cell(layout_summary(m)))
    return table


def _check_metrics_table(doc: CheckReport) -> Table:
    changes = {c.item: c for c in doc.changes}
    table = Table(title=f"metrics of the top layout (tolerance {doc.tolerance:.1%} on goodput per die)",
                  title_justify="left")
    for col in ("metric", "baseline", "now", "change", "effect"):
        table.add_column(col, justify="left" if col in ("metric", "effect") else "right")
    base, now = doc.baseline_metrics, doc.current_metrics
    for key, label in _CHECK_LABELS.items():
        c = changes.get(key)
        rel, effect = (c.relative_change, c.effect) if c else ((0.0, "same") if base and now else (None, _NONE))
        table.add_row(label, _check_value(key, getattr(base, key, None)), _check_value(key, getattr(now, key, None)),
                      _pct(rel), effect)
    return table


def _check_files_table(doc: CheckReport) -> Table | Text:
    files = doc.data_files_changed
    if not files:
        return Text("data files: none changed since the baseline (same SHA-256)")
    table = Table(title="data files changed since the baseline", title_justify="left")
    table.add_column("file (SHA-256 differs)", overflow="fold")
    for name in files:
        table.add_row(_cell(name))
    return table


def _check_verdict(doc: CheckReport) -> Text:
    notes = [f"{c.item} {c.effect}" + (f" ({_pct(c.relative_change)})" if c.relative_change else "")
             for c in doc.changes if c.effect in ("regression", "improvement")]
    head = "REGRESSION" if doc.verdict == "regression" else "ok"
    return Text(f"check {doc.baseline}: {head}" + (f": {'; '.join(notes)}" if notes else ""))


def check_tables(doc: CheckReport) -> list[Table | Text]:
    """Rich output of ``planner check``: top layout, metrics baseline vs now, changed files, verdict."""
    return [_check_layout_table(doc), _check_metrics_table(doc), _check_files_table(doc), _check_verdict(doc)]


# --------------------------------------------------------------------------- validate


def _measured_text(value: float, unit: str) -> str:
    """A measurement in human units: SI units scaled, published units (tokens/s/node) as given."""
    if unit == "s":
        return fmt_seconds(value)
    if unit in ("FLOP/s", "B/s"):
        return fmt_rate(value, unit[:-2])
    return f"{value:,.0f} {unit}"


def _band_text(row: ValidationRow) -> str:
    if row.role == "upper_bound":
        return "<= measured"
    return _NONE if row.tolerance is None else f"+-{row.tolerance:.0%}"


_STATUS_TEXT = {"pass": "yes", "fail": "NO", "known_miss": "known miss", "known_miss_passes": "mark stale",
                "not_gated": "not gated"}


def validate_rows_table(doc: ValidateReport) -> Table:
    """Every shipped measurement: predicted vs measured, signed error, its band and verdict."""
    table = Table(title="published measurements: predicted vs measured (error = predicted / measured - 1)",
                  title_justify="left")
    for col in ("row", "file", "role", "hardware", "predicted", "measured", "error", "band", "ok"):
        table.add_column(col, justify="right" if col in ("predicted", "measured", "error", "band") else "left",
                         overflow="fold")
    for r in doc.rows:
        table.add_row(_cell(r.id), r.data_file.split("/")[-1], r.role, r.profile or _NONE,
                      _measured_text(r.predicted, r.unit), _measured_text(r.measured, r.unit),
                      f"{r.error:+.1%}", _band_text(r), _STATUS_TEXT[r.status])
    return table


def known_misses_table(doc: ValidateReport) -> Table:
    """Rows outside their band that carry a known-miss mark, with the reason."""
    table = Table(title="known misses (outside their band, with the reason; not failed)", title_justify="left")
    for col in ("row", "error", "band", "why the planner misses it"):
        table.add_column(col, justify="right" if col in ("error", "band") else "left", overflow="fold",
                         ratio=4 if col.startswith("why") else None)
    for r in doc.rows:
        if r.status == "known_miss":
            table.add_row(_cell(r.id), f"{r.error:+.1%}", _band_text(r), _cell(r.known_miss or ""))
    return table


def validate_summary_table(doc: ValidateReport) -> Table:
    """Median and max absolute error, calibration (fitted) rows and held-out rows apart."""
    table = Table(title="median absolute error (bound and gap rows excluded)", title_justify="left")
    for col in ("rows", "count", "median |error|", "max |error|"):
        table.add_column(col, justify="left" if col == "rows" else "right")
    labels = {"calibration": "calibration (fitted on)", "held_out": "held out (check + system rows)",
              "system": "system rows (validation.json)",
              "system_without_known_misses": "system rows without the known misses"}
    for key, label in labels.items():
        s = getattr(doc.summary, key)
        if s is not None:
            table.add_row(label, str(s.rows), _pct_abs(s.median_abs_error), _pct_abs(s.max_abs_error))
    return table


def _latency_pair(predicted: float | None, measured: float, error: float | None,
                  unbounded: str) -> tuple[str, str, str]:
    """(planner, published, error) cells of one latency; the planner's None is ``unbounded``."""
    if predicted is None or error is None:
        return unbounded, fmt_seconds(measured), _NONE
    return fmt_seconds(predicted), fmt_seconds(measured), f"{error:+.1%}"


def latency_table(doc: ValidateReport) -> Table | None:
    """Server / Interactive rows: the planner's top layout at the run's request rate, p99 TTFT and TPOT
    against the published ones (not gated)."""
    rows = [r for r in doc.rows if r.latency is not None]
    if not rows:
        return None
    table = Table(title="latency at the measured rate (not gated): the planner's top layout at the run's "
                        "requests/s per GPU, p99 against the published p99", title_justify="left")
    for col in ("row", "planner's layout", "req/s", "TTFT p99", "published", "error", "TPOT p99", "published",
                "error"):
        table.add_column(col, justify="left" if col in ("row", "planner's layout") else "right", overflow="fold")
    for r in rows:
        lat = r.latency
        assert lat is not None
        unbounded = f"saturated ({lat.saturated_pool})" if lat.saturated_pool else "unbounded"
        table.add_row(_cell(r.id), lat.layout, f"{lat.rate_requests_per_s:.3g}",
                      *_latency_pair(lat.predicted_ttft_s, lat.measured_ttft_s, lat.ttft_error, unbounded),
                      *_latency_pair(lat.predicted_tpot_s, lat.measured_tpot_s, lat.tpot_error, unbounded))
    return table


def published_parallelism_table(doc: ValidateReport) -> Table | None:
    """MLPerf rows planned again at their published parallelism (not gated): the search's own layout
    against the one the run used, so a row's error splits into the search's choice and the step model."""
    rows = [r for r in doc.rows if r.published_parallelism is not None]
    if not rows:
        return None
    table = Table(title="at the published parallelism (not gated): planner plan --tp --pp --max-batch as the run "
                        "was laid out, against the free search", title_justify="left")
    for col in ("row", "published", "planner's layout there", "error there", "free search's error"):
        table.add_column(col, justify="right" if "error" in col else "left", overflow="fold")
    for r in rows:
        par = r.published_parallelism
        assert par is not None
        pins = f"TP{par.tp}" + (f" x PP{par.pp}" if par.pp > 1 else "") + f", <= {par.max_batch_per_die} per die"
        table.add_row(_cell(r.id), pins, par.layout or "none meets the SLOs",
                      _NONE if par.error is None else f"{par.error:+.1%}", f"{r.error:+.1%}")
    return table


def _pct_abs(frac: float | None) -> str:
    return _NONE if frac is None else f"{frac:.1%}"


def validate_failure(doc: ValidateReport) -> str:
    """One line: the rows outside their band without a mark, and the marks that are stale."""
    parts = []
    if doc.failing:
        parts.append(f"{len(doc.failing)} row(s) outside their band: {', '.join(doc.failing)}")
    if doc.known_misses_now_passing:
        parts.append(f"known miss now passes, remove the mark: {', '.join(doc.known_misses_now_passing)}")
    return "; ".join(parts)


def validate_tables(doc: ValidateReport) -> list[Table | Text]:
    """Rich output of ``planner validate``: every row, the known misses, the two medians, the verdict."""
    if doc.verdict == "fail":
        verdict = f"validate: FAIL: {validate_failure(doc)}"
    else:
        verdict = (f"validate: ok: every gated row is within its band or a marked known miss "
                   f"({len(doc.known_misses)} known misses, listed above with the reason)")
    extra = [t for t in (latency_table(doc), published_parallelism_table(doc)) if t is not None]
    return [validate_rows_table(doc), known_misses_table(doc), *extra, validate_summary_table(doc), Text(verdict)]
