"""One layout priced under S variants of its hardware parameters, in one vector call per pool.

The step models take arrays of knobs (N candidates); here the N elements are S samples x G
batches of one layout, and the sampled hardware parameters are (S x G,) arrays in the places
the models read scalars (planner.cost.roofline.Device, planner.xccl.CallCosts, each fabric's
efficiency), so every element is priced with its own sample.  A property test checks that this
agrees with pricing each sample alone through ``planner evaluate`` (N = 1).

Goodput under a sample
    The layout as written, except that a sample whose TPOT at the layout's batch misses the SLO
    runs at the largest batch on the decode pool's TPOT curve that meets it (an operator lowers
    the batch cap; without it such a sample would read 0 req/s).  Then planner.goodput.goodput,
    exactly as planner.evaluate.layout_goodput prices the layout at its batch.  Chunked prefill
    (collocated) keeps the layout's batch: its TPOT is checked at the occupancy the slot wait keeps
    (planner.goodput.OccupancyCurve, on each sample's curve), as layout_goodput does.
TTFT and TPOT at a rate
    At an arrival rate (the point estimate's goodput, for bands): the decode pool settles at its
    Little's-law batch on the sample's TPOT curve (planner.queueing.fixed_point_on_curve), TTFT at
    the SLO percentile = M/G/c waiting quantile + prefill + KV hand-off + first decode step, as
    planner.evaluate.load_point; a pool the rate saturates makes TTFT infinite.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from planner import goodput as gp
from planner import queueing
from planner.cost.roofline import Array
from planner.errors import LayoutError
from planner.evaluate import StepMemo, curve_batches, decode_knobs, memoized, place_layout
from planner.inputs.hardware import HardwareSpec
from planner.inputs.layout import Layout
from planner.inputs.scenario import Scenario
from planner.modes import MODES
from planner.modes.base import chunk_terms, prefill_arrays
from planner.modes.collocated import synchronised_groups
from planner.serving.context import Env
from planner.serving.prefill import prefill_step
from planner.units import Dtype

Values = Mapping[str, Array | float]

# HardwareSpec attributes behind the dotted profile paths a variant may set.
_SECTIONS = {"efficiency.gemm": "gemm_efficiency", "efficiency.attention": "attention_efficiency",
             "efficiency.memory": "memory_efficiency", "overheads": "overheads", "collectives": "collectives",
             "peak": "peaks", "memory": "memory"}


def hardware_with(hw: HardwareSpec, values: Values) -> HardwareSpec:
    """``hw`` with profile parameters (dotted paths) replaced by floats or arrays, not re-validated.

    Paths as planner.ops.calibration.with_params: ``efficiency.gemm.max_frac``,
    ``efficiency.gemm.by_dtype.fp4.memory_frac`` (a dtype table the profile has),
    ``fabrics.ub.efficiency.max_frac``, ``fabrics.ub.bandwidth_bytes_per_s``,
    ``fabrics.nvlink.in_switch_reduction.max_frac`` (a fabric that has one), ``peak.bf16_flops_per_s``.
    Peaks must stay floats (the dtype checks read them as scalars).
    """
    changes: dict[str, dict[str, object]] = {}
    fabrics = {f.name: (f, {}, {}, {}) for f in hw.fabrics}  # (fabric, own fields, efficiency, in-switch reduction)
    by_dtype: dict[Dtype, dict[str, object]] = {}
    for path, value in values.items():
        head, _, name = path.rpartition(".")
        if head.startswith("efficiency.gemm.by_dtype."):  # efficiency.gemm.by_dtype.fp4.max_frac
            by_dtype.setdefault(Dtype(head.rpartition(".")[2]), {})[name] = value
        elif head.startswith("fabrics."):
            fabric = head.split(".")[1]
            part = 2 if head.endswith(".efficiency") else 3 if head.endswith(".in_switch_reduction") else 1
            fabrics[fabric][part][name] = value
        else:
            changes.setdefault(_SECTIONS[head], {})[name] = value
    if by_dtype:
        own = hw.gemm_efficiency.by_dtype
        changes.setdefault("gemm_efficiency", {})["by_dtype"] = {
            **own, **{d: dataclasses.replace(own[d], **fields) for d, fields in by_dtype.items()}}
    update = {attr: dataclasses.replace(getattr(hw, attr), **fields) for attr, fields in changes.items()}
    if any(own or eff or isr for _, own, eff, isr in fabrics.values()):
        update["fabrics"] = tuple(
            dataclasses.replace(f, **own, efficiency=dataclasses.replace(f.efficiency, **eff),
                                in_switch_reduction=dataclasses.replace(f.in_switch_reduction, **isr) if isr
                                else f.in_switch_reduction)
            for f, own, eff, isr in fabrics.values())
    return dataclasses.replace(hw, **update)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcomes:
    """One layout under S samples, arrays (S,).

    ``decode_batch`` is the batch per attention die the goodput is priced at (the layout's, or
    lowered to meet TPOT; 0 when no batch does); ``ttft_s``/``tpot_s`` are at the given rate
    (TTFT at the SLO percentile, inf when a pool saturates; TPOT the mean), NaN without a rate.
    """

    goodput_requests_per_s: Array
    decode_batch: Array
    decode_step_s: Array
    prefill_step_s: Array
    ttft_s: Array
    tpot_s: Array


def _samples(values: Values) -> int:
    sizes = {np.size(v) for v in values.values() if np.ndim(v)}
    if len(sizes) > 1:
        raise ValueError(f"sample arrays of different lengths: {sorted(sizes)}")
    return sizes.pop() if sizes else 1


def _env(scenario: Scenario, values: Values, repeat: int) -> Env:
    tiled = {k: np.repeat(v, repeat) if np.ndim(v) else v for k, v in values.items()}
    return Env.of(dataclasses.replace(scenario, hardware=hardware_with(scenario.hardware, tiled)))


@dataclass(frozen=True, slots=True, kw_only=True)
class _Curve:
    """The decode pool's TPOT on the batch grid per sample, (S, G), and whether each point fits."""

    batches: np.ndarray  # (G,)
    tpot_s: np.ndarray   # (S, G)
    step_s: np.ndarray   # (S, G)
    fits: np.ndarray     # (S, G)
    chunk_step_s: np.ndarray  # (S, G): a step carrying a prefill chunk (chunked prefill; else the step)
    plain_step_s: np.ndarray  # (S, G): a step without a chunk (chunked prefill; else the step)
    tpot_slo_s: np.ndarray    # (S, G): the TPOT statistic the SLO bounds (planner.goodput.tpot_slo_statistic_s)
    occupancy: gp.OccupancyCurve | None  # chunked prefill: each sample's curve (planner.evaluate.occupancy_curve)


