"""Price one written-down layout: step times, throughput per pool, memory, breakdown.

``evaluate`` runs the vectorized step-time models with one candidate (N = 1) — the same code
the search runs on millions — and turns the result into plain numbers for reports.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from planner import catalog, queueing
from planner import goodput as gp
from planner.errors import LayoutError, PlannerError
from planner.inputs.layout import Layout, check_layout
from planner.inputs.scenario import Scenario, check_dtypes
from planner.modes import MODES
from planner.modes.base import chunk_terms, prefill_arrays
from planner.modes.collocated import occupancy_batches, synchronised_groups
from planner.placement import Placement, check_pods, place
from planner.serving.context import Env
from planner.serving.prefill import prefill_step
from planner.serving.result import PoolStep


@dataclass(frozen=True, slots=True)
class CurveSteps:
    """A decode pool's steps at each batch of its TPOT(b) grid (the mean step; chunked prefill: the two steps)."""

    step_s: np.ndarray
    plain_step_s: np.ndarray | None
    chunk_step_s: np.ndarray | None


def decode_knobs(layout: Layout) -> dict[str, float]:
    """The layout's decode-pool knobs (layout keys), for the mode's step model with N = 1."""
    return {k: float(getattr(layout.decode, k) or 0) for k in MODES[layout.mode].decode_keys}


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """Result of pricing one layout under one scenario."""

    scenario: Scenario
    layout: Layout
    prefill: PoolStep | None
    decode: PoolStep | None
    env: Env
    prefill_env: Env
    placement: LayoutPlacement
    curve: tuple[np.ndarray, CurveSteps] | None = None  # the decode TPOT(b) curve, when priced with others'

    @property
    def dies(self) -> int:
        return self.layout.dies

    @property
    def chips(self) -> float:
        """Chips of every pool, each on its own hardware (dies / dies per chip)."""
        lay = self.layout
        pre = lay.prefill.instances * lay.prefill.dies if lay.prefill is not None else 0
        dec = lay.decode.instances * lay.decode_instance_dies if lay.decode is not None else 0
        return pre / self.prefill_env.hw.dies_per_chip + dec / self.env.hw.dies_per_chip


def pool_scenario(scenario: Scenario, hardware: str | None, where: str, pool: str = "pool") -> Scenario:
    """The scenario as one pool sees it: on the pool's own hardware profile when it names one."""
    if hardware is None:
        return scenario
    try:
        hw = catalog.hardware(hardware)
    except PlannerError as exc:  # name the layout table that asked for it
        raise LayoutError(f"'{pool}.hardware': {exc.message}", where=where, fix=exc.fix) from None
    if hw.name == scenario.hardware.name:
        return scenario
    check_dtypes(hw, scenario.precision, where)
    return replace(scenario, hardware=hw)


# Steps already priced within one caller's run (planner.search.plan prices ~60 listed layouts, which share
# decode and prefill pools at different instance counts): (kind, id(scenario or Env), knobs) -> (owner, value).
# The owner is kept so its id is not reused while the memo lives.
StepMemo = dict[tuple, tuple[object, object]]


def memoized(memo: StepMemo | None, key: tuple, owner: object, build):
    """``build()``, or the value priced before under ``key`` (``owner`` kept alive with it); no memo: build."""
    if memo is None:
        return build()
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = (owner, build())
    return hit[1]


def evaluate(layout: Layout, scenario: Scenario, where: str = "layout", memo: StepMemo | None = None) -> Evaluation:
    """Price ``layout`` under ``scenario``; impossible layouts raise LayoutError (exit 2).

    Each pool runs on the scenario's hardware or on the profile it names (``hardware`` in its
    table); pools on different hardware sit in different pods and hand KV over the fabric joining
    pods.  A layout may leave out one pool of a pd or transformerless layout: the other is priced
    alone (its capacity at the SLO it can see).

    ``memo``: a pool's step (and the Env of a scenario object) priced by an earlier call with the same
    memo is reused, not priced again: the step models are pure functions of (Env, knobs), and the
    instance count is not a knob of a step.  The caller keeps its scenario objects unchanged while the
    memo lives (keys hold their ids).
    """
    placement, env, pre_env = _pools(layout, scenario, where, memo)
    prefill = decode = None
    if layout.prefill is not None:
        arrays = prefill_arrays(layout.prefill.model_dump())
        key = ("prefill", id(pre_env), tuple(np.asarray(getattr(arrays, f.name)).tobytes() for f in fields(arrays)))
        prefill = memoized(memo, key, pre_env, lambda: prefill_step(pre_env, arrays))
    if layout.decode is not None:
        knobs = decode_knobs(layout)
        decode = memoized(memo, _decode_key(env, layout, knobs), env, lambda: MODES[layout.mode].price(env, knobs))
    return Evaluation(scenario=scenario, layout=layout, prefill=prefill, decode=decode, env=env, prefill_env=pre_env,
                      placement=placement)


def _decode_key(env: Env, layout: Layout, knobs: dict[str, float]) -> tuple:
    return ("decode", id(env), layout.mode, tuple(sorted(knobs.items())))


