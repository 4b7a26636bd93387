"""Goodput of one evaluated layout under the scenario's SLOs (the search-layer mapping).

Prefill pools are M/G/c queues: an instance offers request slots whose service time is its
forward time (planner.search.score); TTFT at the percentile = waiting quantile + service + KV
hand-off + first decode step.  Decode pools run continuous batching at the layout's batch per
attention die; by Little's law they sustain ``A * b / (output_tokens * TPOT(b))`` requests per
second when TPOT meets the SLO and the batch fits.  Collocated instances serve prefill chunks
(``ceil(new_tokens / (tp * chunk))`` steps per request) and decode in the same steps.

The goodput is the largest arrival rate meeting both SLOs: ``min(prefill rate, decode rate)``.
``planner evaluate`` and ``planner plan`` report the numbers of this one function.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from planner import queueing
from planner.cost.memory import kv_bytes_per_sequence
from planner.evaluate import Evaluation
from planner.spec.layout import Mode
from planner.xccl import kv_transfer_s

# Bisection steps on the utilization: 2**-40 ~ 1e-12, far below any other error in the model.
BISECTION_STEPS = 40


def _first(x: Any) -> float:
    return float(np.asarray(x).reshape(-1)[0])


def slots_and_service(tp: float, tokens_per_die: float, new_tokens: float, step_s: float,
                      groups: float) -> tuple[float, float]:
    """Request slots of one instance and the service time of one request (seconds)."""
    k = tp * tokens_per_die / new_tokens
    if k >= 1:
        return groups * np.floor(k), step_s
    return groups, step_s * np.ceil(1.0 / k)


def kv_handoff_s(ev: Evaluation) -> float:
    """Prefill -> decode KV transfer of one request (not overlapped with prefill: adds to TTFT)."""
    env = ev.env
    tp_p = float(ev.layout.prefill.tp) if ev.layout.prefill else 1.0
    links = min(tp_p, float(ev.layout.decode.tp))
    kv = kv_bytes_per_sequence(env.model, env.by, context=np.array([env.input_tokens]), tp=np.array([1.0]))
    return _first(kv_transfer_s(ev.scenario.hardware, kv_bytes=kv, layout_dies=np.array([float(ev.dies)]),
                                links=links, call_s=env.calls.p2p_s))


def _prefill_side(ev: Evaluation, tpot_s: float) -> dict[str, float]:
    sc, env = ev.scenario, ev.env
    if ev.layout.mode == Mode.COLLOCATED:
        d = ev.layout.decode
        step = _first(ev.decode.step_s)
        slots, service = slots_and_service(d.tp, d.prefill_chunk_tokens or 0, env.new_input_tokens, step,
                                           (d.dies or 0) / d.tp)
        servers, fixed = slots * d.instances, 0.0
    else:
        p = ev.layout.prefill
        slots, service = slots_and_service(p.tp, p.batch_tokens, env.new_input_tokens, _first(ev.prefill.step_s),
                                           p.dies / p.tp)
        servers, fixed = slots * p.instances, kv_handoff_s(ev) + tpot_s
    q = sc.slo.ttft_percentile / 100.0
    budget = sc.slo.ttft_s - service - fixed
    cv2 = sc.workload.input_cv ** 2
    rate = 0.0
    if budget >= 0:
        rate = _first(queueing.max_arrival_rate_per_s(budget, q, service, cv2, servers, BISECTION_STEPS))
    return {"rate_per_s": rate, "service_s": service, "servers": servers, "fixed_s": fixed, "cv2": cv2}


def _ttft_at(ev: Evaluation, side: dict[str, float], rate: float) -> float:
    q = ev.scenario.slo.ttft_percentile / 100.0
    wait = _first(queueing.mgc_wait_quantile_s(q, rate, side["service_s"], side["cv2"], side["servers"]))
    return wait + side["service_s"] + side["fixed_s"]


# Batch points of the TPOT(b) curve the decode fixed point is solved on (one vector call).
TPOT_CURVE_POINTS = 16


def _tpot_curve(ev: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """TPOT at batches 1..b of the layout's decode pool (other knobs fixed), priced in one vector call."""
    from dataclasses import replace

    from planner.evaluate import decode_arrays, transformerless_arrays
    from planner.serving.decode import shared_decode_step
    from planner.serving.transformerless import transformerless_step

    b = float(ev.layout.decode.batch)
    grid = np.unique(np.concatenate([np.linspace(0.0, b, TPOT_CURVE_POINTS)[1:], [b]]))
    if ev.layout.mode == Mode.TRANSFORMERLESS:
        base, step_fn = transformerless_arrays(ev.layout), transformerless_step
    else:
        base, step_fn = decode_arrays(ev.layout), shared_decode_step
    n = len(grid)
    arrays = {f: np.repeat(getattr(base, f), n) for f in base.__dataclass_fields__}
    arrays["batch"] = grid
    step = step_fn(ev.env, replace(base, **arrays))
    return np.concatenate([[0.0], grid]), np.concatenate([[step.step_s[0]], step.step_s]) / ev.env.tokens_per_step


