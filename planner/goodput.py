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
    return {"goodput_requests_per_s": goodput, "output_tokens_per_s": out_per_s,
            "output_tokens_per_s_per_die": out_per_s / dies,
            "output_tokens_per_s_per_chip": out_per_s / dies * sc.hardware.dies_per_chip,
            "ttft_s": _ttft_at(ev, side, goodput) if goodput > 0 else float("inf"), "tpot_s": tpot,
            "prefill_capacity_requests_per_s": side["rate_per_s"], "decode_capacity_requests_per_s": decode_rate,
            "binding_constraint": binding, "meets_slo": goodput > 0}
