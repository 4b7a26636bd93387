"""``planner plan --json``: layouts ranked by goodput per die (:class:`PlanReport`)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import Field, model_serializer

from planner.decide.failures import FailureKind
from planner.decide.plan import Decisions
from planner.documents.base import (
    ROOFLINE_NOTE,
    SCHEMA_VERSION,
    Efficiencies,
    LayoutField,
    Part,
    Report,
    efficiencies_used,
)
from planner.documents.decide import CostDoc, EntryBands, FailureDoc, PriceDoc, UncertaintyDoc
from planner.documents.evaluate import ExpertLoadDoc
from planner.evaluate import evaluate
from planner.imbalance import LoadMemo, layout_load, price_variants
from planner.inputs.expert_load import expert_load_files, params_path
from planner.inputs.layout import Mode, own_scenario
from planner.inputs.scenario import Scenario, ScenarioFile
from planner.search.plan import ALL_MODES, Plan, Planned, placement_summary

TPOT_DEFINITION = "TPOT = (e2e - TTFT) / (output_tokens - 1): mean time per output token after the first"
DEFAULT_TOP = 10  # ``planner plan --top`` default, for baselines that do not record it

Sha256 = Annotated[str, Field(pattern="^[0-9a-f]{64}$")]
DataFileName = Annotated[str, Field(pattern="^[a-z_]+/[^/]+$")]


class Pinned(Part):
    """The pins of a plan (planner.search.plan.Pins): each None where searched."""

    tp: Annotated[int, Field(ge=1)] | None = None
    pp: Annotated[int, Field(ge=1)] | None = None
    max_batch: Annotated[int, Field(ge=1)] | None = None


class PlanEntry(Part):
    """One ranked layout with its exact metrics (the numbers ``planner evaluate`` gives)."""

    rank: int
    mode: Mode
    layout: LayoutField
    dies: int
    chips: float
    mtp: bool
    goodput_requests_per_s: float
    output_tokens_per_s: float | None
    output_tokens_per_s_per_die: float | None
    output_tokens_per_s_per_chip: float | None
    ttft_s: float | None
    tpot_s: float
    binding_constraint: str
    headroom_frac: float | None = None
    pods: int = 1
    pods_by_pool: dict[str, list[int]] = {}
    kv_fabric: str | None = None
    expert_load: dict[str, ExpertLoadDoc] = {}  # top layouts and best per mode: each pool's expert load
    bands: EntryBands | None = None            # p10-p90 (planner/decide/bands.py)
    failures: list[FailureDoc] | None = None   # worst dies / node / pod failure (--tolerate-failures)
    cost: CostDoc | None = None                # at the goodput, when the scenario has a price

    @model_serializer(mode="wrap")
    def _drop_headroom(self, handler: Any) -> Any:
        """``headroom_frac`` (goodput / target - 1) is written only when a target rate was asked for;
        ``bands``, ``failures`` and ``cost`` only when computed."""
        out = handler(self)
        for key in ("headroom_frac", "kv_fabric", "bands", "failures", "cost"):
            if out.get(key) is None:
                out.pop(key, None)
        return out


class SearchSummary(Part):
    """Candidates priced, pool candidates meeting memory and TPOT, rejections by reason, layouts ranked."""

    candidates_evaluated: Annotated[int, Field(ge=0)]
    feasible: Annotated[int, Field(ge=0)]
    rejected_by_reason: dict[str, Annotated[int, Field(ge=0)]]
    layouts_ranked: Annotated[int, Field(ge=0)]


class NearMiss(Part):
    """When nothing is feasible: the best TPOT a decode mode reaches, or prefill's zero-load TTFT."""

    mode: str
    pool: Literal["prefill", "decode"]
    best_tpot_s: float | None = None
    meets_tpot_slo: bool | None = None
    best_ttft_s: float | None = None
    meets_ttft_slo: bool | None = None
    layout: dict[str, int | str]

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: Any) -> Any:
        """A decode miss has the TPOT pair, a prefill miss the TTFT pair: the other pair is not written."""
        return {k: v for k, v in handler(self).items() if v is not None}


