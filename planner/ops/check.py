"""Regression gate for CI: a saved plan baseline re-planned with today's data files.

``check`` reads a saved ``planner plan --json`` report (the *baseline*: its scenario, modes,
``top`` and the SHA-256 of every data file it read) as a :class:`~planner.documents.plan.PlanReport`,
plans the same scenario again with today's files and compares the top-ranked layout.  It returns
a :class:`~planner.documents.ops.CheckReport`; rendering is ``planner.report``'s job and exit codes
the CLI's.

CI recipe (README-ready)
------------------------
Save one baseline per scenario you deploy, review it, and commit it::

    planner plan my-scenario.toml --json baselines/my-scenario.json

Then gate every pull request on the baselines and on the published measurements::

    # exit 1 = regression (or a row outside its band), 2 = unreadable baseline
    planner validate || exit $?
    for f in baselines/*.json; do planner check "$f" || exit $?; done

A regression is: the best goodput per die down by more than ``--tolerance`` (default 5%), the
top layout changed without such a gain, or the scenario no longer feasible.  When a change is
intended, re-create the baseline with ``planner plan ... --json PATH --force`` (the file exists, and
no output file is replaced without ``--force``) and commit the diff; the
check output names the data files whose content changed since the baseline was written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from planner.documents.base import SCHEMA_VERSION
from planner.documents.ops import GATED_METRIC, METRICS, Change, CheckReport, TopMetrics
from planner.documents.plan import PlanReport, plan_report
from planner.errors import DataFileError
from planner.inputs.files import read_capped
from planner.inputs.layout import Mode

DEFAULT_TOLERANCE = 0.05
_FIX = "re-create the baseline with 'planner plan ... --json PATH --force'"
# A plan report is ~0.1 MB; a baseline is read only if it is a regular file of at most this size.
MAX_BASELINE_BYTES = 16 << 20


# --------------------------------------------------------------------------- baseline file


def _location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a field path: ``layouts[0].goodput_requests_per_s``.

    The tag pydantic adds after a layout (its mode: the union member tried) is dropped.
    """
    out, previous = "", None
    for part in loc:
        if not (previous == "layout" and part in set(Mode)):
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        previous = part
    return out or "(top level)"


def _baseline_error(exc: ValidationError) -> str:
    """One line for the first problem of a baseline: the field and what is wrong with it."""
    err = exc.errors(include_url=False)[0]
    field = _location(err["loc"])
    if err["type"] == "json_invalid":
        return f"not valid JSON ({err['msg']})"
    if err["type"] == "model_type":
        return f"field '{field}' is not a JSON object"
    if err["type"] == "missing":
        return f"missing field '{field}'"
    if field == "schema_version":
        return (f"field 'schema_version' is {err['input']!r}; this planner reads plan reports of version "
                f"{SCHEMA_VERSION}")
    return f"field '{field}' {err['msg'][0].lower()}{err['msg'][1:]} (got {err['input']!r})"


def load_baseline(path: Path) -> PlanReport:
    """Read a saved plan report (DataFileError, exit 2, naming the file and the field if it is not one)."""
    raw = read_capped(path, what="baseline", limit=MAX_BASELINE_BYTES,
                      fix="check the path; baselines are written by 'planner plan ... --json PATH'")
    try:
        return PlanReport.model_validate_json(raw)
    except ValidationError as exc:
        raise DataFileError(_baseline_error(exc), where=str(path), fix=_FIX) from None


# --------------------------------------------------------------------------- comparison


def top_metrics(report: PlanReport) -> TopMetrics | None:
    """The top-ranked layout of a plan report and its metrics; None when nothing was feasible."""
    if not report.layouts:
        return None
    e = report.layouts[0]
    return TopMetrics(mode=e.mode, layout=e.layout, dies=e.dies, mtp=e.mtp,
                      goodput_requests_per_s_per_die=e.goodput_requests_per_s / e.dies,
                      goodput_requests_per_s=e.goodput_requests_per_s, ttft_s=e.ttft_s, tpot_s=e.tpot_s,
                      output_tokens_per_s_per_die=e.output_tokens_per_s_per_die,
                      output_tokens_per_s_per_chip=e.output_tokens_per_s_per_chip)


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


