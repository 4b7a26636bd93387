"""``planner check --json`` and ``planner validate --json`` (:class:`CheckReport`, :class:`ValidateReport`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from planner.documents.base import SCHEMA_VERSION, LayoutField, Part, Report, Rounded
from planner.inputs.layout import Mode

# --------------------------------------------------------------------------- check

GATED_METRIC = "goodput_requests_per_s_per_die"  # the plan's ranking key
METRICS = (GATED_METRIC, "goodput_requests_per_s", "ttft_s", "tpot_s", "output_tokens_per_s_per_die",
           "output_tokens_per_s_per_chip")
Effect = Literal["regression", "improvement", "within_tolerance", "info"]


class TopMetrics(Rounded):
    """The top-ranked layout of a plan report and its metrics, as the report writes them."""

    mode: Mode
    layout: LayoutField
    dies: int
    mtp: bool
    goodput_requests_per_s_per_die: float
    goodput_requests_per_s: float
    ttft_s: float | None
    tpot_s: float
    output_tokens_per_s_per_die: float | None
    output_tokens_per_s_per_chip: float | None


class Change(Part):
    """One difference between the baseline and today: the top layout, feasibility, or a metric."""

    item: Literal["top_layout", "feasible", *METRICS]  # type: ignore[valid-type]
    baseline: Any
    current: Any
    relative_change: float | None
    effect: Effect


class CheckReport(Report):
    """planner check --json: a plan baseline re-planned today."""

    schema_version: Literal[SCHEMA_VERSION]  # type: ignore[valid-type]
    baseline: str
    verdict: Literal["ok", "regression"]
    tolerance: Annotated[float, Field(ge=0)]
    modes: Annotated[list[Mode], Field(min_length=1)]
    top: Annotated[int, Field(ge=1)]
    changes: list[Change]
    data_files_changed: list[str]
    baseline_metrics: TopMetrics | None
    current_metrics: TopMetrics | None


# --------------------------------------------------------------------------- validate

Role = Literal["fit", "check", "upper_bound", "gap", "system"]
# pass: inside the band; fail: outside, not marked; known_miss: outside, marked with its reason;
# known_miss_passes: marked but back inside its band (remove the mark); not_gated: a gap row.
Status = Literal["pass", "fail", "known_miss", "known_miss_passes", "not_gated"]


class LatencyCheck(Part):
    """A Server / Interactive row's latency, not gated: the planner's top layout at the run's request
    rate (per GPU, times the layout's dies) against the run's published p99 TTFT and TPOT.  The
    planner's values are at the row's SLO percentiles; None where the layout saturates at that rate."""

    layout: str
    rate_requests_per_s: float
    measured_ttft_s: float
    predicted_ttft_s: float | None
    ttft_error: float | None  # predicted / measured - 1 (None where unbounded)
    measured_tpot_s: float
    predicted_tpot_s: float | None
    tpot_error: float | None
    saturated_pool: Literal["prefill", "decode"] | None


class PublishedParallelismCheck(Part):
    """An MLPerf row planned again held to its published parallelism (``planner plan --tp --pp
    --max-batch``), not gated: how much of the row's error is the search's choice of layout and how much
    the step model at the parallelism the run used.  None where no layout meets the row's SLOs."""

    tp: int
    pp: int
    max_batch_per_die: int
    layout: str | None
    predicted: float | None
    error: float | None  # predicted / measured - 1


class ValidationRow(Part):
    """One published measurement predicted: signed error, its band and the reason for it, its status."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True,
                              defer_build=True)

    id: str
    data_file: Literal["measurements/calibration.json", "measurements/validation.json"] = Field(alias="file")
    role: Role
    profile: str | None
    predicted: float
    measured: int | float
    unit: str
    error: float
    tolerance: float | None
    band_reason: str | None
    known_miss: str | None
    gated: bool
    within: bool | None
    status: Status
    latency: LatencyCheck | None = None
    published_parallelism: PublishedParallelismCheck | None = None


class ErrorStats(Part):
    """Median and maximum absolute relative error of a set of rows, and their count."""

    median_abs_error: float | None
    max_abs_error: float | None
    rows: Annotated[int, Field(ge=0)]


class ValidationSummary(Part):
    """Medians never mixed: fitted rows, held-out rows (check + system), and the system rows alone
    (with and without the known misses)."""

    calibration: ErrorStats
    held_out: ErrorStats
    system: ErrorStats | None = None
    system_without_known_misses: ErrorStats | None = None


class ValidateReport(Report):
    """planner validate --json: shipped measurements predicted, each gated row against its band."""

    schema_version: Literal[SCHEMA_VERSION]  # type: ignore[valid-type]
    verdict: Literal["ok", "fail"]
    failing: list[str]
    known_misses: list[str]
    known_misses_now_passing: list[str]
    summary: ValidationSummary
    rows: Annotated[list[ValidationRow], Field(min_length=1)]
