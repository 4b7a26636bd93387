"""The report parts of planner/decide: bands, failure what-ifs, cost, uncertainty; ``planner sensitivity --json``.

Plan entries and the evaluate report carry :class:`EntryBands`, :class:`FailureDoc` and
:class:`CostDoc`; the plan and evaluate reports carry :class:`UncertaintyDoc` (the spreads the
bands were drawn from).  :class:`SensitivityReport` is the whole ``planner sensitivity --json``.
A band's bound that is infinite (a pool the load saturates) is written as null.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Literal

from planner.decide.bands import HIGH, LOW, LayoutBands, Range
from planner.decide.cost import TokenCost
from planner.decide.failures import Failure, FailureKind
from planner.decide.spreads import Spreads
from planner.documents.base import ROOFLINE_NOTE, SCHEMA_VERSION, LayoutField, Part, Report
from planner.inputs.layout import Layout
from planner.inputs.scenario import Scenario, ScenarioFile

if TYPE_CHECKING:
    from planner.decide.plan import LayoutDecisions
    from planner.decide.sensitivity import Sensitivity  # an annotation only: a plan never loads it

UNCERTAINTY_NOTE = (
    "Bands are the p10-p90 of each metric over seeded samples of the profile's level parameters "
    "(efficiencies, fixed costs, call costs, fabric efficiencies), each log-normal with the spread of "
    "its calibration residuals and a common factor with the spread of the platform's system-row errors "
    "(known misses left out); "
    "assumed parameters take the pooled calibration spread, though a guess may be off by more. The point "
    "estimates sit above published systems by system_bias_frac (the roofline's optimism), which the band "
    "does not include. TTFT and TPOT are at the point estimate's goodput.")


class BandRange(Part):
    """p10 and p90 of one metric (widened to include the point estimate); null: infinite."""

    low: float | None
    high: float | None

    @classmethod
    def of(cls, r: Range) -> BandRange:
        return cls(low=r.low, high=r.high)


class EntryBands(Part):
    """A layout's bands; ``tied_with_rank1`` / ``beats_rank1_frac`` are absent on rank 1 itself."""

    goodput_requests_per_s: BandRange
    output_tokens_per_s_per_die: BandRange
    ttft_s: BandRange
    tpot_s: BandRange
    decode_step_s: BandRange
    prefill_step_s: BandRange | None
    batch_lowered_frac: float
    tied_with_rank1: bool | None = None
    beats_rank1_frac: float | None = None

    @classmethod
    def of(cls, b: LayoutBands) -> EntryBands:
        values = {k: BandRange.of(v) if isinstance(v, Range) else v for k, v in
                  ((name, getattr(b, name)) for name in cls.model_fields)}
        return cls(**values)


class FailureDoc(Part):
    """The worst case of one failure kind: the unit's dies, instances lost per pool, what survives."""

    kind: FailureKind
    failed_dies: int
    lost_prefill_instances: int
    lost_decode_instances: int
    surviving_goodput_requests_per_s: float
    surviving_frac: float

    @classmethod
    def of(cls, f: Failure) -> FailureDoc:
        return cls(**asdict(f))


class CostDoc(Part):
    """Dollars per hour and per million tokens at the goodput (planner/decide/cost.py)."""

    usd_per_hour: float
    usd_per_million_output_tokens: float | None
    usd_per_million_input_tokens: float | None
    usd_per_million_output_tokens_decode_pool: float | None

    @classmethod
    def of(cls, c: TokenCost) -> CostDoc:
        return cls(**asdict(c))


class SpreadDoc(Part):
    """One level parameter: its value, log-normal sigma, the residual rows behind it (0: pooled)."""

    path: str
    value: float
    sigma: float
    rows: int
    dof: int
    pooled: bool


