"""``planner evaluate --json``: one layout priced under one scenario (:class:`EvaluateReport`)."""

from __future__ import annotations

import math
from dataclasses import asdict, is_dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import model_serializer

from planner.documents.base import (
    ROOFLINE_NOTE,
    SCHEMA_VERSION,
    Efficiencies,
    LayoutField,
    Part,
    Report,
    efficiencies_used,
    json_value,
)
from planner.documents.decide import CostDoc, EntryBands, FailureDoc, PriceDoc, UncertaintyDoc
from planner.errors import LayoutError, PlannerError
from planner.evaluate import (
    Evaluation,
    GoodputPoint,
    LoadPoint,
    kv_fabric_name,
    layout_goodput,
    load_curve,
    load_point,
    priced_whole,
    stable_rate,
)
from planner.imbalance import PoolLoad, pool_load
from planner.inputs.layout import Mode
from planner.inputs.scenario import ScenarioFile
from planner.serving.result import PoolStep
from planner.serving.transformerless import DISCIPLINE as TRANSFORMERLESS_DISCIPLINE


class OpCost(Part):
    """One unit of a layer, per micro-batch on one die: time, the roofline side that binds, work."""

    time_s: float | None
    bound: Literal["compute", "memory"]
    flops: float
    bytes: float


class LayerCost(Part):
    """One layer class: its count, the layer time (overlap applied), per-micro-batch units and collectives."""

    count: int
    layer_s: float | None
    compute_s_per_micro_batch: float | None
    communication_s_per_micro_batch: float | None
    ops: dict[str, OpCost]
    communication: dict[str, float | None]
    # overlap stage pairs per micro-batch (planner/serving/overlap.py): stage compute, paired
    # communication, and the waiting (communication beyond its stage), seconds
    stage_pairs: dict[str, dict[str, float | None]] = {}


class Breakdown(Part):
    """Per layer class, the once-per-step costs, and memory per die by kind (bytes)."""

    # the profile's [overlap] discipline (m >= 2 micro-batches); a transformerless decode pool: its own pipeline
    overlap_discipline: str = "ideal"
    # the pool's micro-batches: with one, every layer is serial (compute then communication) and no
    # stage is paired (``stage_pairs`` empty)
    micro_batches: int | None = None
    layers: dict[str, LayerCost]
    per_step: dict[str, float | None]
    memory_bytes: dict[str, float | None]
    usable_memory_bytes: float
    memory_shortfall_bytes: float


class ExpertLoadClass(Part):
    """One MoE layer class of a pool: the busiest expert die's token copies over the mean (averaged over
    the class's layers, and on its hottest layer) and the waits of one layer per micro-batch (s)."""

    layers: int
    busiest_over_mean: float
    busiest_over_mean_hottest_layer: float
    combine_wait_s: float
    dispatch_wait_s: float


class ExpertLoadDoc(Part):
    """A pool's expert-load policy and what load imbalance costs its step (planner.imbalance): the step
    re-priced with perfect expert balance, then also without DP-rank imbalance."""

    policy: str
    rebalance_period_s: float
    skew: Literal["fitted", "measured"]
    layer_classes: dict[str, ExpertLoadClass]
    step_perfect_balance_s: float
    expert_imbalance_cost_s: float
    dp_imbalance_cost_s: float

    @classmethod
    def of(cls, load: PoolLoad) -> ExpertLoadDoc:
        classes = {c.layer_class: ExpertLoadClass(layers=c.layers, busiest_over_mean=c.busiest_over_mean,
                                                  busiest_over_mean_hottest_layer=c.busiest_over_mean_hottest,
                                                  combine_wait_s=c.combine_wait_s, dispatch_wait_s=c.dispatch_wait_s)
                   for c in load.classes}
        return cls(policy=load.policy, rebalance_period_s=load.rebalance_period_s, skew=load.skew,  # type: ignore[arg-type]
                   layer_classes=classes, step_perfect_balance_s=load.step_perfect_balance_s,
                   expert_imbalance_cost_s=load.expert_imbalance_cost_s, dp_imbalance_cost_s=load.dp_imbalance_cost_s)