def _pools(layout: Layout, scenario: Scenario, where: str, memo: StepMemo | None
           ) -> tuple[LayoutPlacement, Env, Env]:
    """The layout checked and placed, and the Env of its decode and prefill pools (memoized per scenario object)."""
    check_layout(layout, scenario.model, where)
    pre_sc = pool_scenario(scenario, getattr(layout.prefill, "hardware", None), where, "prefill")
    dec_sc = pool_scenario(scenario, getattr(layout.decode, "hardware", None), where, "decode")
    placement = place_layout(layout, pre_sc, dec_sc)
    other = scenario.prefill_hardware
    for sc, pl in ((pre_sc, placement.prefill), (dec_sc, placement.decode)):
        if pl is not None and sc.hardware.name == scenario.hardware.name:
            check_pods(pl, scenario.pods, sc.hardware.name, where)
        elif pl is not None and other is not None and sc.hardware.name == other.name:
            check_pods(pl, scenario.prefill_pods, sc.hardware.name, where, "prefill_pods")
    env = memoized(memo, ("env", id(dec_sc)), dec_sc, lambda: Env.of(dec_sc))
    pre_env = memoized(memo, ("env", id(pre_sc)), pre_sc, lambda: Env.of(pre_sc)) if pre_sc is not dec_sc else env
    return placement, env, pre_env


def price_decode_pools(items: list[tuple[Layout, Scenario]], where: str, memo: StepMemo) -> None:
    """Price the decode pools of ``items`` into ``memo`` ahead of :func:`evaluate`: the pools not priced yet, in
    one vector call per (Env, mode, shared-expert replicas placed or not) instead of one call each (N = 1).

    The step models price every row on its own, so each row's PoolStep (every array, the breakdown included)
    is the one a call of its own returns (:meth:`PoolStep.row`); the one structure the rows of a call share
    is the breakdown's shared-expert-replica ops, present when any row places replicas, and the pipeline's
    once-per-step parts, present when any row has stages, hence the split
    (tests/unit/test_price_decode_pools.py).  A default plan's exact pricing: 42 step calls -> 8 (curves
    included), 0.25 -> 0.12 s.
    """
    groups: dict[tuple, tuple[Env, Layout, dict[tuple, dict[str, float]]]] = {}
    for layout, scenario in items:
        if layout.decode is None:
            continue
        _, env, _ = _pools(layout, scenario, where, memo)
        knobs = decode_knobs(layout)
        key = _decode_key(env, layout, knobs)
        if key not in memo:
            shape = (id(env), layout.mode, knobs.get("shared_expert_replicas", 0.0) > 0, knobs.get("pp", 0.0) > 1)
            groups.setdefault(shape, (env, layout, {}))[2][key] = knobs
    for env, layout, members in groups.values():
        if len(members) < 2:
            continue
        knobs = {k: np.array([m[k] for m in members.values()]) for k in next(iter(members.values()))}
        step = MODES[layout.mode].price(env, knobs)
        for i, key in enumerate(members):
            memo[key] = (env, step.row(i, len(members)))


@dataclass(frozen=True, slots=True, kw_only=True)
class LayoutPlacement:
    """Pods per hardware kind: one placement when both pools share the hardware, else one each."""

    prefill: Placement | None
    decode: Placement | None
    shared: bool  # both pools on one hardware kind, placed together

    @property
    def same_pod(self) -> bool:
        """Prefill and decode in one and the same pod (KV over the pod's fabric)."""
        pl = self.decode if self.shared else None
        return pl is not None and pl.same_pod

    def kinds(self) -> tuple[tuple[str, Placement], ...]:
        """(pools, placement) per hardware kind: one entry when the pools share it."""
        if self.shared:
            only = self.decode or self.prefill
            return (("prefill+decode" if self.prefill and self.decode else ("decode" if self.decode else "prefill"),
                     only),) if only else ()
        return tuple((name, pl) for name, pl in (("prefill", self.prefill), ("decode", self.decode)) if pl)


def kv_fabric_name(ev: Evaluation) -> str | None:
    """The fabric KV crosses from prefill to decode: the pod's when both share one, else the one joining pods."""
    if ev.layout.prefill is None or ev.layout.decode is None:
        return None
    return ev.env.hw.kv_fabric(ev.placement.same_pod).name


def place_layout(layout: Layout, prefill_scenario: Scenario, decode_scenario: Scenario | None = None
                 ) -> LayoutPlacement:
    """The layout's instances in pods (planner.placement): prefill first, then decode, per hardware kind."""
    decode_scenario = decode_scenario or prefill_scenario
    pre = [] if layout.prefill is None else [("prefill", layout.prefill.instances, layout.prefill.dies)]
    dec = [] if layout.decode is None else [("decode", layout.decode.instances, layout.decode_instance_dies)]
    if prefill_scenario.hardware.name == decode_scenario.hardware.name:
        both = place(pre + dec, decode_scenario.hardware.pod_dies)
        return LayoutPlacement(prefill=both if pre else None, decode=both if dec else None, shared=True)
    return LayoutPlacement(prefill=place(pre, prefill_scenario.hardware.pod_dies) if pre else None,
                           decode=place(dec, decode_scenario.hardware.pod_dies) if dec else None, shared=False)


