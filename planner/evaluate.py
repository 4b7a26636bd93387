"""Price one written-down layout: step times, throughput per pool, memory, breakdown.

``evaluate`` runs the vectorized step-time models with one candidate (N = 1) — the same code
the search runs on millions — and turns the result into plain numbers for reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner import goodput as gp
from planner import queueing
from planner.errors import LayoutError
from planner.inputs.layout import Layout, check_layout
from planner.inputs.scenario import Scenario
from planner.modes import MODES
from planner.modes.base import prefill_arrays
from planner.serving.context import Env
from planner.serving.prefill import prefill_step
from planner.serving.result import PoolStep


def decode_knobs(layout: Layout) -> dict[str, float]:
    """The layout's decode-pool knobs (layout keys), for the mode's step model with N = 1."""
    return {k: float(getattr(layout.decode, k)) for k in MODES[layout.mode].decode_keys}


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """Result of pricing one layout under one scenario."""

    scenario: Scenario
    layout: Layout
    prefill: PoolStep | None
    decode: PoolStep
    env: Env

    @property
    def dies(self) -> int:
        return self.layout.dies

    @property
    def chips(self) -> float:
        return self.layout.dies / self.scenario.hardware.dies_per_chip


def evaluate(layout: Layout, scenario: Scenario, where: str = "layout") -> Evaluation:
    """Price ``layout`` under ``scenario``; impossible layouts raise LayoutError (exit 2)."""
    check_layout(layout, scenario.model, where)
    if layout.dies > scenario.hardware.num_dies:
        raise LayoutError(f"uses {layout.dies} dies but {scenario.hardware.name} has {scenario.hardware.num_dies}",
                          where=where, fix="use fewer instances or dies")
    env = Env.of(scenario)
    prefill = prefill_step(env, prefill_arrays(layout.prefill.model_dump())) if layout.prefill is not None else None
    decode = MODES[layout.mode].price(env, decode_knobs(layout))
    return Evaluation(scenario=scenario, layout=layout, prefill=prefill, decode=decode, env=env)


# ----------------------------------------------------------------------------- goodput of one layout


@dataclass(frozen=True, slots=True, kw_only=True)
class GoodputPoint:
    """A layout at its goodput: the rate, TTFT and TPOT there, the two capacities, what binds."""

    goodput_requests_per_s: float
    output_tokens_per_s: float
    output_tokens_per_s_per_die: float
    output_tokens_per_s_per_chip: float
    ttft_s: float
    tpot_s: float
    tpot_at_layout_batch_s: float
    decode_batch_at_goodput: float
    prefill_capacity_requests_per_s: float
    decode_capacity_requests_per_s: float
    binding_constraint: str
    meets_slo: bool


def prefill_side(ev: Evaluation, tpot_s: float) -> tuple[float, float, float]:
    """(service time, servers, fixed TTFT part) of the layout's prefill side."""
    env, lay = ev.env, ev.layout
    if not MODES[lay.mode].prefill_pool:
        d = lay.decode
        slots, forwards = gp.request_slots(d.tp, d.prefill_chunk_tokens, env.new_input_tokens,  # type: ignore
                                           d.dies_per_instance / d.tp)
        return float(forwards[()] * _f(ev.decode.step_s)), float(slots[()] * d.instances), 0.0
    p = lay.prefill
    assert p is not None and ev.prefill is not None
    slots, forwards = gp.request_slots(p.tp, p.batch_tokens, env.new_input_tokens, p.dies / p.tp)
    kv = gp.kv_handoff_s(ev.scenario.hardware, env.model, env.by, input_tokens=env.input_tokens, prefill_tp=p.tp,
                         decode_tp=lay.decode.tp, layout_dies=lay.dies, p2p_s=env.calls.p2p_s)
    return float(forwards[()] * _f(ev.prefill.step_s)), float(slots[()] * p.instances), _f(kv) + tpot_s


# Batch points of the TPOT(b) curve the decode fixed point is solved on (one vector call).
TPOT_CURVE_POINTS = 16


def _tpot_curve(ev: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """TPOT at batches 1..b of the layout's decode pool (other knobs fixed), priced in one vector call."""
    b = float(ev.layout.decode.batch)
    grid = np.unique(np.concatenate([np.linspace(0.0, b, TPOT_CURVE_POINTS)[1:], [b]]))
    knobs = {k: np.full(len(grid), v) for k, v in decode_knobs(ev.layout).items()}
    knobs["batch"] = grid
    step = MODES[ev.layout.mode].price(ev.env, knobs)
    return np.concatenate([[0.0], grid]), np.concatenate([[step.step_s[0]], step.step_s]) / ev.env.tokens_per_step


def decode_operating_point(ev: Evaluation, rate_per_s: float) -> tuple[float, float]:
    """(sequences per attention die, TPOT) where the decode pool settles at ``rate_per_s``.

    Little's law under continuous batching, ``b = lambda_inst * output * TPOT(b) / A``, solved as
    the smallest fixed point under the layout's batch (planner.queueing.fixed_point_on_curve) on
    the TPOT(b) curve of the pool, priced at ``TPOT_CURVE_POINTS`` batches in one vector call.
    """
    d = ev.layout.decode
    batches, tpots = _tpot_curve(ev)
    return queueing.fixed_point_on_curve(batches, tpots, rate_per_s / d.instances,
                                         ev.scenario.workload.output_tokens, float(ev.layout.decode_attention_dies))


def layout_goodput(ev: Evaluation) -> GoodputPoint:
    """Goodput of the layout (planner.goodput with N = 1), and TTFT and TPOT where it runs there."""
    sc, env, d = ev.scenario, ev.env, ev.layout.decode
    slo = sc.slo
    tpot = _f(ev.decode.step_s) / env.tokens_per_step
    fits = bool(ev.decode.fits[0]) and (ev.prefill is None or bool(ev.prefill.fits[0]))
    service, servers, fixed = prefill_side(ev, tpot)
    seqs = d.instances * ev.layout.decode_attention_dies * d.batch
    g = gp.goodput(slo, input_cv=sc.workload.input_cv, output_tokens=sc.workload.output_tokens,
                   service_s=np.array([service]), servers=np.array([servers]), fixed_s=np.array([fixed]),
                   sequences=np.array([float(seqs)]), tpot_s=np.array([tpot]), fits=np.array([fits]))
    rate, decode_rate = _f(g.goodput_per_s), _f(g.decode_rate_per_s)
    batch_at, tpot_at = float(d.batch), tpot
    if 0 < rate < decode_rate * (1 - 1e-9):
        batch_at, tpot_at = decode_operating_point(ev, rate)
    ttft = _f(gp.ttft_s(slo, sc.workload.input_cv, np.array([rate]), service, servers, fixed)) if rate > 0 else np.inf
    out_per_s = rate * sc.workload.output_tokens
    return GoodputPoint(
        goodput_requests_per_s=rate, output_tokens_per_s=out_per_s, output_tokens_per_s_per_die=out_per_s / ev.dies,
        output_tokens_per_s_per_chip=out_per_s / ev.dies * sc.hardware.dies_per_chip, ttft_s=ttft, tpot_s=tpot_at,
        tpot_at_layout_batch_s=tpot, decode_batch_at_goodput=batch_at,
        prefill_capacity_requests_per_s=_f(g.prefill_rate_per_s), decode_capacity_requests_per_s=decode_rate,
        binding_constraint=gp.BINDING[int(g.binding[0])], meets_slo=rate > 0)


def _f(x: np.ndarray | float) -> float:
    return float(np.asarray(x).reshape(-1)[0])