class PlanReport(Report):
    """planner plan --json: layouts ranked by goodput per die."""

    schema_version: Literal[SCHEMA_VERSION]  # type: ignore[valid-type]
    scenario: ScenarioFile
    efficiencies: Efficiencies
    note: str
    data_files: dict[DataFileName, Sha256]
    tpot_definition: str
    budget_dies: int
    pods: int = 1
    pod_dies: int | None = None
    modes: Annotated[list[Mode], Field(min_length=1)] = list(ALL_MODES)
    # the most pipeline stages the search allowed (``--max-pp``; None: its whole grid)
    max_pp: Annotated[int, Field(ge=1)] | None = None
    # what the user's stack fixed (``--tp``, ``--pp``, ``--max-batch``; None: nothing, the whole search)
    pinned: Pinned | None = None
    top: Annotated[int, Field(ge=1)] = DEFAULT_TOP
    search: SearchSummary
    layouts: list[PlanEntry]
    best_per_mode: dict[Mode, PlanEntry]
    pareto: list[PlanEntry]
    near_misses: list[NearMiss]
    # Front points left out of ``pareto`` by each rule (planner.search.plan: below_floor, dominated_by_wide_margin).
    pareto_dropped: dict[str, int] = Field(default_factory=dict)
    # Scenario fields (dotted) neither the scenario file nor a flag gave: defaults the answer assumed.
    assumed_defaults: list[str] = Field(default_factory=list)
    target_rate_requests_per_s: float | None = None
    rank_by: Literal["goodput", "cost"] = "goodput"
    tolerate_failures: FailureKind | None = None
    uncertainty: UncertaintyDoc | None = None
    price: PriceDoc | None = None


# ----------------------------------------------------------------------------- building


def plan_entry(p: Planned, rank: int, dies_per_chip: int, target: float | None = None,
               sc: Scenario | None = None) -> PlanEntry:
    m = p.metrics
    headroom = m.goodput_requests_per_s / target - 1.0 if target else None
    pods, by_pool, kv = placement_summary(p.layout, sc) if sc is not None else (1, {}, None)
    return PlanEntry(rank=rank, mode=p.mode, layout=p.layout, dies=p.dies, chips=p.dies / dies_per_chip,
                     mtp=bool(p.layout.scenario and p.layout.scenario.mtp.acceptance > 0),
                     goodput_requests_per_s=m.goodput_requests_per_s, output_tokens_per_s=m.output_tokens_per_s,
                     output_tokens_per_s_per_die=m.output_tokens_per_s_per_die,
                     output_tokens_per_s_per_chip=m.output_tokens_per_s_per_chip, ttft_s=m.ttft_s, tpot_s=m.tpot_s,
                     binding_constraint=m.binding_constraint, headroom_frac=headroom,
                     pods=pods, pods_by_pool=by_pool, kv_fabric=kv)


def expert_load_docs(p: Planned, sc: Scenario, memo: LoadMemo | None = None) -> dict[str, ExpertLoadDoc]:
    """Each pool's expert load and imbalance cost (planner.imbalance) of a listed layout, priced again (N = 1)
    under its own scenario, as the search priced it (MTP off where the layout has it off): the search's
    evaluation when it kept one (the same call, already made)."""
    ev = p.evaluation if p.evaluation is not None else evaluate(p.layout, own_scenario(p.layout, sc), "plan")
    return {pool: ExpertLoadDoc.of(load) for pool, load in layout_load(ev, memo).items()}