class UncertaintyDoc(Part):
    """How the bands were drawn: samples, seed, percentiles, every spread, the system-level factor."""

    samples: int
    seed: int
    percentiles: list[float]
    profile: str
    spreads: list[SpreadDoc]
    pooled_sigma: float
    system_sigma: float
    system_bias_frac: float
    system_rows: int
    system_pooled: bool
    note: str

    @classmethod
    def of(cls, spreads: Spreads, samples: int, seed: int) -> UncertaintyDoc:
        s = spreads
        return cls(samples=samples, seed=seed, percentiles=[LOW, HIGH], profile=s.profile,
                   spreads=[SpreadDoc(path=p.path, value=p.value, sigma=p.sigma, rows=p.rows, dof=p.dof,
                                      pooled=p.pooled) for p in s.params],
                   pooled_sigma=s.pooled_sigma, system_sigma=s.system_sigma, system_bias_frac=s.system_bias_frac,
                   system_rows=s.system_rows, system_pooled=s.system_pooled, note=UNCERTAINTY_NOTE)


class PriceDoc(Part):
    """The hardware price a report used (USD per die-hour, and per chip-hour of ``hardware``) and its source."""

    usd_per_die_hour: float
    usd_per_chip_hour: float
    prefill_usd_per_die_hour: float | None
    source: str

    @classmethod
    def of(cls, scenario: Scenario) -> PriceDoc | None:
        price, prefill = scenario.price, scenario.prefill_price
        if price is None:
            return None
        other = prefill.usd_per_die_hour if prefill is not None and prefill != price else None
        return cls(usd_per_die_hour=price.usd_per_die_hour,
                   usd_per_chip_hour=price.usd_per_die_hour * scenario.hardware.dies_per_chip,
                   prefill_usd_per_die_hour=other, source=price.source)


def layout_decision_fields(d: LayoutDecisions, scenario: Scenario) -> dict[str, Any]:
    """The evaluate report's decision fields (``doc.model_copy(update=...)``)."""
    return {"bands": EntryBands.of(d.bands) if d.bands is not None else None,
            "uncertainty": UncertaintyDoc.of(d.spreads, d.samples, d.seed) if d.spreads is not None else None,
            "failures": [FailureDoc.of(f) for f in d.failures] if d.failures else None,
            "cost": CostDoc.of(d.cost) if d.cost is not None else None,
            "price": PriceDoc.of(scenario)}


# ----------------------------------------------------------------------------- sensitivity


class InputEffectDoc(Part):
    """Goodput per die (output tokens/s/die) with one input at -delta and +delta, and the changes."""

    input: str
    applies: bool
    low_output_tokens_per_s_per_die: float
    high_output_tokens_per_s_per_die: float
    low_change_frac: float
    high_change_frac: float


class SensitivityReport(Report):
    """planner sensitivity --json: one layout's goodput per die with each input moved by +-delta."""

    schema_version: Literal[SCHEMA_VERSION]  # type: ignore[valid-type]
    scenario: ScenarioFile
    layout: LayoutField
    layout_source: str
    dies: int
    delta_frac: float
    output_tokens_per_s_per_die: float
    decides: str | None
    inputs: list[InputEffectDoc]
    note: str


SENSITIVITY_NOTE = ("Each input moved alone, the layout as written (a change that breaks TPOT at its batch runs at the "
                    "largest batch that meets it); sorted by the larger change. " + ROOFLINE_NOTE)


def sensitivity_report(s: Sensitivity, layout: Layout, scenario: Scenario, layout_source: str) -> SensitivityReport:
    """The ``planner sensitivity --json`` document."""
    point = s.point_tokens_per_s_per_die
    rows = []
    for e in s.inputs:
        low, high = e.change(point)
        rows.append(InputEffectDoc(input=e.name, applies=e.applies,
                                   low_output_tokens_per_s_per_die=e.low_tokens_per_s_per_die,
                                   high_output_tokens_per_s_per_die=e.high_tokens_per_s_per_die, low_change_frac=low,
                                   high_change_frac=high))
    return SensitivityReport(schema_version=SCHEMA_VERSION, scenario=scenario.document(), layout=layout,
                             layout_source=layout_source, dies=layout.dies, delta_frac=s.delta,
                             output_tokens_per_s_per_die=point, decides=s.decides.name if s.decides else None,
                             inputs=rows, note=SENSITIVITY_NOTE)