def metric_changes(base: TopMetrics, now: TopMetrics, tolerance: float) -> list[Change]:
    """Top-layout identity and every metric whose written value differs, each with its effect.

    The two sides are compared as a report writes them (6 significant digits).  A changed top
    layout is a regression unless the best goodput per die rose by more than the tolerance
    (then the new layout is the improvement and is reported as one).
    """
    b, n = base.model_dump(mode="json"), now.model_dump(mode="json")
    out = []
    gain = relative_change(b[GATED_METRIC], n[GATED_METRIC])
    if (b["mode"], b["layout"]) != (n["mode"], n["layout"]):
        effect = "improvement" if gain is not None and gain > tolerance else "regression"
        keys = ("mode", "dies", "layout")
        out.append(Change(item="top_layout", baseline={k: b[k] for k in keys}, current={k: n[k] for k in keys},
                          relative_change=None, effect=effect))
    for key in METRICS:
        if b[key] != n[key]:
            rel = relative_change(b[key], n[key])
            out.append(Change(item=key, baseline=b[key], current=n[key], relative_change=rel,
                              effect=_effect(key, rel, tolerance)))
    return out


def changed_files(baseline: dict[str, str], current: dict[str, str]) -> list[str]:
    """Data files (``kind/name.toml``) whose SHA-256 differs, or that only one side read."""
    return sorted(name for name in set(baseline) | set(current) if baseline.get(name) != current.get(name))


def compare(baseline: PlanReport, current: PlanReport, tolerance: float, name: str) -> CheckReport:
    """The check report: a baseline plan report against the same scenario planned today."""
    base, now = top_metrics(baseline), top_metrics(current)
    changes: list[Any]
    if base is not None and now is not None:
        changes = metric_changes(base, now, tolerance)
    elif base is not None or now is not None:
        changes = [Change(item="feasible", baseline=base is not None, current=now is not None, relative_change=None,
                          effect="regression" if now is None else "improvement")]
    else:
        changes = []
    regression = any(c.effect == "regression" for c in changes)
    return CheckReport(schema_version=SCHEMA_VERSION, baseline=name, verdict="regression" if regression else "ok",
                       tolerance=tolerance, modes=current.modes, top=current.top, changes=changes,
                       data_files_changed=changed_files(baseline.data_files, current.data_files),
                       baseline_metrics=base, current_metrics=now)


def check(path: Path, tolerance: float = DEFAULT_TOLERANCE) -> CheckReport:
    """Re-plan a baseline's scenario (same modes and ``top``) with today's data files and compare.

    Parameters
    ----------
    path : a saved ``planner plan --json`` report
    tolerance : accepted relative drop of the best goodput per die (fraction, e.g. 0.05)

    Returns
    -------
    The check report (see :func:`compare`); ``verdict`` is ``"regression"`` or ``"ok"``.  Today's
    plan is compared as ``planner plan --json`` would write it (read back from its JSON).
    """
    from planner.inputs.scenario import build_scenario
    from planner.search.plan import Pins, plan

    baseline = load_baseline(path)
    scenario = build_scenario(baseline.scenario, {}, where=f"{path}: scenario")
    # the same question: modes, top, an inverse sizing's target, the pipeline-stage cap and the pins as saved
    p = baseline.pinned
    pins = Pins(tp=p.tp, pp=p.pp, max_batch=p.max_batch) if p is not None else None
    today = plan_report(plan(scenario, modes=tuple(baseline.modes), top=baseline.top,
                             target_rate_per_s=baseline.target_rate_requests_per_s, max_pp=baseline.max_pp,
                             pins=pins),
                        baseline.top)
    return compare(baseline, PlanReport.model_validate_json(today.to_json()), tolerance, path.name)
