"""A plan's decisions: bands, failure what-ifs and cost of the listed layouts, and the ranking they ask for.

``plan --rank-by cost`` ranks by dollars per million output tokens (planner.decide.cost);
``plan --tolerate-failures KIND`` ranks by what survives the worst failure of that kind
(planner.decide.failures): goodput per die that survives, or dollars per million output tokens at
the surviving goodput.  Ties keep the search's order.  Bands (planner.decide.bands) and the
failure table cover the layouts a report lists: the first ``top``, the best of each mode and the
Pareto front, with rank 1 first (ties are against it).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import StrEnum

from planner.decide.bands import DEFAULT_SAMPLES, DEFAULT_SEED, LayoutBands, Priced, layout_bands
from planner.decide.cost import TokenCost, token_cost
from planner.decide.failures import DEFAULT_FAILED_DIES, Failure, FailureKind, failure
from planner.decide.failures import supported as failures_supported
from planner.decide.outcomes import supported as outcomes_supported
from planner.decide.spreads import Spreads
from planner.evaluate import Evaluation, GoodputPoint
from planner.inputs.layout import Layout, own_scenario
from planner.inputs.scenario import Scenario
from planner.search.plan import Plan, Planned


class RankBy(StrEnum):
    GOODPUT = "goodput"  # goodput per die (the search's own ranking)
    COST = "cost"        # dollars per million output tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class Decisions:
    """Per listed layout (by ``id`` of its :class:`~planner.search.plan.Planned`): bands, failures, cost."""

    rank_by: RankBy = RankBy.GOODPUT
    tolerate: FailureKind | None = None
    failed_dies: int = DEFAULT_FAILED_DIES
    samples: int = 0
    seed: int = DEFAULT_SEED
    spreads: Spreads | None = None
    bands: dict[int, LayoutBands] = field(default_factory=dict)
    failures: dict[int, tuple[Failure, ...]] = field(default_factory=dict)
    costs: dict[int, TokenCost] = field(default_factory=dict)


def listed(result: Plan, top: int) -> list[Planned]:
    """The layouts a plan report shows, each once: the first ``top``, the best per mode, the Pareto front."""
    out: dict[int, Planned] = {}
    seen_modes: set = set()
    for p in result.layouts[:top]:
        out.setdefault(id(p), p)
    for p in result.layouts:
        if p.mode not in seen_modes:
            seen_modes.add(p.mode)
            out.setdefault(id(p), p)
    for p in result.pareto:
        out.setdefault(id(p), p)
    return list(out.values())


class _Scenarios:
    """A planned layout's own [scenario], resolved once per distinct table (MTP on / off)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario, self.cache = scenario, {}

    def __call__(self, layout: Layout) -> Scenario:
        if layout.scenario is None:
            return self.scenario
        key = json.dumps(layout.scenario.model_dump(mode="json"), sort_keys=True)
        if key not in self.cache:
            self.cache[key] = own_scenario(layout, self.scenario)
        return self.cache[key]


def _cost(p: Planned, sc: Scenario, rate: float) -> TokenCost | None:
    if sc.price is None:
        return None
    w = sc.workload
    return token_cost(p.layout, sc.price, sc.prefill_price, goodput_requests_per_s=rate, input_tokens=w.input_tokens,
                      output_tokens=w.output_tokens)


def _rank(result: Plan, rank_by: RankBy, survival: dict[int, Failure], scenarios: _Scenarios) -> Plan:
    """``result`` with its layouts re-ranked (the search's order breaks ties)."""
    def rate(p: Planned) -> float:
        f = survival.get(id(p))
        return f.surviving_goodput_requests_per_s if f is not None else p.metrics.goodput_requests_per_s

    def key(item: tuple[int, Planned]) -> tuple:
        i, p = item
        if rank_by is RankBy.COST:
            c = _cost(p, scenarios(p.layout), rate(p))
            usd = c.usd_per_million_output_tokens if c is not None else None
            return (usd is None, round(usd or 0.0, 12), i)
        return (-round(rate(p) / p.dies, 12), i)

    return dataclasses.replace(result, layouts=[p for _, p in sorted(enumerate(result.layouts), key=key)])