class PrefillMetrics(Part):
    """Prefill pool throughput: prompt tokens (cache hits included) per second, per die, per chip."""

    step_s: float | None
    input_tokens_per_s: float | None
    input_tokens_per_s_per_die: float | None
    input_tokens_per_s_per_chip: float | None
    fits_memory: bool
    breakdown: Breakdown
    expert_load: ExpertLoadDoc


class DecodeMetrics(Part):
    """Decode pool at the layout's batch: output tokens/s, per die (every decode die), per chip."""

    step_s: float | None
    tokens_per_step: float
    tpot_s: float | None
    context_tokens: float
    batch: int
    max_batch_by_memory: int
    fits_memory: bool
    output_tokens_per_s: float | None
    output_tokens_per_s_per_die: float | None
    output_tokens_per_s_per_chip: float | None
    breakdown: Breakdown
    expert_load: ExpertLoadDoc


class TtftParts(Part):
    """TTFT at one percentile, by part (s): waiting for prefill budget or a batch slot, prefill, step boundaries
    (planner.goodput.prefill_queue), KV hand-off, first decode step."""

    percentile: float
    queueing_s: float | None
    prefill_s: float | None
    step_boundary_s: float | None
    kv_transfer_s: float | None
    first_decode_step_s: float | None
    total_s: float | None


class QuantileValue(Part):
    percentile: float
    value_s: float | None


class LoadPointDoc(Part):
    """The layout at one arrival rate (``planner.evaluate.LoadPoint``): batch, TTFT by part, TPOT percentiles."""

    rate_requests_per_s: float
    decode_batch_per_die: float
    tpot_mean_s: float | None
    tpot: list[QuantileValue]
    ttft: list[TtftParts]
    ttft_slo_s: float
    tpot_slo_s: float
    ttft_at_slo_percentile_s: float | None
    tpot_at_slo_statistic_s: float | None
    meets_ttft_slo: bool
    meets_tpot_slo: bool
    saturated_pool: Literal["prefill", "decode"] | None
    prefill_saturation_requests_per_s: float | None
    decode_saturation_requests_per_s: float | None

    @classmethod
    def of(cls, point: LoadPoint) -> LoadPointDoc:
        return cls(**asdict(point))


class Goodput(Part):
    """The layout at its goodput (``planner.evaluate.GoodputPoint``): rate, TTFT, TPOT, capacities, binding."""

    goodput_requests_per_s: float | None
    output_tokens_per_s: float | None
    output_tokens_per_s_per_die: float | None
    output_tokens_per_s_per_chip: float | None
    ttft_s: float | None
    tpot_s: float | None
    tpot_at_layout_batch_s: float | None
    decode_batch_at_goodput: float | None
    prefill_capacity_requests_per_s: float | None
    decode_capacity_requests_per_s: float | None
    binding_constraint: str
    meets_slo: bool
    ttft_breakdown: TtftParts | None

    @classmethod
    def of(cls, point: GoodputPoint) -> Goodput:
        """The document's fields of ``point`` (a field the library adds appears once it is declared here)."""
        values = {name: getattr(point, name) for name in cls.model_fields}
        return cls(**{k: asdict(v) if is_dataclass(v) and not isinstance(v, type) else v for k, v in values.items()})


class PoolPods(Part):
    """The pods (0-based) one pool's instances use and the dies it takes in each."""

    pool: Literal["prefill", "decode"]
    pods: list[int]
    dies_per_pod: list[int]


class HardwarePods(Part):
    """One hardware kind's pods: their size, how many the layout uses, which pool sits where."""

    hardware: str
    pod_dies: int
    pods_used: int
    pools: list[PoolPods]


class PlacementDoc(Part):
    """Where the layout's instances sit (planner.placement) and the fabric KV crosses between its pools."""

    hardware: list[HardwarePods]
    kv_fabric: str | None

    @classmethod
    def of(cls, ev: Evaluation) -> PlacementDoc:
        kinds = []
        for pools, pl in ev.placement.kinds():
            hw = ev.prefill_env.hw if pools == "prefill" else ev.env.hw
            kinds.append(HardwarePods(hardware=hw.name, pod_dies=pl.pod_dies, pods_used=pl.pods_used,
                                      pools=[PoolPods(pool=p.pool, pods=list(p.pods), dies_per_pod=list(p.dies_per_pod))
                                             for p in pl.pools]))
        return cls(hardware=kinds, kv_fabric=kv_fabric_name(ev))


