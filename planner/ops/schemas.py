"""JSON Schemas (draft 2020-12) of the machine-readable reports: plan, evaluate, check, validate.

``planner schema NAME`` prints one; CI jobs and dashboards that read ``--json`` output can
validate against it.  The report schemas are written by hand, next to the code that writes the
reports, and tests validate real reports against them.  The input files a report echoes (its
scenario and layouts) are described by the pydantic models that validate those files
(:func:`file_defs`), so the two cannot disagree.

Versioning
----------
Every report carries an integer ``schema_version`` (pinned here with ``const``).  It is bumped
on any breaking change: a key removed or renamed, a type, unit or meaning changed, a value
that could not be null becoming nullable.  Adding a key is not breaking (readers must ignore
keys they do not know), but it is added here in the same change: fixed-shape objects are closed
(``additionalProperties: false``) so a report that drifts from its schema fails the tests.
Open maps (per-layer breakdowns, rejection reasons, data-file hashes, best layout per mode)
allow any key and type their values.

Non-finite numbers are written as ``null`` (JSON has no infinity), hence ``number | null``
for metrics that can be infinite (an SLO that cannot be met, a layout that does not fit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from planner.errors import PlannerError

DRAFT = "https://json-schema.org/draft/2020-12/schema"
Schema = dict[str, Any]

NUM: Schema = {"type": "number"}
NUM_OR_NULL: Schema = {"type": ["number", "null"]}
INT: Schema = {"type": "integer"}
COUNT: Schema = {"type": "integer", "minimum": 0}
POSITIVE: Schema = {"type": "integer", "minimum": 1}
STR: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}
ANY: Schema = {}


def obj(props: dict[str, Schema], required: Iterable[str] | None = None) -> Schema:
    """A closed object; every property required unless ``required`` names a subset."""
    names = sorted(props if required is None else required)
    return {"type": "object", "properties": props, "required": names, "additionalProperties": False}


def open_map(values: Schema, keys: Schema | None = None) -> Schema:
    """An object with free keys (optionally constrained by ``keys``) and values of one schema."""
    out: Schema = {"type": "object", "additionalProperties": values}
    if keys is not None:
        out["propertyNames"] = keys
    return out


def array(items: Schema, min_items: int = 0) -> Schema:
    out: Schema = {"type": "array", "items": items}
    if min_items:
        out["minItems"] = min_items
    return out


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [{"type": "null"}, schema]}


def document(name: str, version: int, description: str, props: dict[str, Schema]) -> Schema:
    """A top-level report schema: ``$schema``, title, and a pinned ``schema_version``."""
    body = obj({"schema_version": {"const": version}, **props})
    return {"$schema": DRAFT, "$id": f"urn:superpod-planner:report:{name}:v{version}",
            "title": f"planner {name} report (schema_version {version})", "description": description, **body,
            "$defs": file_defs()}


# --------------------------------------------------------------------------- shared parts


def _enum(values: Iterable[str]) -> Schema:
    return {"enum": sorted(values)}


def _mode() -> Schema:
    from planner.inputs.layout import Mode

    return _enum(m.value for m in Mode)


def file_defs() -> dict[str, Schema]:
    """``$defs`` for the input files reports echo: ``ScenarioFile`` and ``LayoutFile``.

    Generated from the pydantic models that validate those files (``extra="forbid"``, so the
    objects are closed): the files' schema of record, so the reports' copy cannot drift from it.
    A layout in a report is ``LayoutFile.to_dict()`` (no ``scenario`` key, unset keys dropped).
    """
    from planner.inputs.layout import LayoutFile
    from planner.inputs.scenario import ScenarioFile

    defs: dict[str, Schema] = {}
    for model in (ScenarioFile, LayoutFile):
        generated = model.model_json_schema(mode="serialization")
        defs.update(generated.pop("$defs", {}))
        defs[model.__name__] = generated
    return defs


SCENARIO: Schema = {"$ref": "#/$defs/ScenarioFile"}
LAYOUT: Schema = {"$ref": "#/$defs/LayoutFile"}


def _rates(prefix: str) -> dict[str, Schema]:
    return {f"{prefix}{suffix}": NUM_OR_NULL for suffix in ("", "_per_die", "_per_chip")}


# --------------------------------------------------------------------------- evaluate


def _breakdown() -> Schema:
    op = obj({"time_s": NUM_OR_NULL, "bound": _enum(("compute", "memory")), "flops": NUM, "bytes": NUM})
    layer = obj({"count": INT, "layer_s": NUM_OR_NULL, "compute_s_per_micro_batch": NUM_OR_NULL,
                 "communication_s_per_micro_batch": NUM_OR_NULL, "ops": open_map(op),
                 "communication": open_map(NUM_OR_NULL)})
    known = obj({"layers": open_map(layer), "per_step": open_map(NUM_OR_NULL),
                 "memory_bytes": open_map(NUM_OR_NULL), "usable_memory_bytes": NUM, "memory_shortfall_bytes": NUM})
    return {**known, "additionalProperties": True}  # a breakdown is an open document: new items may appear


def efficiencies() -> Schema:
    """The profile's efficiencies and overheads used (``evaluate.efficiencies_used``), by section."""
    section: Schema = {"type": "object", "required": ["kind"], "properties": {"kind": STR},
                       "additionalProperties": {"type": ["number", "string", "null"]}}
    names = ("gemm", "attention", "memory", "overheads", "collectives")
    return obj({**{name: section for name in names}, "fabrics": open_map(section)})


