"""Report documents: the ``--json`` output of plan, evaluate, check and validate, as pydantic models.

- :mod:`planner.documents.base`: the JSON contract (one schema version, one number serializer,
  null for non-finite values) and the parts every report shares;
- :mod:`planner.documents.evaluate`: :class:`EvaluateReport`, built from an ``Evaluation``;
- :mod:`planner.documents.plan`: :class:`PlanReport`, built from a ``Plan``;
- :mod:`planner.documents.ops`: :class:`CheckReport` and :class:`ValidateReport`;
- :mod:`planner.documents.decide`: the bands, failure and cost parts of plan and evaluate, and
  :class:`SensitivityReport`.

The JSON Schemas are the models' own (:func:`schema`).  No rendering here: ``planner.report``
and ``planner.plots`` read the models' attributes.  This package module stays light (the CLI
imports it at start-up); the models load with their submodules.
"""

from __future__ import annotations

import importlib
from enum import StrEnum
from typing import Any

DRAFT = "https://json-schema.org/draft/2020-12/schema"


class ReportName(StrEnum):
    """The machine-readable reports (``planner schema NAME``)."""

    PLAN = "plan"
    EVALUATE = "evaluate"
    CHECK = "check"
    VALIDATE = "validate"
    SENSITIVITY = "sensitivity"


# report -> (module, model class)
_MODELS = {ReportName.PLAN: ("plan", "PlanReport"), ReportName.EVALUATE: ("evaluate", "EvaluateReport"),
           ReportName.CHECK: ("ops", "CheckReport"), ReportName.VALIDATE: ("ops", "ValidateReport"),
           ReportName.SENSITIVITY: ("decide", "SensitivityReport")}


def report_model(name: ReportName | str) -> Any:
    """The pydantic model of report ``name``."""
    module, cls = _MODELS[ReportName(name)]
    return getattr(importlib.import_module(f"planner.documents.{module}"), cls)


def schema(name: ReportName | str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of report ``name``, generated from its model."""
    from planner.documents.base import SCHEMA_VERSION

    name = ReportName(name)
    body = report_model(name).model_json_schema()
    return {"$schema": DRAFT, "$id": f"urn:superpod-planner:report:{name.value}:v{SCHEMA_VERSION}", **body}