# ----------------------------------------------------------------------------- goodput of one layout

# Percentiles reported for TTFT and TPOT at a load (the SLO's own percentiles are added).
REPORTED_PERCENTILES = (50.0, 90.0, 99.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class TtftBreakdown:
    """TTFT at one percentile, by part (seconds): the prefill of the prompt at that percentile of prompt
    lengths (planner.goodput.ttft_parts_s), the step boundaries (entering at one, leaving at the end
    of the forward that holds the prompt's last token: planner.goodput.prefill_queue), the queueing
    the percentile adds on top (waiting for prefill budget or a batch slot), the KV hand-off to the
    decode pool, and the first decode step (one TPOT; 0 for chunked-prefill modes)."""

    percentile: float
    queueing_s: float
    prefill_s: float
    step_boundary_s: float
    kv_transfer_s: float
    first_decode_step_s: float
    total_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Quantile:
    percentile: float
    value_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPoint:
    """The layout at an arrival rate: decode batch, TTFT and TPOT percentiles, SLO verdicts.

    ``saturated_pool`` names the pool whose capacity the rate exceeds ("prefill": every request
    slot busy, the queue grows; "decode": the batch is full, requests wait for a sequence slot);
    TTFT is then infinite.
    """

    rate_requests_per_s: float
    decode_batch_per_die: float
    tpot_mean_s: float
    tpot: tuple[Quantile, ...]
    ttft: tuple[TtftBreakdown, ...]
    ttft_slo_s: float
    tpot_slo_s: float
    ttft_at_slo_percentile_s: float
    tpot_at_slo_statistic_s: float
    meets_ttft_slo: bool
    meets_tpot_slo: bool
    saturated_pool: str | None
    prefill_saturation_requests_per_s: float
    decode_saturation_requests_per_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class GoodputPoint:
    """A layout at its goodput: the rate, TTFT and TPOT there, the two capacities, what binds."""

    goodput_requests_per_s: float
    output_tokens_per_s: float
    output_tokens_per_s_per_die: float
    output_tokens_per_s_per_chip: float
    ttft_s: float | None
    tpot_s: float | None
    tpot_at_layout_batch_s: float | None
    decode_batch_at_goodput: float | None
    prefill_capacity_requests_per_s: float | None
    decode_capacity_requests_per_s: float | None
    binding_constraint: str
    meets_slo: bool
    ttft_breakdown: TtftBreakdown | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefillSide:
    """The layout's prefill side as an M/G/c queue: service time, servers, KV hand-off (s)."""

    service_s: float
    servers: float
    kv_transfer_s: float
    first_step: bool  # the first decode step adds to TTFT (a separate prefill pool)
    quantum_s: float  # entering and leaving at step boundaries, at zero load (planner.goodput.prefill_queue)
    quantum_load_s: float  # its part growing with the prefill stream's utilization


def prefill_side(ev: Evaluation) -> PrefillSide:
    env, lay = ev.env, ev.layout
    if not MODES[lay.mode].prefill_pool:
        d = lay.decode
        # a token stream per TP group whose forward is a step carrying a chunk
        service, slots, quantum, load = gp.prefill_queue(d.tp, d.prefill_chunk_tokens,  # type: ignore
                                                         env.new_input_tokens, d.dies_per_instance / d.tp,
                                                         _f(ev.decode.chunk_step_s), _f(ev.decode.plain_step_s))
        return PrefillSide(service_s=_f(service), servers=_f(slots) * d.instances,
                           kv_transfer_s=0.0, first_step=False, quantum_s=_f(quantum), quantum_load_s=_f(load))
    p = lay.prefill
    assert p is not None and ev.prefill is not None
    svc, slots, q, qload = gp.prefill_queue(p.tp, p.batch_tokens, env.new_input_tokens, p.dies / p.tp,
                                            _f(ev.prefill.step_s))
    service, servers, quantum, load = _f(svc), _f(slots) * p.instances, _f(q), _f(qload)
    if lay.decode is None:  # a prefill pool priced alone: the hand-off and first step belong to the decode pool
        return PrefillSide(service_s=service, servers=servers, kv_transfer_s=0.0, first_step=False, quantum_s=quantum,
                           quantum_load_s=load)
    kv = gp.kv_handoff_s(env.hw, env.model, env.by, input_tokens=env.input_tokens, prefill_tp=p.tp,
                         decode_tp=lay.decode.tp, same_pod=ev.placement.same_pod, p2p_s=env.calls.p2p_s,
                         prefill_pp=p.stages, decode_pp=lay.decode.stages)
    return PrefillSide(service_s=service, servers=servers, kv_transfer_s=_f(kv), first_step=True, quantum_s=quantum,
                       quantum_load_s=load)


# Batch points of the TPOT(b) curve the decode fixed point is solved on (one vector call).
TPOT_CURVE_POINTS = 16


def tpot_curve_batches(batch: float) -> np.ndarray:
    """The batches per die the TPOT(b) curve is priced at: TPOT_CURVE_POINTS up to ``batch`` (0 excluded)."""
    return np.unique(np.concatenate([np.linspace(0.0, batch, TPOT_CURVE_POINTS)[1:], [batch]]))


def curve_batches(layout: Layout) -> np.ndarray:
    """The batches per die the layout's TPOT(b) curve is priced at: a collocated pool's on the search's batch
    grid (planner.modes.collocated.occupancy_batches: its TPOT limit is found on it), else
    :func:`tpot_curve_batches`."""
    d = layout.decode
    if not MODES[layout.mode].prefill_pool:
        return occupancy_batches(float(d.batch), float(d.micro_batches))
    return tpot_curve_batches(float(d.batch))


def occupancy_curve(ev: Evaluation) -> gp.OccupancyCurve:
    """The layout's decode pool on its TPOT(b) curve (planner.goodput.OccupancyCurve, N = 1)."""
    env, d = ev.env, ev.layout.decode
    batches, curve = _priced_curve(ev)
    knobs = decode_knobs(ev.layout)
    chunked = curve.chunk_step_s is not None

    def row(a):
        return None if a is None else _at_zero(a)[None, :]

    chunk = knobs.get("prefill_chunk_tokens", 0.0)
    return gp.OccupancyCurve(batches=batches[None, :], step_s=row(curve.step_s),
                             plain_step_s=row(curve.plain_step_s) if chunked else None,
                             chunk_step_s=row(curve.chunk_step_s) if chunked else None,
                             cap=np.array([float(d.batch)]),
                             attention_dies=np.array([float(ev.layout.decode_attention_dies)]),
                             tp=np.array([knobs.get("tp", 1.0)]), chunk_tokens=np.array([chunk]),
                             groups=np.atleast_1d(synchronised_groups(env, knobs["dies"], knobs["tp"],
                                                                     knobs.get("pp")))
                             if chunked else np.ones(1),
                             new_tokens=env.new_input_tokens, output_tokens=env.output_tokens,
                             tokens_per_step=env.tokens_per_step, draft_tokens=env.draft_tokens,
                             acceptance=ev.scenario.mtp.acceptance)


def tpot_curve(ev: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """(batch per attention die, TPOT) at 0..b of the layout's decode pool, priced in one vector call."""
    batches, step = _priced_curve(ev)
    return batches, _at_zero(step.step_s) / ev.env.tokens_per_step


def _at_zero(values: np.ndarray) -> np.ndarray:
    """A curve's values with the first grid point's repeated for batch 0 (the curve starts there)."""
    return np.concatenate([[values[0]], values])


def _priced_curve(ev: Evaluation) -> tuple[np.ndarray, CurveSteps]:
    """(batch per attention die from 0, the decode step priced at each batch of the grid but 0)."""
    return ev.curve if ev.curve is not None else priced_curves([ev])[0]


def priced_curves(evs: list[Evaluation]) -> list[tuple[np.ndarray, CurveSteps]]:
    """:func:`_priced_curve` of layouts of one mode priced under one and the same Env, in one vector call.

    Every row of the step models is priced on its own (elementwise over candidates), so a layout's
    rows come out the same floats as when it is priced alone.
    """
    grids = [curve_batches(ev.layout) for ev in evs]
    knobs_each = [decode_knobs(ev.layout) for ev in evs]
    knobs = {k: np.concatenate([np.full(len(g), kn[k]) for kn, g in zip(knobs_each, grids, strict=True)])
             for k in knobs_each[0]}
    knobs["batch"] = np.concatenate(grids)
    step = MODES[evs[0].layout.mode].price(evs[0].env, knobs)
    out, lo = [], 0
    for g in grids:
        part = slice(lo, lo + len(g))
        out.append((np.concatenate([[0.0], g]), CurveSteps(
            step_s=step.step_s[part],
            plain_step_s=None if step.plain_step_s is None else step.plain_step_s[part],
            chunk_step_s=None if step.chunk_step_s is None else step.chunk_step_s[part])))
        lo += len(g)
    return out


def tpot_slo_statistic_s(ev: Evaluation, tpot_s: float) -> float:
    """The TPOT statistic the SLO bounds for the layout's decode pool at its full batch (planner.goodput)."""
    sc, env = ev.scenario, ev.env
    chunk = chunk_terms(env, ev.decode, decode_knobs(ev.layout))
    return _f(gp.tpot_slo_statistic_s(sc.slo, tpot_s=np.array([tpot_s]), output_tokens=sc.workload.output_tokens,
                                      draft_tokens=env.draft_tokens, acceptance=sc.mtp.acceptance, chunk=chunk))


def decode_operating_point(ev: Evaluation, rate_per_s: float) -> tuple[float, float]:
    """(sequences per attention die, TPOT) where the decode pool settles at ``rate_per_s``.

    Little's law under continuous batching, ``b = lambda_inst * output * TPOT(b) / A``, solved as
    the smallest fixed point under the layout's batch (planner.queueing.fixed_point_on_curve) on
    the TPOT(b) curve of the pool, priced at ``TPOT_CURVE_POINTS`` batches in one vector call.
    """
    batches, tpots = tpot_curve(ev)
    return _operating_point(ev, batches, tpots, rate_per_s)


def _operating_point(ev: Evaluation, batches: np.ndarray, tpots: np.ndarray, rate_per_s: float) -> tuple[float, float]:
    d = ev.layout.decode
    return queueing.fixed_point_on_curve(batches, tpots, rate_per_s / d.instances,
                                         ev.scenario.workload.output_tokens, float(ev.layout.decode_attention_dies))


def _percentiles(slo_percentile: float | None) -> tuple[float, ...]:
    extra = () if slo_percentile is None else (slo_percentile,)
    return tuple(sorted(set(REPORTED_PERCENTILES + extra)))


def stable_rate(rate_per_s: float, decode_capacity_per_s: float | None) -> float:
    """The goodput rate as the load point prices it: a hair (1e-9 relative) inside the decode capacity."""
    return rate_per_s if decode_capacity_per_s is None else min(rate_per_s, decode_capacity_per_s * (1 - 1e-9))


def priced_whole(ev: Evaluation) -> bool:
    """Both pools written down (or a chunked-prefill mode): the layout serves requests end to end."""
    return ev.layout.decode is not None and (ev.layout.prefill is not None or not MODES[ev.layout.mode].prefill_pool)


def load_point(ev: Evaluation, rate_per_s: float, *, first_step_tpot_s: float | None = None) -> LoadPoint:
    """The layout at ``rate_per_s`` requests/s: decode batch, TTFT by part and TPOT at percentiles.

    The decode pool settles at its Little's-law batch (:func:`decode_operating_point`); TPOT
    percentiles over requests follow planner.goodput.tpot_quantile_s with the step-time slope of
    the pool's TPOT(b) curve there; TTFT at percentile p = M/G/c waiting quantile + prefill + KV
    hand-off + first decode step.  ``first_step_tpot_s`` overrides the first decode step (the
    goodput search charges the TPOT at the full batch).
    """
    sc, env, d = ev.scenario, ev.env, ev.layout.decode
    slo, w = sc.slo, sc.workload
    side = prefill_side(ev)
    batches, curve = _priced_curve(ev)
    tpots = _at_zero(curve.step_s) / env.tokens_per_step
    seqs = d.instances * ev.layout.decode_attention_dies * d.batch
    full_batch = seqs / (w.output_tokens * tpots[-1])  # Little's law with every sequence decoding
    chunked = not MODES[ev.layout.mode].prefill_pool
    # chunked prefill: a slot is also held through its prompt's prefill (planner.goodput.slot_residence_s)
    decode_sat = (seqs / float(gp.slot_residence_s(w.output_tokens, float(tpots[-1]), side.service_s)) if chunked
                  else full_batch)
    prefill_sat = side.servers / side.service_s
    # A rate within the reports' rounding (6 significant digits) of a capacity runs at it, not past it.
    at_most = 1 + 1e-6
    saturated = ("prefill" if rate_per_s >= prefill_sat else
                 "decode" if rate_per_s > decode_sat * at_most else None)
    to_decode = min(rate_per_s, prefill_sat)  # what the prefill pool passes on
    if to_decode <= 0:
        batch, tpot = 0.0, float(tpots[0])
    elif to_decode >= full_batch * (1 - 1e-9):
        batch, tpot = float(d.batch), float(tpots[-1])
    else:
        batch, tpot = _operating_point(ev, batches, tpots, to_decode)
    occ = occupancy_curve(ev)

    def tpot_q(p: float) -> float:
        return _f(occ.tpot_s(p / 100.0, np.array([batch]))[1])

    first = (tpot if first_step_tpot_s is None else first_step_tpot_s) if side.first_step else 0.0

    # chunked prefill: a prompt takes a batch slot before its first chunk (planner.goodput, "Admission")
    residence = float(gp.slot_residence_s(w.output_tokens, float(tpots[-1]), side.service_s)) if chunked else None

    fixed = side.kv_transfer_s + first + side.quantum_s
    # every reported TTFT percentile and the SLO's in one vector call (elementwise: each is what a
    # call of its own gives)
    levels = (slo.ttft_percentile, *_percentiles(slo.ttft_percentile))
    totals, prefills = (np.broadcast_to(np.asarray(x, dtype=float), (len(levels),)) for x in gp.ttft_parts_s(
        np.array(levels) / 100.0, w.input_cv, rate_per_s, side.service_s, side.servers, fixed, w.input_cv,
        sequences=None if residence is None else float(seqs), residence_s=residence, residence_cv=w.output_cv,
        input_cap_sd=w.input_cap_sd, quantum_load_s=side.quantum_load_s))

    boundary = _f(gp.prefill_quantum_s(side.quantum_s, side.quantum_load_s, rate_per_s, np.array([side.service_s]),
                                       np.array([side.servers])))

    def ttft_at(i: int) -> TtftBreakdown:
        total, prefill = float(totals[i]), float(prefills[i])
        total = np.inf if saturated else total
        return TtftBreakdown(percentile=levels[i], queueing_s=total - (fixed - side.quantum_s) - boundary - prefill,
                             prefill_s=prefill, step_boundary_s=boundary,
                             kv_transfer_s=side.kv_transfer_s, first_decode_step_s=first, total_s=total)

    ttft_slo = ttft_at(0).total_s
    tpot_stat = tpot if slo.tpot_percentile is None else tpot_q(slo.tpot_percentile)
    return LoadPoint(
        rate_requests_per_s=rate_per_s, decode_batch_per_die=batch, tpot_mean_s=tpot,
        tpot=tuple(Quantile(percentile=p, value_s=tpot_q(p)) for p in _percentiles(slo.tpot_percentile)),
        ttft=tuple(ttft_at(i) for i in range(1, len(levels))), ttft_slo_s=slo.ttft_s,
        tpot_slo_s=slo.tpot_s, ttft_at_slo_percentile_s=ttft_slo, tpot_at_slo_statistic_s=tpot_stat,
        meets_ttft_slo=bool(ttft_slo <= slo.ttft_s * (1 + 1e-9)),
        meets_tpot_slo=bool(tpot_stat <= slo.tpot_s * (1 + 1e-9)) and saturated != "decode",
        saturated_pool=saturated, prefill_saturation_requests_per_s=prefill_sat,
        decode_saturation_requests_per_s=decode_sat)


def tpot_limited_rate_per_s(ev: Evaluation) -> np.ndarray:
    """Requests/s one instance of a collocated layout serves where its TPOT statistic meets the SLO, (1,).

    The slot wait keeps the batch part full below the full batch's rate: Little's law at the occupancy
    up to which TPOT (with that occupancy's chunk share and batch spread) meets the SLO
    (planner.goodput.OccupancyCurve.tpot_limited_batch); 0 where the pool does not fit.
    """
    return tpot_limited_rates_per_s([ev])[0]


def tpot_limited_rates_per_s(evs: list[Evaluation]) -> list[np.ndarray]:
    """:func:`tpot_limited_rate_per_s` of each, the layouts with the same SLO and scenario scalars as the rows
    of one OccupancyCurve (shorter curves padded with nan, as the search's: every row is priced on its own)."""
    groups: dict[tuple, list[int]] = {}
    curves = [occupancy_curve(ev) for ev in evs]
    for i, (ev, c) in enumerate(zip(evs, curves, strict=True)):
        key = (ev.scenario.slo, c.new_tokens, c.output_tokens, c.tokens_per_step, c.draft_tokens, c.acceptance,
               c.plain_step_s is None)
        groups.setdefault(key, []).append(i)
    out: list[np.ndarray] = [np.zeros(1)] * len(evs)
    for members in groups.values():
        occ = _stacked([curves[i] for i in members])
        rate = occ.rate_per_s(occ.tpot_limited_batch(evs[members[0]].scenario.slo))
        for j, i in enumerate(members):
            out[i] = np.where(bool(evs[i].decode.fits[0]), rate[j:j + 1], 0.0)
    return out


def _stacked(curves: list[gp.OccupancyCurve]) -> gp.OccupancyCurve:
    """One-row curves (equal scalars) as the rows of one, the (1, K) arrays padded with nan to the widest."""
    if len(curves) == 1:
        return curves[0]
    width = max(c.batches.shape[1] for c in curves)

    def rows(name: str) -> np.ndarray | None:
        parts = [getattr(c, name) for c in curves]
        if parts[0] is None:
            return None
        if np.ndim(parts[0]) == 1:
            return np.concatenate(parts)
        return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=np.nan) for p in parts])

    arrays = ("batches", "step_s", "plain_step_s", "chunk_step_s", "cap", "attention_dies", "tp", "chunk_tokens",
              "groups")
    return replace(curves[0], **{name: rows(name) for name in arrays})


