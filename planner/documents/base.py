"""The JSON contract shared by every report: version, number format, base models, shared parts.

One schema version for the four reports (``plan``, ``evaluate``, ``check``, ``validate``).  It
is bumped on any breaking change: a key removed or renamed, a type, unit or meaning changed, a
value that could not be null becoming nullable.  Adding a key is not breaking (readers must
ignore keys they do not know).  Objects are closed (``extra="forbid"``) so a report that drifts
from its model fails validation; open maps (breakdowns, rejection reasons, hashes) are typed
``dict``s.

Numbers: :func:`json_number` is the one serializer of floats.  JSON has no infinity, so a
non-finite value (an SLO that cannot be met, a layout that does not fit) is written as null;
the fields that can hold one are typed ``float | None``.  ``plan``, ``check`` and ``validate``
round to 6 significant digits so baselines are stable across platforms; ``evaluate`` keeps every
digit (its identities, e.g. TPOT = step / tokens per step, hold exactly in its output).
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_serializer

from planner.inputs.hardware import HardwareSpec
from planner.inputs.layout import LayoutFile

SCHEMA_VERSION = 1
REPORT_DIGITS = 6  # significant digits of plan, check and validate reports


def json_number(value: float, digits: int | None = REPORT_DIGITS) -> float | None:
    """A float as a report writes it: ``digits`` significant digits (None: all), non-finite -> None."""
    if not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}") if digits is not None else float(value)


def json_value(value: Any, digits: int | None = REPORT_DIGITS) -> Any:
    """:func:`json_number` applied to every float of a dumped document (ints and bools untouched)."""
    if isinstance(value, float):
        return json_number(value, digits)
    if isinstance(value, dict):
        return {k: json_value(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v, digits) for v in value]
    return value


def dumps(payload: dict[str, Any]) -> str:
    """Machine output: JSON with sorted keys, indent 2 and a trailing newline."""
    return json.dumps(payload, sort_keys=True, indent=2) + "\n"


class Part(BaseModel):
    """A closed, immutable object of a report."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Rounded(Part):
    """A part whose dump goes through :func:`json_value` (floats at ``float_digits``)."""

    float_digits: ClassVar[int | None] = REPORT_DIGITS

    @model_serializer(mode="wrap")
    def _json_numbers(self, handler: Any) -> Any:
        return json_value(handler(self), self.float_digits)


class Report(Rounded):
    """A whole ``--json`` document."""

    def to_json(self) -> str:
        """The document as ``--json`` writes it (sorted keys, indent 2, trailing newline)."""
        return dumps(self.model_dump(mode="json"))


def payload_json(payload: Report | dict[str, Any]) -> str:
    """Machine output: a report as ``--json`` writes it, or a dict as JSON with sorted keys and a trailing newline."""
    return payload.to_json() if isinstance(payload, Report) else dumps(payload)


# A layout in a report: the layout file's keys (``LayoutFile.to_dict``: no [scenario], unset keys dropped).
LayoutField = Annotated[LayoutFile, PlainSerializer(lambda layout: layout.to_dict(), return_type=dict[str, Any])]


class EfficiencySection(BaseModel):
    """One efficiency or overhead section of the hardware profile: its kind and its values (SI)."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)
    __pydantic_extra__: dict[str, int | float | str | None]

    kind: str


class Efficiencies(Part):
    """The profile's efficiencies and overheads a report used, by section (provenance dropped)."""

    gemm: EfficiencySection
    # [efficiency.gemm.by_dtype.<dtype>]: the GEMM math dtypes with their own max_frac / memory_frac
    gemm_by_dtype: dict[str, EfficiencySection] = Field(default_factory=dict)
    attention: EfficiencySection
    memory: EfficiencySection
    overheads: EfficiencySection
    collectives: EfficiencySection
    fabrics: dict[str, EfficiencySection]


_PROVENANCE = ("source", "calibrated_from")


def _section(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in _PROVENANCE}


def efficiencies_used(hw: HardwareSpec) -> Efficiencies:
    """The efficiencies and overheads of the hardware profile, with their kind (spec/measured/...)."""
    doc = hw.document()
    eff = doc["efficiency"]
    gemm = {k: v for k, v in eff["gemm"].items() if k != "by_dtype"}
    by_dtype = {d: _section(t) for d, t in (eff["gemm"].get("by_dtype") or {}).items() if t is not None}
    return Efficiencies(gemm=_section(gemm), gemm_by_dtype=by_dtype, attention=_section(eff["attention"]),
                        memory=_section(eff["memory"]), overheads=_section(doc["overheads"]),
                        collectives=_section(doc["collectives"]),
                        fabrics={f["name"]: _section(f["efficiency"]) for f in doc["fabrics"]})


ROOFLINE_NOTE = ("Roofline estimates: they assume the calibrated kernel and fabric efficiencies below and the "
                 "profile's overlap discipline; `planner validate` shows how far each published system sits "
                 "from them (the p10-p90 bands carry that spread).")