class EvaluateReport(Report):
    """planner evaluate --json: one layout priced under one scenario."""

    float_digits: ClassVar[int | None] = None  # every digit: the report's identities hold exactly

    schema_version: Literal[SCHEMA_VERSION]  # type: ignore[valid-type]
    scenario: ScenarioFile
    layout: LayoutField
    dies: int
    chips: float
    placement: PlacementDoc
    prefill: PrefillMetrics | None
    decode: DecodeMetrics | None
    goodput: Goodput
    at_goodput: LoadPointDoc | None
    at_rate: LoadPointDoc | None
    load_curve: list[LoadPointDoc] | None
    efficiencies: Efficiencies
    note: str
    # planner/decide (planner evaluate --samples / --failures / a price): absent when not computed
    bands: EntryBands | None = None
    uncertainty: UncertaintyDoc | None = None
    failures: list[FailureDoc] | None = None
    cost: CostDoc | None = None
    price: PriceDoc | None = None

    @model_serializer(mode="wrap")
    def _json_numbers(self, handler: Any) -> Any:
        """As every report (planner.documents.base.Rounded), and the decisions only when computed."""
        out = json_value(handler(self), self.float_digits)
        for key in ("bands", "uncertainty", "failures", "cost", "price"):
            if out.get(key) is None:
                out.pop(key, None)
        return out


# ----------------------------------------------------------------------------- building


def _f(x: np.ndarray | float) -> float:
    return float(np.asarray(x).reshape(-1)[0])


def _pairs(cost) -> dict[str, dict[str, float | None]]:
    out = {}
    for name, (stage, comm) in (cost.pairs or {}).items():
        stage_s, comm_s = _f(stage), _f(comm)
        out[name] = {"stage_s": stage_s, "communication_s": comm_s, "waiting_s": max(0.0, comm_s - stage_s)}
    return out


def breakdown(step: PoolStep, discipline: str = "ideal", micro_batches: int | None = None) -> Breakdown:
    """Per layer class: per-op time and binding side, per-collective time; once-per-step costs.

    With one micro-batch (not a transformerless decode pool, which pipelines its domains) the layer
    is serial: the discipline's stage pairs do not apply and are left out."""
    serial = micro_batches == 1 and discipline != TRANSFORMERLESS_DISCIPLINE
    layers = {}
    for name, cost in step.layers.items():
        ops = {op: OpCost(time_s=_f(c.time_s), bound="compute" if bool(c.compute_bound[0]) else "memory",
                          flops=_f(c.flops), bytes=_f(c.bytes)) for op, c in cost.ops.items()}
        comm = {op: _f(t) for op, t in cost.comm.items() if _f(t) > 0}
        layers[name] = LayerCost(count=step.layer_counts[name], layer_s=_f(step.layer_s[name]),
                                 compute_s_per_micro_batch=_f(cost.compute_s),
                                 communication_s_per_micro_batch=_f(cost.comm_s), ops=ops, communication=comm,
                                 stage_pairs={} if serial else _pairs(cost))
    memory = {k: _f(v) for k, v in step.memory.items()}
    per_die = sum(v for k, v in memory.items() if not k.startswith("expert_die_"))
    return Breakdown(overlap_discipline=discipline, micro_batches=micro_batches, layers=layers,
                     per_step={k: _f(v) for k, v in step.extra.items()}, memory_bytes=memory,
                     usable_memory_bytes=step.capacity_bytes,
                     memory_shortfall_bytes=max(0.0, per_die - step.capacity_bytes))