def _goodput_inputs(ev: Evaluation, tpot_rate_per_s: np.ndarray | None = None) -> tuple[tuple, dict]:
    """(the scalar arguments, the (1,) array arguments) of ``planner.goodput.goodput`` for a layout priced
    whole: layouts with equal scalars can be priced in one vector call (:func:`layout_goodputs`)."""
    sc, env, d = ev.scenario, ev.env, ev.layout.decode
    tpot = _f(ev.decode.step_s) / env.tokens_per_step
    fits = bool(ev.decode.fits[0]) and (ev.prefill is None or bool(ev.prefill.fits[0]))
    side = prefill_side(ev)
    fixed = side.kv_transfer_s + (tpot if side.first_step else 0.0) + side.quantum_s
    seqs = d.instances * ev.layout.decode_attention_dies * d.batch
    tpot_stat = tpot_slo_statistic_s(ev, tpot)
    chunked = not MODES[ev.layout.mode].prefill_pool
    scalars = (sc.slo, sc.workload.input_cv, sc.workload.output_tokens, chunked, sc.workload.output_cv,
               sc.workload.input_cap_sd)
    arrays = {"service_s": np.array([side.service_s]), "servers": np.array([side.servers]),
              "fixed_s": np.array([fixed]), "sequences": np.array([float(seqs)]), "tpot_s": np.array([tpot]),
              "fits": np.array([fits]), "tpot_slo_s": np.array([tpot_stat]),
              "quantum_load_s": np.array([side.quantum_load_s])}
    if chunked:
        limit = tpot_limited_rate_per_s(ev) if tpot_rate_per_s is None else tpot_rate_per_s
        arrays["tpot_rate_per_s"] = np.asarray(d.instances * limit, dtype=float).reshape(1)
    return scalars, arrays