def evaluate_schema() -> Schema:
    from planner.documents import SCHEMA_VERSION

    prefill = obj({"step_s": NUM_OR_NULL, **_rates("input_tokens_per_s"), "fits_memory": BOOL,
                   "breakdown": _breakdown()})
    decode = obj({"step_s": NUM_OR_NULL, "tokens_per_step": NUM, "tpot_s": NUM_OR_NULL, "context_tokens": NUM,
                  "batch": INT, "max_batch_by_memory": INT, "fits_memory": BOOL, **_rates("output_tokens_per_s"),
                  "breakdown": _breakdown()})
    goodput = obj({"goodput_requests_per_s": NUM_OR_NULL, **_rates("output_tokens_per_s"), "ttft_s": NUM_OR_NULL,
                   "tpot_s": NUM_OR_NULL, "tpot_at_layout_batch_s": NUM_OR_NULL, "decode_batch_at_goodput": NUM_OR_NULL,
                   "prefill_capacity_requests_per_s": NUM_OR_NULL,
                   "decode_capacity_requests_per_s": NUM_OR_NULL, "binding_constraint": STR, "meets_slo": BOOL})
    return document("evaluate", SCHEMA_VERSION, "planner evaluate --json: one layout priced under one scenario.", {
        "scenario": SCENARIO, "layout": LAYOUT, "dies": INT, "chips": NUM,
        "prefill": nullable(prefill), "decode": decode, "goodput": goodput, "efficiencies": efficiencies(),
        "note": STR})


# --------------------------------------------------------------------------- plan


def plan_entry() -> Schema:
    """One ranked layout of a plan report."""
    return obj({"rank": INT, "mode": _mode(), "layout": LAYOUT, "dies": INT, "chips": NUM, "mtp": BOOL,
                "goodput_requests_per_s": NUM, **_rates("output_tokens_per_s"), "ttft_s": NUM_OR_NULL,
                "tpot_s": NUM, "binding_constraint": STR})


def _near_miss() -> Schema:
    return obj({"mode": STR, "pool": _enum(("prefill", "decode")), "best_tpot_s": NUM, "meets_tpot_slo": BOOL,
                "best_ttft_s": NUM, "meets_ttft_slo": BOOL, "layout": open_map(INT)},
               required=("mode", "pool", "layout"))


def plan_schema() -> Schema:
    from planner.documents import SCHEMA_VERSION

    search = obj({"candidates_evaluated": COUNT, "feasible": COUNT, "rejected_by_reason": open_map(COUNT),
                  "layouts_ranked": COUNT})
    sha256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    return document("plan", SCHEMA_VERSION, "planner plan --json: layouts ranked by goodput per die.", {
        "scenario": SCENARIO, "efficiencies": efficiencies(), "note": STR,
        "data_files": open_map(sha256, {"pattern": "^[a-z_]+/[^/]+$"}),
        "tpot_definition": STR, "budget_dies": INT, "modes": array(_mode(), 1), "top": POSITIVE,
        "search": search, "layouts": array(plan_entry()), "best_per_mode": open_map(plan_entry(), _mode()),
        "pareto": array(plan_entry()), "near_misses": array(_near_miss())})


# --------------------------------------------------------------------------- check and validate


def check_schema() -> Schema:
    from planner.ops.check import CHECK_SCHEMA_VERSION, GATED_METRIC, METRICS

    top = obj({"mode": _mode(), "layout": LAYOUT, "dies": INT, "mtp": BOOL, GATED_METRIC: NUM,
               "goodput_requests_per_s": NUM, "ttft_s": NUM_OR_NULL, "tpot_s": NUM,
               **{k: NUM for k in ("output_tokens_per_s_per_die", "output_tokens_per_s_per_chip")}})
    change = obj({"item": _enum(("top_layout", "feasible", *METRICS)), "baseline": ANY, "current": ANY,
                  "relative_change": NUM_OR_NULL,
                  "effect": _enum(("regression", "improvement", "within_tolerance", "info"))})
    return document("check", CHECK_SCHEMA_VERSION, "planner check --json: a plan baseline re-planned today.", {
        "baseline": STR, "verdict": _enum(("ok", "regression")), "tolerance": {"type": "number", "minimum": 0},
        "modes": array(_mode(), 1), "top": POSITIVE, "changes": array(change), "data_files_changed": array(STR),
        "baseline_metrics": nullable(top), "current_metrics": nullable(top)})


def validate_schema() -> Schema:
    from planner.ops.check import VALIDATE_SCHEMA_VERSION

    row = obj({"id": STR, "file": _enum(("measurements/calibration.json", "measurements/validation.json")),
               "role": _enum(("fit", "check", "upper_bound", "gap", "system")), "profile": nullable(STR),
               "predicted": NUM, "measured": NUM, "unit": STR, "error": NUM, "tolerance": NUM_OR_NULL,
               "gated": BOOL, "within": nullable(BOOL)})
    stats = obj({"median_abs_error": NUM_OR_NULL, "max_abs_error": NUM_OR_NULL, "rows": COUNT})
    return document("validate", VALIDATE_SCHEMA_VERSION,
                    "planner validate --json: shipped measurements predicted, each row gated.", {
                        "verdict": _enum(("ok", "fail")), "failing": array(STR),
                        "summary": obj({"calibration": stats, "held_out": stats}), "rows": array(row, 1)})


SCHEMAS: dict[str, Callable[[], Schema]] = {
    "plan": plan_schema, "evaluate": evaluate_schema, "check": check_schema, "validate": validate_schema}


def schema(name: str) -> Schema:
    """The JSON Schema of report ``name`` (plan, evaluate, check, validate); unknown -> exit 2."""
    if name not in SCHEMAS:
        raise PlannerError(f"unknown report '{name}'", where="planner schema", fix=f"use one of: {', '.join(SCHEMAS)}")
    return SCHEMAS[name]()