def prefill_metrics(ev: Evaluation) -> PrefillMetrics | None:
    """Prefill pool throughput: prompt tokens (cache hits included) per second, per die, per chip."""
    p, step = ev.layout.prefill, ev.prefill
    if p is None or step is None:
        return None
    dies = p.instances * p.dies
    hit = ev.scenario.workload.cache_hit_rate
    step_s = _f(step.step_s)
    tokens_per_s = dies * p.batch_tokens / step_s / (1 - hit)
    return PrefillMetrics(step_s=step_s, input_tokens_per_s=tokens_per_s,
                          input_tokens_per_s_per_die=tokens_per_s / dies,
                          input_tokens_per_s_per_chip=tokens_per_s / dies * ev.prefill_env.hw.dies_per_chip,
                          fits_memory=bool(step.fits[0]),
                          breakdown=breakdown(step, str(ev.prefill_env.hw.overlap.discipline), p.micro_batches),
                          expert_load=ExpertLoadDoc.of(pool_load(ev, "prefill")))


def decode_metrics(ev: Evaluation) -> DecodeMetrics | None:
    """Decode pool throughput at the layout's batch: output tokens/s, per die (all decode dies), per chip."""
    d, step, env = ev.layout.decode, ev.decode, ev.env
    if d is None or step is None:
        return None
    dies = d.instances * ev.layout.decode_instance_dies
    step_s = _f(step.step_s)
    seqs = d.instances * ev.layout.decode_attention_dies * d.batch
    out_per_s = seqs * env.tokens_per_step / step_s
    return DecodeMetrics(step_s=step_s, tokens_per_step=env.tokens_per_step, tpot_s=step_s / env.tokens_per_step,
                         context_tokens=env.decode_context_tokens, batch=d.batch,
                         max_batch_by_memory=int(_f(step.max_batch)), fits_memory=bool(step.fits[0]),
                         output_tokens_per_s=out_per_s, output_tokens_per_s_per_die=out_per_s / dies,
                         output_tokens_per_s_per_chip=out_per_s / dies * env.hw.dies_per_chip,
                         breakdown=breakdown(step, TRANSFORMERLESS_DISCIPLINE if ev.layout.mode == Mode.TRANSFORMERLESS
                                             else str(env.hw.overlap.discipline), d.micro_batches),
                         expert_load=ExpertLoadDoc.of(pool_load(ev, "decode")))


def evaluate_report(ev: Evaluation, *, rate_per_s: float | None = None, curve: bool = False) -> EvaluateReport:
    """The ``planner evaluate --json`` document of an evaluation.

    ``at_goodput``: TTFT by part and TPOT percentiles at the goodput rate; ``at_rate``: the same at
    ``rate_per_s`` (``--rate``); ``load_curve``: at rates up to saturation (``--plot-load``).
    """
    if rate_per_s is not None and not math.isfinite(rate_per_s):
        raise PlannerError(f"arrival rate {rate_per_s:g} req/s is not a finite number", where="--rate",
                           fix="give a rate in requests per second, e.g. --rate 5")
    point = layout_goodput(ev)
    g = point.goodput_requests_per_s
    whole = priced_whole(ev)
    if not whole and (rate_per_s is not None or curve):
        raise LayoutError(f"prices the {' and '.join(ev.layout.pools)} pool alone: latency at a load needs both pools",
                          where="--rate/--plot-load", fix="add the other pool's table to the layout")
    at_goodput = (LoadPointDoc.of(load_point(ev, stable_rate(g, point.decode_capacity_requests_per_s)))
                  if g > 0 and whole else None)
    at_rate = LoadPointDoc.of(load_point(ev, rate_per_s)) if rate_per_s is not None else None
    points = [LoadPointDoc.of(p) for p in load_curve(ev)] if curve else None
    return EvaluateReport(schema_version=SCHEMA_VERSION, scenario=ev.scenario.document(), layout=ev.layout,
                          dies=ev.dies, chips=ev.chips, placement=PlacementDoc.of(ev),
                          prefill=prefill_metrics(ev), decode=decode_metrics(ev),
                          goodput=Goodput.of(point), at_goodput=at_goodput, at_rate=at_rate, load_curve=points,
                          efficiencies=efficiencies_used(ev.scenario.hardware), note=ROOFLINE_NOTE)