def _goodput_of(scalars: tuple, arrays: dict) -> gp.GoodputArrays:
    slo, input_cv, output_tokens, chunked, output_cv, cap = scalars
    return gp.goodput(slo, input_cv=input_cv, output_tokens=output_tokens, admission=chunked, output_cv=output_cv,
                      input_cap_sd=cap, **arrays)


def layout_goodputs(evs: list[Evaluation]) -> list[GoodputPoint]:
    """:func:`layout_goodput` of each, the goodputs of layouts with the same scenario scalars priced in one
    vector call (elementwise: each is what a call of its own gives)."""
    out: list[GoodputPoint | None] = [None] * len(evs)
    groups: dict[tuple, list[tuple[int, dict]]] = {}
    chunked = [i for i, ev in enumerate(evs) if priced_whole(ev) and not MODES[ev.layout.mode].prefill_pool]
    limits = dict(zip(chunked, tpot_limited_rates_per_s([evs[i] for i in chunked]), strict=True))
    for i, ev in enumerate(evs):
        if not priced_whole(ev):
            out[i] = pool_alone_goodput(ev)
            continue
        scalars, arrays = _goodput_inputs(ev, limits.get(i))
        key = (*scalars, tuple(sorted(arrays)))
        groups.setdefault(key, []).append((i, scalars, arrays))
    for members in groups.values():
        scalars = members[0][1]
        names = list(members[0][2])
        g = _goodput_of(scalars, {n: np.concatenate([m[2][n] for m in members]) for n in names})
        for j, (i, _, _) in enumerate(members):
            cut = slice(j, j + 1)
            one = gp.GoodputArrays(goodput_per_s=g.goodput_per_s[cut], prefill_rate_per_s=g.prefill_rate_per_s[cut],
                                   decode_rate_per_s=g.decode_rate_per_s[cut], binding=g.binding[cut])
            out[i] = layout_goodput(evs[i], one)
    return out  # type: ignore[return-value]