def _bands(result: Plan, shown: list[Planned], scenarios: _Scenarios, spreads: Spreads | None, samples: int,
           seed: int) -> tuple[Spreads | None, dict[int, LayoutBands]]:
    """Bands of the shown layouts that support them, when rank 1 does (ties are against it)."""
    if spreads is None or samples <= 0 or not shown:
        return None, {}
    ok = [p for p in shown if outcomes_supported(p.layout, scenarios(p.layout))]
    if not ok or ok[0] is not result.layouts[0]:
        return None, {}
    bands = layout_bands([Priced(layout=p.layout, scenario=scenarios(p.layout), point=p.metrics) for p in ok],
                         spreads, samples, seed)
    return spreads, {id(p): b for p, b in zip(ok, bands, strict=True)}


def decide(result: Plan, top: int, *, spreads: Spreads | None = None, samples: int = DEFAULT_SAMPLES,
           seed: int = DEFAULT_SEED, rank_by: RankBy = RankBy.GOODPUT, tolerate: FailureKind | None = None,
           failed_dies: int = DEFAULT_FAILED_DIES) -> tuple[Plan, Decisions]:
    """Re-rank ``result`` as asked, then band, cost and fail the layouts a report of ``top`` shows.

    ``spreads`` (planner.ops.spreads.profile_spreads of the scenario's hardware) turns the bands on.
    Returns the (re-ranked) plan and the decisions keyed by ``id`` of its layouts.
    """
    scenarios = _Scenarios(result.scenario)
    survival: dict[int, Failure] = {}
    caches: dict[int, dict] = {id(p): {} for p in result.layouts}  # surviving goodput per loss, per layout
    if tolerate is not None:
        survival = {id(p): failure(p.layout, scenarios(p.layout), tolerate, p.metrics.goodput_requests_per_s,
                                   failed_dies, caches[id(p)])
                    for p in result.layouts if failures_supported(p.layout)}
    if tolerate is not None or rank_by is not RankBy.GOODPUT:
        result = _rank(result, rank_by, survival, scenarios)
    shown = listed(result, top)
    failures = {}
    if tolerate is not None:
        for p in shown:
            if id(p) in survival:
                sc = scenarios(p.layout)
                failures[id(p)] = tuple(survival[id(p)] if kind is tolerate else
                                        failure(p.layout, sc, kind, p.metrics.goodput_requests_per_s, failed_dies,
                                                caches[id(p)])
                                        for kind in FailureKind)
    costs = {id(p): c for p in shown
             if (c := _cost(p, scenarios(p.layout), p.metrics.goodput_requests_per_s)) is not None}
    spreads, bands = _bands(result, shown, scenarios, spreads, samples, seed)
    return result, Decisions(rank_by=rank_by, tolerate=tolerate, failed_dies=failed_dies, samples=samples, seed=seed,
                             spreads=spreads, bands=bands, failures=failures, costs=costs)


# ----------------------------------------------------------------------------- one layout (planner evaluate)


@dataclass(frozen=True, slots=True, kw_only=True)
class LayoutDecisions:
    """Bands, failures and cost of one evaluated layout (each None when not asked for or not applicable)."""

    spreads: Spreads | None
    samples: int
    seed: int
    bands: LayoutBands | None
    failures: tuple[Failure, ...] | None
    cost: TokenCost | None


def decide_layout(ev: Evaluation, point: GoodputPoint, *, spreads: Spreads | None = None,
                  samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED, failures: bool = False,
                  failed_dies: int = DEFAULT_FAILED_DIES) -> LayoutDecisions:
    """The decisions for one layout ``planner evaluate`` priced (``point`` = its layout_goodput).

    ``spreads`` turns the bands on (as :func:`decide`); ``failures`` the failure what-if.
    """
    layout, sc = ev.layout, ev.scenario
    whole = failures_supported(layout)
    band = None
    banded = spreads is not None and samples > 0 and whole and point.goodput_requests_per_s > 0
    if banded and outcomes_supported(layout, sc):
        band = layout_bands([Priced(layout=layout, scenario=sc, point=point)], spreads, samples, seed)[0]
    fails = (tuple(failure(layout, sc, kind, point.goodput_requests_per_s, failed_dies) for kind in FailureKind)
             if failures and whole and point.goodput_requests_per_s > 0 else None)
    cost = None
    if sc.price is not None:
        w = sc.workload
        cost = token_cost(layout, sc.price, sc.prefill_price, goodput_requests_per_s=point.goodput_requests_per_s,
                          input_tokens=w.input_tokens, output_tokens=w.output_tokens)
    return LayoutDecisions(spreads=spreads if band is not None else None, samples=samples, seed=seed, bands=band,
                           failures=fails, cost=cost)