def _decode_curve(layout: Layout, scenario: Scenario, values: Values, samples: int) -> tuple[_Curve, Env]:
    grid_b = curve_batches(layout)
    env = _env(scenario, values, len(grid_b))
    knobs = _curve_knobs(layout, grid_b, samples)
    return _curve(layout, scenario, env, MODES[layout.mode].price(env, knobs), knobs, grid_b, samples), env


def _curve_knobs(layout: Layout, grid_b: np.ndarray, samples: int) -> dict[str, np.ndarray]:
    """The decode pool's knobs on rows (sample, batch of the grid), sample-major, (S G,) each."""
    knobs = {k: np.full(samples * len(grid_b), v) for k, v in decode_knobs(layout).items()}
    knobs["batch"] = np.tile(grid_b, samples)
    return knobs


def price_decode_curves(items: list[tuple[Layout, Scenario]], values: Values, memo: OutcomeMemo) -> None:
    """:func:`_decode_curve` of many layouts' decode pools into ``memo`` ahead of :func:`layout_outcomes`: the
    pools not priced yet, in one vector call per (scenario, mode, shared-expert replicas placed or not), each
    layout's rows (sample, batch) after the other's with their own sample values, instead of one call each.

    Every row is priced on its own (per-row hardware is never grouped: Env.per_row), so each layout's rows are
    those of its own call (tests/decide/test_price_decode_curves.py); its curve keeps an Env of its own.
    Bands of a default plan: 16 calls -> 4.
    """
    samples = _samples(values)
    groups: dict[tuple, tuple[Scenario, dict[tuple, Layout]]] = {}
    for layout, scenario in items:
        key = ("decode", *_pool_key(layout, scenario))
        if key not in memo and supported(layout, scenario):
            knobs = decode_knobs(layout)
            shape = (id(scenario), layout.mode, knobs.get("shared_expert_replicas", 0.0) > 0, knobs.get("pp", 0.0) > 1)
            groups.setdefault(shape, (scenario, {}))[1].setdefault(key, layout)
    for scenario, members in groups.values():
        if len(members) < 2:
            continue
        layouts = list(members.values())
        grids = [curve_batches(layout) for layout in layouts]
        tiled = {k: np.concatenate([np.repeat(v, len(g)) for g in grids]) if np.ndim(v) else v
                 for k, v in values.items()}
        env = Env.of(dataclasses.replace(scenario, hardware=hardware_with(scenario.hardware, tiled)))
        parts = [_curve_knobs(layout, g, samples) for layout, g in zip(layouts, grids, strict=True)]
        step = MODES[layouts[0].mode].price(env, {k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
        lo, total = 0, samples * sum(len(g) for g in grids)
        for key, layout, g, knobs in zip(members, layouts, grids, parts, strict=True):
            own, hi = _env(scenario, values, len(g)), lo + samples * len(g)
            memo[key] = (scenario, (_curve(layout, scenario, own, step.part(lo, hi, total), knobs, g, samples), own))
            lo = hi


def _curve(layout: Layout, scenario: Scenario, env: Env, step: Any, knobs: dict[str, np.ndarray], grid_b: np.ndarray,
           samples: int) -> _Curve:
    """The decode pool's curve from its step priced on :func:`_curve_knobs` rows under ``env``."""
    g = len(grid_b)
    shape = (samples, g)

    def grid(a: np.ndarray) -> np.ndarray:
        return np.broadcast_to(a, (samples * g,)).reshape(shape)

    step_s = grid(step.step_s)
    tpot = step_s / env.tokens_per_step
    chunk = chunk_terms(env, step, knobs)
    stat = gp.tpot_slo_statistic_s(scenario.slo, tpot_s=tpot.reshape(-1), output_tokens=scenario.workload.output_tokens,
                                   draft_tokens=env.draft_tokens, acceptance=scenario.mtp.acceptance, chunk=chunk)
    occupancy = None
    if step.chunk_step_s is not None:  # as planner.evaluate.occupancy_curve, one row per sample
        d, k = layout.decode, decode_knobs(layout)

        def at_zero(a: np.ndarray) -> np.ndarray:
            return np.concatenate([a[:, :1], a], axis=1)

        def each(x: float) -> np.ndarray:
            return np.full(samples, float(x))

        occupancy = gp.OccupancyCurve(
            batches=np.broadcast_to(np.concatenate([[0.0], grid_b]), (samples, g + 1)), step_s=at_zero(step_s),
            plain_step_s=at_zero(grid(step.plain_step_s)), chunk_step_s=at_zero(grid(step.chunk_step_s)),
            cap=each(d.batch), attention_dies=each(layout.decode_attention_dies), tp=each(k["tp"]),
            chunk_tokens=each(k["prefill_chunk_tokens"]),
            groups=np.broadcast_to(synchronised_groups(env, k["dies"], k["tp"], k.get("pp")), (samples,)).astype(float),
            new_tokens=env.new_input_tokens, output_tokens=env.output_tokens, tokens_per_step=env.tokens_per_step,
            draft_tokens=env.draft_tokens, acceptance=scenario.mtp.acceptance)
    return _Curve(batches=grid_b, tpot_s=tpot, step_s=step_s, fits=grid(step.fits),
                  chunk_step_s=step_s if step.chunk_step_s is None else grid(step.chunk_step_s),
                  plain_step_s=step_s if step.plain_step_s is None else grid(step.plain_step_s),
                  tpot_slo_s=stat.reshape(shape), occupancy=occupancy)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Prefill:
    """The prefill side per sample (S,), or per sample and batch (S, G) in chunked modes."""

    step_s: np.ndarray
    service_s: np.ndarray
    servers: float
    kv_s: np.ndarray
    fits: np.ndarray
    first_step: bool
    quantum_s: np.ndarray  # the quantum at zero load, as service_s (planner.goodput.prefill_queue)
    quantum_load_s: np.ndarray  # its part growing with the prefill stream's utilization, as service_s


def _prefill(layout: Layout, scenario: Scenario, values: Values, samples: int, curve: _Curve,
             env_d: Env, memo: OutcomeMemo | None = None) -> _Prefill:
    """As planner.evaluate.prefill_side, per sample (and per decode batch in chunked modes)."""
    d = layout.decode
    if not MODES[layout.mode].prefill_pool:
        service, slots, quantum, load = gp.prefill_queue(d.tp, d.prefill_chunk_tokens,  # type: ignore
                                                         env_d.new_input_tokens, d.dies_per_instance / d.tp,
                                                         curve.chunk_step_s, curve.plain_step_s)
        return _Prefill(step_s=np.full(samples, np.nan), service_s=service,
                        servers=float(np.asarray(slots).reshape(-1)[0] * d.instances), kv_s=np.zeros((samples, 1)),
                        fits=np.ones((samples, 1), dtype=bool), first_step=False, quantum_s=quantum,
                        quantum_load_s=load)
    p = layout.prefill
    assert p is not None
    env, step = _prefill_step(layout, scenario, values, samples, memo)
    step_s = np.broadcast_to(step.step_s, (samples,))
    service, slots, quantum, load = gp.prefill_queue(p.tp, p.batch_tokens, env.new_input_tokens, p.dies / p.tp,
                                                     step_s)
    same_pod = place_layout(layout, scenario).same_pod
    kv = gp.kv_handoff_s(env.hw, env.model, env.by, input_tokens=env.input_tokens, prefill_tp=p.tp,
                         decode_tp=d.tp, same_pod=same_pod, p2p_s=env.calls.p2p_s, prefill_pp=p.stages,
                         decode_pp=d.stages)
    return _Prefill(step_s=step_s, service_s=service[:, None],
                    servers=float(np.asarray(slots).reshape(-1)[0] * p.instances),
                    kv_s=np.broadcast_to(kv, (samples,))[:, None],
                    fits=np.broadcast_to(step.fits, (samples,))[:, None], first_step=True, quantum_s=quantum[:, None],
                    quantum_load_s=load[:, None])


def _goodput(layout: Layout, scenario: Scenario, curve: _Curve, pre: _Prefill) -> tuple[Array, dict[str, Any]]:
    """(index of the batch the goodput is priced at, -1 when none meets TPOT, (S,); the planner.goodput.goodput
    arguments there, (S,) arrays and the scenario's scalars).

    The batch: the largest on the curve whose TPOT statistic meets the SLO and that fits; the goodput is
    then one vector call over the samples (:func:`outcomes_of`: over the layouts too).
    """
    sc, d = scenario, layout.decode
    s, g = curve.tpot_s.shape
    rows = np.arange(s)
    fits = curve.fits & pre.fits
    occ = curve.occupancy
    if occ is None:
        ok = fits & (curve.tpot_slo_s <= sc.slo.tpot_s)
        last = np.where(ok.any(axis=1), g - 1 - np.argmax(ok[:, ::-1], axis=1), -1)
        limit = None
    else:  # chunked prefill: the layout's batch, TPOT at the occupancy served (as planner.evaluate.layout_goodput)
        last = np.where(fits[:, -1], g - 1, -1)
        limit = d.instances * np.where(fits[:, -1], occ.rate_per_s(occ.tpot_limited_batch(sc.slo)), 0.0)
    k = np.maximum(last, 0)

    def at(a: np.ndarray) -> np.ndarray:  # (S,) value at each sample's batch
        return np.broadcast_to(a, (s, g))[rows, k]

    tpot = at(curve.tpot_s)
    return last, dict(slo=sc.slo, input_cv=sc.workload.input_cv, output_tokens=sc.workload.output_tokens,
                      service_s=at(pre.service_s), servers=np.full(s, pre.servers),
                      fixed_s=at(pre.kv_s) + (tpot if pre.first_step else 0.0) + at(pre.quantum_s),
                      sequences=d.instances * layout.decode_attention_dies * curve.batches[k], tpot_s=tpot,
                      fits=at(fits), tpot_slo_s=at(curve.tpot_slo_s), admission=not MODES[layout.mode].prefill_pool,
                      output_cv=sc.workload.output_cv, tpot_rate_per_s=limit, quantum_load_s=at(pre.quantum_load_s),
                      input_cap_sd=sc.workload.input_cap_sd)


def _goodputs(calls: list[dict[str, Any]]) -> list[Array]:
    """``planner.goodput.goodput(**call).goodput_per_s`` of each, the calls with the same scalars as one vector
    call (elementwise over rows: each is what its own call gives)."""
    groups: dict[tuple, list[int]] = {}
    for i, call in enumerate(calls):
        key = tuple((k, True, None) if np.ndim(v) else (k, False, v) for k, v in call.items())  # arrays: any values
        groups.setdefault(key, []).append(i)
    out: list[Array] = [np.zeros(0)] * len(calls)
    for members in groups.values():
        first = calls[members[0]]
        args = {k: np.concatenate([calls[i][k] for i in members]) if np.ndim(v) else v for k, v in first.items()}
        rate = gp.goodput(**args).goodput_per_s
        lo = 0
        for i in members:
            n = len(calls[i]["tpot_s"])
            out[i], lo = rate[lo:lo + n], lo + n
    return out


def _at_rate(layout: Layout, scenario: Scenario, curve: _Curve, pre: _Prefill, last: Array,
             rate_per_s: float) -> tuple[Array, Array]:
    """TTFT at the SLO percentile and mean TPOT at ``rate_per_s``, (S,) each (planner.evaluate.load_point).

    Vectorized over the samples but for the decode fixed point (planner.queueing.fixed_point_on_curve
    is scalar), solved only for the samples whose pool settles below its batch.
    """
    sc, d = scenario, layout.decode
    w = sc.workload
    s, g = curve.tpot_s.shape
    rows, has = np.arange(s), last >= 0
    k = np.maximum(last, 0)
    service = np.broadcast_to(pre.service_s, (s, g))[rows, k]
    quantum = np.broadcast_to(pre.quantum_s, (s, g))[rows, k]
    quantum_load = np.broadcast_to(pre.quantum_load_s, (s, g))[rows, k]
    kv = pre.kv_s[:, 0]
    dies = float(layout.decode_attention_dies)
    tpot_full = curve.tpot_s[rows, k]
    chunked = not MODES[layout.mode].prefill_pool
    full_batch = d.instances * dies * curve.batches[k] / (w.output_tokens * tpot_full)
    # chunked prefill: a slot is also held through its prompt's prefill (planner.goodput.slot_residence_s)
    decode_sat = (d.instances * dies * curve.batches[k] / gp.slot_residence_s(w.output_tokens, tpot_full, service)
                  if chunked else full_batch)
    prefill_sat = pre.servers / service
    # within rounding of the decode capacity a pool runs at it (as layout_goodput prices its goodput)
    near = rate_per_s <= decode_sat * (1 + 1e-6)
    rate = np.where(near, np.minimum(rate_per_s, decode_sat * (1 - 1e-9)), rate_per_s)
    queued = has & near & (rate < prefill_sat)
    to_decode = np.minimum(rate, prefill_sat)
    tpot = np.where(~has, np.inf, np.where(to_decode <= 0, curve.tpot_s[:, 0],
                                           np.where(to_decode >= full_batch * (1 - 1e-9), tpot_full, np.nan)))
    for i in np.flatnonzero(np.isnan(tpot)):  # the fixed point of each sample's curve (scalar solver)
        batches = np.concatenate([[0.0], curve.batches[:k[i] + 1]])
        tpots = np.concatenate([[curve.tpot_s[i, 0]], curve.tpot_s[i, :k[i] + 1]])
        tpot[i] = queueing.fixed_point_on_curve(batches, tpots, to_decode[i] / d.instances, w.output_tokens, dies)[1]
    ttft = np.full(s, np.inf)
    if queued.any():
        fixed = kv[queued] + (tpot[queued] if pre.first_step else 0.0) + quantum[queued]
        # chunked: and the wait for a batch slot (planner.goodput)
        ttft[queued] = gp.ttft_parts_s(sc.slo.ttft_percentile / 100.0, w.input_cv, rate[queued], service[queued],
                                       np.full(int(queued.sum()), pre.servers), fixed, w.input_cv,
                                       sequences=d.instances * dies * curve.batches[k][queued] if chunked else None,
                                       residence_s=gp.slot_residence_s(w.output_tokens, tpot_full[queued],
                                                                       service[queued]) if chunked else None,
                                       residence_cv=w.output_cv, input_cap_sd=w.input_cap_sd,
                                       quantum_load_s=quantum_load[queued])[0]
    return ttft, tpot


def supported(layout: Layout, scenario: Scenario) -> bool:
    """Both pools written down (or a chunked-prefill mode), all on the scenario's hardware.

    A pool priced alone has no end-to-end goodput; a pool on its own hardware would need that
    profile's samples (not modelled here).
    """
    pools = [pool for pool in (layout.prefill, layout.decode) if pool is not None]
    own = all(getattr(pool, "hardware", None) in (None, scenario.hardware.name) for pool in pools)
    whole = layout.decode is not None and (layout.prefill is not None or not MODES[layout.mode].prefill_pool)
    return own and whole and scenario.prefill_hardware is None


# Pools already priced under one set of samples (planner.decide.bands prices ~18 listed layouts, which share
# decode and prefill pools at other instance counts): key -> (scenario kept alive, value); the lookup is
# planner.evaluate.memoized.
OutcomeMemo = StepMemo


def _pool_key(layout: Layout, scenario: Scenario) -> tuple:
    """The decode pool's identity for :func:`_decode_curve`: scenario object, mode, knobs (no instance count)."""
    return (id(scenario), layout.mode, tuple(sorted(decode_knobs(layout).items())))


def _prefill_step(layout: Layout, scenario: Scenario, values: Values, samples: int,
                  memo: OutcomeMemo | None) -> tuple[Env, Any]:
    """The prefill pool's Env and step under each sample (the part of :func:`_prefill` without the hand-off)."""
    p = layout.prefill
    assert p is not None
    knobs = {k: float(v) for k, v in p.model_dump().items() if isinstance(v, int | float) and k != "instances"}

    def build() -> tuple[Env, Any]:
        env = _env(scenario, values, 1)
        return env, prefill_step(env, prefill_arrays({k: np.full(samples, v) for k, v in knobs.items()}))

    return memoized(memo, ("prefill", id(scenario), tuple(sorted(knobs.items()))), scenario, build)


def layout_outcomes(layout: Layout, scenario: Scenario, values: Values | None = None,
                    rate_per_s: float | None = None, memo: OutcomeMemo | None = None) -> Outcomes:
    """Goodput, step times, TTFT and TPOT of ``layout`` under each sample of ``values``, (S,).

    Parameters
    ----------
    layout : a valid layout (planner.inputs.layout.check_layout passed)
    scenario : the scenario it is priced under (for a planned layout: its own [scenario])
    values : profile parameters by dotted path, each a float or an (S,) array of samples
    rate_per_s : arrival rate (req/s) for TTFT and TPOT; None leaves them NaN
    memo : shared by calls with the same ``values`` (and unchanged scenario objects): a decode pool's curve
        and a prefill pool's step priced by an earlier call are reused (pure functions of the scenario, the
        samples and the pool's knobs; the instance counts enter only after them)

    A layout :func:`supported` refuses is a LayoutError (exit 2).
    """
    return outcomes_of([(layout, scenario, rate_per_s)], values, memo)[0]


def outcomes_of(items: list[tuple[Layout, Scenario, float | None]], values: Values | None = None,
                memo: OutcomeMemo | None = None) -> list[Outcomes]:
    """:func:`layout_outcomes` of each ``(layout, scenario, rate_per_s)`` under the same samples: the decode
    curves priced together (:func:`price_decode_curves`) and the goodputs of layouts with the same scenario
    scalars in one vector call; each the floats of its own call (tests/decide/test_price_decode_curves.py)."""
    for layout, scenario, _ in items:
        if not supported(layout, scenario):
            raise LayoutError("has a pool priced alone or on other hardware than the scenario's: bands and "
                              "sensitivity need both pools on one profile", where="layout",
                              fix="write both pools, on the scenario's hardware")
    values = dict(values or {})
    samples = _samples(values)
    memo = {} if memo is None else memo
    price_decode_curves([(layout, scenario) for layout, scenario, _ in items], values, memo)
    staged = []
    for layout, scenario, _ in items:
        curve, env = memoized(memo, ("decode", *_pool_key(layout, scenario)), scenario,
                              lambda: _decode_curve(layout, scenario, values, samples))  # noqa: B023 (called here)
        pre = _prefill(layout, scenario, values, samples, curve, env, memo)
        staged.append((curve, pre, *_goodput(layout, scenario, curve, pre)))
    rates = _goodputs([call for _, _, _, call in staged])
    out = []
    for (layout, scenario, rate_per_s), (curve, pre, last, _), rate in zip(items, staged, rates, strict=True):
        batch = np.where(last >= 0, curve.batches[np.maximum(last, 0)], 0.0)
        if rate_per_s is None:
            ttft = tpot = np.full(samples, np.nan)
        else:
            ttft, tpot = _at_rate(layout, scenario, curve, pre, last, rate_per_s)
        out.append(Outcomes(goodput_requests_per_s=np.where(last >= 0, rate, 0.0), decode_batch=batch,
                            decode_step_s=curve.step_s[:, -1].copy(),
                            prefill_step_s=np.asarray(pre.step_s, dtype=float).copy(), ttft_s=ttft, tpot_s=tpot))
    return out