def layout_goodput(ev: Evaluation, priced: gp.GoodputArrays | None = None) -> GoodputPoint:
    """Goodput of the layout (planner.goodput with N = 1), and TTFT and TPOT where it runs there.

    The goodput charges the first decode step at the full batch's TPOT (an upper bound that keeps
    the search separable: it prices every pair that way); TTFT and TPOT are then reported where
    the layout runs at that rate (:func:`load_point`), so ``evaluate --rate <goodput>`` gives the
    same numbers.  ``priced``: its goodput arrays already priced (:func:`layout_goodputs`).
    """
    if not priced_whole(ev):
        return pool_alone_goodput(ev)
    sc, env, d = ev.scenario, ev.env, ev.layout.decode
    slo = sc.slo
    tpot = _f(ev.decode.step_s) / env.tokens_per_step
    fits = bool(ev.decode.fits[0]) and (ev.prefill is None or bool(ev.prefill.fits[0]))
    seqs = d.instances * ev.layout.decode_attention_dies * d.batch
    tpot_stat = tpot_slo_statistic_s(ev, tpot)
    g = priced if priced is not None else _goodput_of(*_goodput_inputs(ev))
    rate, decode_rate = _f(g.goodput_per_s), _f(g.decode_rate_per_s)
    prefill_rate, binding = _f(g.prefill_rate_per_s), gp.BINDING[int(g.binding[0])]
    if not fits:  # name the pool that does not fit; each capacity is its own pool's (0 if it does not fit)
        pre_fits, dec_fits = ev.prefill is None or bool(ev.prefill.fits[0]), bool(ev.decode.fits[0])
        decode_rate = _f(gp.decode_rate_per_s(slo, np.array([float(seqs)]), sc.workload.output_tokens,
                                              np.array([tpot]), np.array([dec_fits]), np.array([tpot_stat])))
        prefill_rate = prefill_rate if pre_fits else 0.0
        pools = [name for name, ok in (("prefill", pre_fits), ("decode", dec_fits)) if not ok]
        binding = f"memory: the {' and '.join(pools)} pool{'s do' if len(pools) > 1 else ' does'} not fit"
    batch_at, tpot_at, ttft, breakdown = float(d.batch), tpot, np.inf, None
    if rate > 0:
        point = load_point(ev, stable_rate(rate, decode_rate))
        if rate < point.decode_saturation_requests_per_s * (1 - 1e-9):  # below the full batch's Little's-law rate
            batch_at, tpot_at = point.decode_batch_per_die, point.tpot_mean_s
        breakdown = next(t for t in point.ttft if t.percentile == slo.ttft_percentile)
        ttft = breakdown.total_s
    out_per_s = rate * sc.workload.output_tokens
    return GoodputPoint(
        goodput_requests_per_s=rate, output_tokens_per_s=out_per_s, output_tokens_per_s_per_die=out_per_s / ev.dies,
        output_tokens_per_s_per_chip=out_per_s / ev.dies * sc.hardware.dies_per_chip, ttft_s=ttft, tpot_s=tpot_at,
        tpot_at_layout_batch_s=tpot, decode_batch_at_goodput=batch_at,
        prefill_capacity_requests_per_s=prefill_rate, decode_capacity_requests_per_s=decode_rate,
        binding_constraint=binding, meets_slo=rate > 0, ttft_breakdown=breakdown)