def file_hashes(scenario: Scenario) -> dict[str, str]:
    """SHA-256 of every data file the plan read, by base name (for regression checks): the profile, the
    card, the expert-load parameters and any measured expert-count matrix."""
    out = {}
    for kind, spec in (("hardware_profiles", scenario.hardware), ("models", scenario.model)):
        out[f"{kind}/{spec.path.name}"] = hashlib.sha256(spec.path.read_bytes()).hexdigest()
    out[f"measurements/{params_path().name}"] = hashlib.sha256(params_path().read_bytes()).hexdigest()
    for path in expert_load_files(scenario.document().get("experts", {})):
        out[f"expert_load/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def decided(entry: PlanEntry, p: Planned, decisions: Decisions | None) -> PlanEntry:
    """``entry`` with the bands, failures and cost ``decisions`` hold for its layout."""
    if decisions is None:
        return entry
    key = id(p)
    band, fails, cost = decisions.bands.get(key), decisions.failures.get(key), decisions.costs.get(key)
    return entry.model_copy(update={"bands": EntryBands.of(band) if band else None,
                                    "failures": [FailureDoc.of(f) for f in fails] if fails else None,
                                    "cost": CostDoc.of(cost) if cost else None})


def plan_report(result: Plan, top: int, decisions: Decisions | None = None) -> PlanReport:
    """The ``planner plan --json`` document (deterministic; no timings, no absolute paths).

    ``decisions`` (planner.decide.plan.decide, on the same ``result``) adds bands, failures and cost.
    """
    sc = result.scenario
    dpc = sc.hardware.dies_per_chip
    rank = {id(p): i + 1 for i, p in enumerate(result.layouts)}
    best: dict[Mode, PlanEntry] = {}
    target = result.target_rate_per_s
    pod = sc.hardware.pod_dies

    def entry(p: Planned) -> PlanEntry:
        return decided(plan_entry(p, rank[id(p)], dpc, target, sc), p, decisions)

    loads: dict[int, dict[str, ExpertLoadDoc]] = {}
    memo: LoadMemo = {}  # the pools the listed layouts share, re-priced once (planner.imbalance)

    def with_load(p: Planned) -> PlanEntry:
        """The top layouts and the best per mode also carry each pool's expert load (priced once each)."""
        if id(p) not in loads:
            loads[id(p)] = expert_load_docs(p, sc, memo)
        return entry(p).model_copy(update={"expert_load": loads[id(p)]})

    firsts = {p.mode: p for p in reversed(result.layouts)}  # the best of each mode (the first listed)
    shown = {id(p): p for p in [*firsts.values(), *result.layouts[:top]]}  # the layouts with_load is asked for
    price_variants([p.evaluation for p in shown.values() if p.evaluation is not None], memo)
    for p in result.layouts:
        if p.mode not in best:
            best[p.mode] = with_load(p)
    search = SearchSummary(candidates_evaluated=result.candidates_evaluated, feasible=result.feasible,
                           rejected_by_reason=dict(sorted(result.rejected.items())),
                           layouts_ranked=len(result.layouts))
    return PlanReport(
        schema_version=SCHEMA_VERSION, scenario=sc.document(), efficiencies=efficiencies_used(sc.hardware),
        note=ROOFLINE_NOTE, data_files=file_hashes(sc), tpot_definition=TPOT_DEFINITION, budget_dies=result.budget,
        pods=sc.pods, pod_dies=pod,
        modes=list(result.modes), max_pp=result.max_pp, top=top, search=search,
        pinned=Pinned(tp=result.pins.tp, pp=result.pins.pp, max_batch=result.pins.max_batch) if result.pins else None,
        layouts=[with_load(p) for p in result.layouts[:top]], best_per_mode=best,
        pareto=[entry(p) for p in result.pareto], near_misses=result.near_misses,
        pareto_dropped=dict(sorted(result.pareto_dropped.items())), assumed_defaults=list(sc.assumed),
        target_rate_requests_per_s=target, **_decision_fields(sc, decisions))


def _decision_fields(sc: Scenario, decisions: Decisions | None) -> dict[str, Any]:
    if decisions is None:
        return {}
    d = decisions
    return {"rank_by": d.rank_by.value, "tolerate_failures": d.tolerate,
            "uncertainty": UncertaintyDoc.of(d.spreads, d.samples, d.seed) if d.spreads is not None else None,
            "price": PriceDoc.of(sc)}