def decode_operating_point(ev: Evaluation, rate_per_s: float) -> tuple[float, float]:
    """(sequences per attention die, TPOT) where the decode pool settles at ``rate_per_s``.

    Little's law under continuous batching, ``b = lambda_inst * output * TPOT(b) / A``, solved as
    the smallest fixed point under the layout's batch (planner.queueing.fixed_point_on_curve) on
    the TPOT(b) curve of the pool, priced at ``TPOT_CURVE_POINTS`` batches in one vector call.
    """
    d = ev.layout.decode
    batches, tpots = _tpot_curve(ev)
    per_instance = rate_per_s / d.instances
    return queueing.fixed_point_on_curve(batches, tpots, per_instance, ev.scenario.workload.output_tokens,
                                         float(ev.layout.decode_attention_dies))


def layout_goodput(ev: Evaluation) -> dict[str, Any]:
    """Goodput (req/s and output tokens/s, per die and chip), TTFT and TPOT at it, binding constraint."""
    sc, env, d = ev.scenario, ev.env, ev.layout.decode
    tpot = _first(ev.decode.step_s) / env.tokens_per_step
    fits = bool(np.asarray(ev.decode.fits).reshape(-1)[0]) and (ev.prefill is None or bool(ev.prefill.fits[0]))
    seqs = d.instances * ev.layout.decode_attention_dies * d.batch
    decode_rate = seqs / (sc.workload.output_tokens * tpot) if fits and tpot <= sc.slo.tpot_s else 0.0
    side = _prefill_side(ev, tpot)
    goodput = min(side["rate_per_s"], decode_rate)
    if not fits:
        binding = "memory"
    elif tpot > sc.slo.tpot_s:
        binding = "tpot"
    elif side["rate_per_s"] <= 0:
        binding = "ttft"
    else:
        binding = "prefill (ttft)" if side["rate_per_s"] < decode_rate else "decode (batch x tpot)"
    out_per_s = goodput * sc.workload.output_tokens
    dies = ev.dies
    batch_at, tpot_at = (float(d.batch), tpot)
    if 0 < goodput < decode_rate * (1 - 1e-9):
        batch_at, tpot_at = decode_operating_point(ev, goodput)
    return {"goodput_requests_per_s": goodput, "output_tokens_per_s": out_per_s,
            "output_tokens_per_s_per_die": out_per_s / dies,
            "output_tokens_per_s_per_chip": out_per_s / dies * sc.hardware.dies_per_chip,
            "ttft_s": _ttft_at(ev, side, goodput) if goodput > 0 else float("inf"), "tpot_s": tpot_at,
            "tpot_at_layout_batch_s": tpot, "decode_batch_at_goodput": batch_at,
            "prefill_capacity_requests_per_s": side["rate_per_s"], "decode_capacity_requests_per_s": decode_rate,
            "binding_constraint": binding, "meets_slo": goodput > 0}