def _per_die(ev: Evaluation, rate: float) -> dict[str, float]:
    out_per_s = rate * ev.scenario.workload.output_tokens
    return {"output_tokens_per_s": out_per_s, "output_tokens_per_s_per_die": out_per_s / ev.dies,
            "output_tokens_per_s_per_chip": out_per_s / ev.dies * ev.env.hw.dies_per_chip}


def pool_alone_goodput(ev: Evaluation) -> GoodputPoint:
    """A pool priced alone (the other runs elsewhere): its capacity at the SLO it can see.

    A decode pool alone: Little's-law rate at its batch when TPOT meets the SLO (planner.goodput).
    A prefill pool alone: the largest rate whose TTFT percentile *of the prefill part* (waiting +
    prefill, no KV hand-off or first decode step, which belong to the other pool) meets the SLO.
    """
    slo, w = ev.scenario.slo, ev.scenario.workload
    if ev.layout.decode is not None:
        d, env = ev.layout.decode, ev.env
        tpot = _f(ev.decode.step_s) / env.tokens_per_step
        fits = bool(ev.decode.fits[0])
        seqs = float(d.instances * ev.layout.decode_attention_dies * d.batch)
        tpot_stat = tpot_slo_statistic_s(ev, tpot)
        rate = _f(gp.decode_rate_per_s(slo, np.array([seqs]), w.output_tokens, np.array([tpot]), np.array([fits]),
                                       np.array([tpot_stat])))
        binding = ("memory: the decode pool does not fit" if not fits else
                   "tpot" if tpot_stat > slo.tpot_s else "decode alone (batch x tpot)")
        return GoodputPoint(goodput_requests_per_s=rate, **_per_die(ev, rate), ttft_s=None, tpot_s=tpot,
                            tpot_at_layout_batch_s=tpot, decode_batch_at_goodput=float(d.batch),
                            prefill_capacity_requests_per_s=None, decode_capacity_requests_per_s=rate,
                            binding_constraint=binding, meets_slo=rate > 0, ttft_breakdown=None)
    side = prefill_side(ev)
    service, servers = side.service_s, side.servers
    fits = bool(ev.prefill.fits[0])
    rate = _f(gp.ttft_limited_rate_per_s(slo, w.input_cv, np.array([service]), np.array([servers]),
                                         np.array([side.quantum_s]), None, w.input_cap_sd,
                                         np.array([side.quantum_load_s])))
    rate = rate if fits else 0.0
    binding = ("memory: the prefill pool does not fit" if not fits else
               "ttft" if rate <= 0 else "prefill alone (ttft: waiting + prefill)")
    breakdown = None
    if rate > 0:
        total, prefill = (_f(x) for x in gp.ttft_parts_s(slo.ttft_percentile / 100.0, w.input_cv, rate, service,
                                                          servers, side.quantum_s, w.input_cv,
                                                          input_cap_sd=w.input_cap_sd,
                                                          quantum_load_s=side.quantum_load_s))
        boundary = _f(gp.prefill_quantum_s(side.quantum_s, side.quantum_load_s, rate, np.array([service]),
                                           np.array([servers])))
        breakdown = TtftBreakdown(percentile=slo.ttft_percentile, queueing_s=total - boundary - prefill,
                                  prefill_s=prefill, step_boundary_s=boundary,
                                  kv_transfer_s=0.0, first_decode_step_s=0.0, total_s=total)
    return GoodputPoint(goodput_requests_per_s=rate, **_per_die(ev, rate),
                        ttft_s=breakdown.total_s if breakdown else None, tpot_s=None, tpot_at_layout_batch_s=None,
                        decode_batch_at_goodput=None, prefill_capacity_requests_per_s=rate,
                        decode_capacity_requests_per_s=None, binding_constraint=binding, meets_slo=rate > 0,
                        ttft_breakdown=breakdown)


def _f(x: np.ndarray | float) -> float:
    return float(np.asarray(x).reshape(-1)[0])


# Arrival rates a load curve is drawn at, spread from 0 to the first pool's saturation.
LOAD_CURVE_POINTS = 40


def load_curve(ev: Evaluation, points: int = LOAD_CURVE_POINTS) -> tuple[LoadPoint, ...]:
    """The layout at ``points`` arrival rates from 0 up to just below the rate where a pool saturates."""
    edge = load_point(ev, 0.0)
    saturation = min(edge.prefill_saturation_requests_per_s, edge.decode_saturation_requests_per_s)
    rates = saturation * np.linspace(0.0, 1.0, points + 1)[1:] * (1 - 1e-3)
    return tuple(load_point(ev, float(r)) for r in rates)
