"""Goodput: the largest arrival rate a layout serves within both SLOs, over arrays of layouts.

One vectorized model, called by the search with N candidate layouts and by ``planner evaluate``
with N = 1, so both report the same number for the same layout (a property test checks it).

Prefill side (a token stream per TP group: :func:`prefill_queue`)
    A TP group of ``tp`` dies takes ``tp * tokens_per_die`` prompt tokens per forward, filled FCFS
    from the waiting prompts (a prompt split across forwards, several sharing one).  Servers =
    groups x instances; service time = ``new_tokens / (tp tokens_per_die)`` forwards.  TTFT = wait +
    the request's own prefill + the step boundaries (entering at one, leaving at the end of the
    forward with its last token: the idle step at zero load, up to a whole forward as the stream
    fills, :func:`prefill_quantum_s`) + fixed, where fixed = KV hand-off + first decode step (pd
    and transformerless) or 0 (collocated: the first token comes out of the chunk's step; a
    forward is a decode step carrying a chunk, see "chunked prefill" below).  Its SLO percentile
    is that of the sum: the own prefill is gamma with the mean service and the prompt length's CV
    (a prompt at the 99th percentile of MLPerf Llama-3.1-405B's lengths, CV 0.43, takes ~2.3x the
    mean's forwards; ~2.0x capped at the dataset's longest prompt: planner.capped_gamma),
    independent of the wait (FIFO).  Not the waiting quantile plus the mean service, which sits
    ~35% under the p90 of step-level simulations of chunked prefill with such prompts
    (tests/validation/test_tpot_distribution_des.py).  Not whole forwards per prompt either (a
    slot per prompt, ``ceil`` forwards each): that leaves the budget's remainder idle, and where a
    prompt is 1.33 forwards it prices the pool's goodput 32% under the simulated engine's.
Decode side (continuous batching)
    ``S`` sequences in flight (instances x attention dies x batch per die) sustain
    ``S / (output_tokens * TPOT)`` requests/s by Little's law, when TPOT meets its SLO and the
    batch fits in memory; otherwise 0.
Admission (chunked prefill: collocated)
    A prompt is admitted to the batch (takes a sequence slot) before its first chunk, so when
    every slot is taken it waits for one: the ``S`` slots are the servers of an M/G/c queue
    whose service time is a request's residence, its own prefill plus ``output_tokens * TPOT`` at
    the full batch (:func:`slot_residence_s`; cs^2 = output_cv^2: a request holds its slot for its
    own output).  The decode side's rate is also
    capped by the largest rate whose waiting quantile for a slot fits the TTFT budget left by
    the prefill service: at the Little's-law rate the slots are saturated and that wait is
    unbounded.  Each queue (prompt chunks, batch slots) gets the whole TTFT budget (its wait plus
    the own prefill, as above); TTFT is the longer of the two quantiles (the one near saturation
    dominates).
TPOT at the occupancy served (chunked prefill)
    Below the slot-wait cap the batch is part full: at rate ``lambda`` an instance holds
    ``b = lambda L TPOT(b) / A`` sequences per attention die, so TPOT (mean or percentile, with the
    chunk share and batch spread of that ``b``) is checked there, not at the full batch
    (:class:`OccupancyCurve`): the decode rate is also capped by Little's law at the first occupancy
    where the statistic misses the SLO, and a layout whose full batch misses it can still serve.
Goodput
    ``min(prefill rate, decode rate)``; the binding constraint names the side that sets it.

References: DistServe (OSDI'24) for goodput under TTFT/TPOT SLOs; DESIGN.md section 6.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.special import ndtri

from planner import queueing
from planner.cost.memory import kv_bytes_per_sequence
from planner.cost.precision import BytesPerElement
from planner.cost.roofline import Array
from planner.inputs.hardware import HardwareSpec
from planner.inputs.model import ModelSpec
from planner.xccl import kv_transfer_s

# Bisection steps on the utilization: 2**-40 ~ 1e-12, far below any other error in the model.
BISECTION_STEPS = 40

# Binding constraint of a layout, by code (arrays carry the code; reports the text).
BINDING = ("memory", "tpot", "ttft", "prefill (ttft)", "decode (batch x tpot)", "batch slots (ttft)")
MEMORY, TPOT, TTFT, PREFILL, DECODE, ADMISSION = range(len(BINDING))
# The wait for a batch slot is named the binding constraint only when it costs more than this share of
# the full batch's rate (at a loose TTFT SLO, e.g. 1 h, it always costs ~1e-5: the batch binds there).
ADMISSION_BINDS_REL = 1e-3


class Slo(Protocol):
    """The service-level objectives goodput is measured against (seconds; percentile in (0, 100))."""

    @property
    def ttft_s(self) -> float: ...
    @property
    def ttft_percentile(self) -> float: ...
    @property
    def tpot_s(self) -> float: ...
    @property
    def tpot_percentile(self) -> float | None: ...


def prefill_queue(tp: Array, tokens_per_die: Array, new_tokens: float, groups: Array, forward_s: Array,
                  idle_step_s: Array | float = 0.0) -> tuple[Array, Array, Array, Array]:
    """(service time, servers, quantum at zero load, quantum's load part) of one instance's prefill, (N,)
    each: a token stream per TP group.

    The engine fills each forward's budget of ``tp * tokens_per_die`` prompt tokens FCFS from the
    prompts waiting, a prompt split across forwards as needed and several sharing one
    (TensorRT-LLM's chunked context, vLLM's and SGLang's chunked prefill): no budget is left idle
    while prompts wait.  So each TP group is one server, and a prompt's service is its share of
    forwards, ``new_tokens / (tp C)`` forwards of ``forward_s`` (a fraction when prompts share a
    forward).  The prompt enters at a step boundary and its first token comes out at the end of
    the forward that holds its last token: with the pool busy that is one forward (half a
    forward's residual on entry, half a forward on average after its last token); idle, it is the
    step the pool runs without prompts (``idle_step_s``: a collocated pool's decode step, half of
    it on entry and, its last forward being partial, one such step's fixed part shared out over
    the prompt's forwards; a prefill pool starts a forward at once: 0).  In between it grows with
    the prefill stream's utilization ``rho``: quantum = ``idle + rho (forward - idle)``
    (:func:`ttft_parts_s`).  Checked against step-level simulations of the engine, at 30% load and
    at the rate where the p99 TTFT crosses the SLO (tests/validation/test_tpot_distribution_des.py).

    Parameters
    ----------
    tp : TP degree (dies sharing one forward), (N,)
    tokens_per_die : prompt tokens each die takes per forward (prefill batch or collocated chunk), (N,)
    new_tokens : prompt tokens per request that need computing (cache hits excluded)
    groups : TP groups per instance, (N,)
    forward_s : time of one forward carrying a full budget, (N,)
    idle_step_s : the step the pool runs with no prompt waiting (collocated: the decode step without a
        chunk; a prefill pool: 0), (N,)
    """
    budget = np.asarray(tp, dtype=float) * np.asarray(tokens_per_die, dtype=float)
    forward = np.asarray(forward_s, dtype=float)
    idle = np.broadcast_to(np.asarray(idle_step_s, dtype=float), np.shape(forward))
    with np.errstate(invalid="ignore", over="ignore"):
        service = forward * (new_tokens / budget)
        load = forward - idle
    return service, np.asarray(groups, dtype=float) * np.ones(np.shape(budget)), idle, load


def prefill_quantum_s(idle_s: Array | float, load_s: Array | float, rate_per_s: Array | float, service_s: Array,
                      servers: Array) -> Array:
    """The quantum at ``rate_per_s`` (:func:`prefill_queue`), (N,): ``idle + load * rho``, ``rho`` the prefill
    stream's utilization ``lambda E[S] / c`` (at most 1)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.minimum(1.0, np.asarray(rate_per_s, dtype=float) * np.asarray(service_s, dtype=float)
                         / np.asarray(servers, dtype=float))
    return np.asarray(idle_s, dtype=float) + np.asarray(load_s, dtype=float) * rho


def ttft_limited_rate_per_s(slo: Slo, input_cv: float, service_s: Array, servers: Array, fixed_s: Array,
                            prefill_cv: Array | float | None = None, input_cap_sd: float = np.inf,
                            quantum_load_s: Array | float = 0.0) -> Array:
    """Largest request rate whose TTFT percentile meets the SLO, (N,); 0 when even zero load misses it.

    TTFT = wait (M/G/c, Allen-Cunneen) + the request's own prefill + ``fixed_s``, its percentile
    that of the sum (queueing.mgc_wait_plus_gamma_quantile_s): the prefill is gamma of mean
    ``service_s`` and CV ``prefill_cv`` (default ``input_cv``: the prompt length's), independent of
    the wait (FIFO), capped ``input_cap_sd`` standard deviations above its mean where prompts have a
    maximum (Workload.input_cap_sd; planner.capped_gamma).  The queue's service-time variability
    follows the prompt-length variability (cs^2 = input_cv^2).  ``quantum_load_s`` x the stream's
    utilization adds to ``fixed_s`` (:func:`prefill_queue`).
    """
    budget = slo.ttft_s - np.asarray(fixed_s, dtype=float)
    cv = input_cv if prefill_cv is None else prefill_cv
    return queueing.max_arrival_rate_per_s(budget, slo.ttft_percentile / 100.0, service_s, input_cv**2, servers,
                                           BISECTION_STEPS, extra_mean_s=service_s, extra_cv=cv,
                                           extra_cap_sd=input_cap_sd, budget_slope_s=quantum_load_s)


def ttft_parts_s(q: float, input_cv: float, rate_per_s: Array, service_s: Array, servers: Array, fixed_s: Array,
                 prefill_cv: Array | float, sequences: Array | None = None,
                 residence_s: Array | None = None, residence_cv: float = 0.0,
                 input_cap_sd: float = np.inf, quantum_load_s: Array | float = 0.0) -> tuple[Array, Array]:
    """(TTFT q-quantile, the prefill part of it), (N,) each, at ``rate_per_s``.

    TTFT = wait + own prefill + ``fixed_s`` (:func:`ttft_limited_rate_per_s`); with ``sequences``
    (chunked prefill) the wait for a batch slot too (:func:`admission_limited_rate_per_s`): each
    queue's wait plus the prefill, the longer of the two quantiles (as each gets the whole budget).
    The prefill part is the q-quantile prompt's own prefill; the rest of the quantile is queueing
    (with the quantum's load part, ``quantum_load_s`` x the stream's utilization: :func:`prefill_queue`).
    """
    svc = np.asarray(service_s, dtype=float)
    busy = prefill_quantum_s(0.0, quantum_load_s, rate_per_s, svc, servers)
    # the quantile's bisection on t (between bounds within a few x of each other): 2**-40 ~ 1e-12 relative
    total = queueing.mgc_wait_plus_gamma_quantile_s(q, rate_per_s, svc, input_cv**2, servers, svc, prefill_cv,
                                                    iterations=BISECTION_STEPS, extra_cap_sd=input_cap_sd)
    if sequences is not None:
        total = np.maximum(total, queueing.mgc_wait_plus_gamma_quantile_s(q, rate_per_s, residence_s,
                                                                          residence_cv**2, sequences, svc,
                                                                          prefill_cv, iterations=BISECTION_STEPS,
                                                                          extra_cap_sd=input_cap_sd))
    return (total + np.asarray(fixed_s, dtype=float) + busy,
            queueing.gamma_quantile(q, svc, prefill_cv, input_cap_sd))


def slot_residence_s(output_tokens: float, tpot_s: Array, service_s: Array) -> Array:
    """Mean time a request holds its batch slot (chunked prefill), (N,): admitted before its first chunk,
    it holds the slot through its own prefill (``service_s``, its share of the chunk steps) and its
    ``output_tokens`` decode steps.  The wait for chunk budget after admission is left out (in
    simulations of the engine at 16 slots it adds up to ~10% to the goodput: optimistic there)."""
    return output_tokens * np.asarray(tpot_s, dtype=float) + np.asarray(service_s, dtype=float)


def admission_limited_rate_per_s(slo: Slo, sequences: Array, residence_s: Array, service_s: Array,
                                 fixed_s: Array, prefill_cv: Array | float = 0.0, residence_cv: float = 0.0,
                                 input_cap_sd: float = np.inf, quantum_load_s: Array | float = 0.0,
                                 prefill_servers: Array | float = 1.0) -> Array:
    """Largest request rate whose wait for a batch slot meets the TTFT SLO at its percentile, (N,).

    The ``sequences`` slots of the pool are the servers of an M/G/c queue (queueing.mgc_wait_quantile_s) whose
    service is one request's residence, mean ``residence_s`` and CV ``residence_cv`` (the output
    length's: a request holds its slot for its own output); TTFT = that wait + the request's own prefill
    (gamma, mean ``service_s``, CV ``prefill_cv``) + ``fixed_s``, at the SLO percentile.  0 where
    even zero load misses the SLO or the residence is not finite.
    Checked against step-level simulations of in-flight batching with a chunk budget
    (tests/validation/test_tpot_distribution_des.py): the simulation's engine runs faster steps
    when its batch is not full, so this is conservative by ~1% at 1,024 slots.  At few slots and
    moderate occupancy the wait's mean carries the M/D/c correction (residences vary little): at
    16 slots and 9.3 erlangs (residence CV 0.381; MLPerf Llama-3.1-405B on 8 H200, 16 slots of
    ~39 s) its p99 is 4.8 s where a FIFO M/G/16 simulation gives 5.2 s (Allen-Cunneen alone: 3.9 s;
    tests/validation/test_queueing_des.py).
    """
    budget = slo.ttft_s - np.asarray(fixed_s, dtype=float)
    res = np.asarray(residence_s, dtype=float)
    ok = (budget >= 0) & np.isfinite(res) & (res > 0)
    seqs = np.asarray(sequences, dtype=float)
    # the prefill stream's utilization at slot utilization r: lambda = r S / R, rho = lambda E[S_p] / c_p
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(ok, seqs * np.asarray(service_s, dtype=float) / (np.where(ok, res, 1.0)
                                                                          * np.asarray(prefill_servers, dtype=float)),
                         0.0)
    rate = queueing.max_arrival_rate_per_s(np.where(ok, budget, 0.0), slo.ttft_percentile / 100.0,
                                           np.where(ok, res, 1.0), residence_cv**2, seqs,
                                           BISECTION_STEPS, extra_mean_s=service_s, extra_cv=prefill_cv,
                                           extra_cap_sd=input_cap_sd, budget_slope_s=quantum_load_s,
                                           slope_scale=scale)
    return np.where(ok, rate, 0.0)


def decode_rate_per_s(slo: Slo, sequences: Array, output_tokens: float, tpot_s: Array, fits: Array,
                      tpot_slo_s: Array | None = None) -> Array:
    """Requests/s a decode pool sustains at its batch (Little's law), 0 where TPOT or memory fails, (N,).

    ``tpot_slo_s`` is the TPOT statistic the SLO bounds (the mean ``tpot_s`` by default, or a
    percentile: ``tpot_s * tpot_slo_factor``).  Divided only where the pool qualifies (7% of a search's
    1.3 M transformerless rows: 0.010 -> 0.005 s of a default plan), the same floats there.
    """
    tpot = np.asarray(tpot_s, dtype=float)
    stat = tpot if tpot_slo_s is None else np.asarray(tpot_slo_s, dtype=float)
    ok = np.asarray(fits, dtype=bool) & (stat <= slo.tpot_s)
    seqs, tpot, ok = np.broadcast_arrays(np.asarray(sequences, dtype=float), tpot, ok)
    rate = np.zeros(ok.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate[ok] = seqs[ok] / (output_tokens * tpot[ok])
    return rate


@dataclass(frozen=True, slots=True, kw_only=True)
class GoodputArrays:
    """Goodput of N layouts and the two capacities it is the minimum of (req/s), with the binding code."""

    goodput_per_s: Array
    prefill_rate_per_s: Array
    decode_rate_per_s: Array
    binding: Array


def goodput(slo: Slo, *, input_cv: float, output_tokens: float, service_s: Array, servers: Array, fixed_s: Array,
            sequences: Array, tpot_s: Array, fits: Array, tpot_slo_s: Array | None = None,
            admission: bool = False, prefill_cv: Array | float | None = None, output_cv: float = 0.0,
            tpot_rate_per_s: Array | None = None, input_cap_sd: float = np.inf,
            quantum_load_s: Array | float = 0.0) -> GoodputArrays:
    """Goodput of N layouts, (N,): ``min(TTFT-limited prefill rate, decode rate)``.

    Parameters
    ----------
    service_s, servers, fixed_s : prefill side (see module notes), (N,)
    sequences : sequences in flight in the decode pool at the layout's batch, (N,)
    tpot_s : mean TPOT at that batch, (N,)
    fits : every pool of the layout fits in memory, (N,)
    tpot_slo_s : the TPOT statistic the SLO bounds, (N,) (default: the mean)
    admission : a prompt takes a batch slot before its prefill (chunked prefill): the decode rate is
        also capped by the wait for a slot (:func:`admission_limited_rate_per_s`)
    prefill_cv : CV of a request's own prefill time, (N,) (default ``input_cv``: the prompt length's)
    output_cv : CV of the output length: of a request's residence in its batch slot (``admission``)
    tpot_rate_per_s : the largest rate of the pool at which TPOT meets its SLO, (N,) (chunked prefill:
        Little's law at the occupancy :meth:`OccupancyCurve.tpot_limited_batch`, where the slot wait
        keeps the batch part full); given, it replaces the TPOT check at the full batch
    input_cap_sd : the longest prompt in standard deviations above the mean (Workload.input_cap_sd; inf: none)
    quantum_load_s : the part of the prefill quantum that grows with the stream's utilization (:func:`prefill_queue`)
    """
    cv = input_cv if prefill_cv is None else prefill_cv
    pre = ttft_limited_rate_per_s(slo, input_cv, service_s, servers, fixed_s, cv, input_cap_sd, quantum_load_s)
    if admission:  # a slot is held through the prompt's prefill too: Little's law on the whole residence
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            residence = slot_residence_s(output_tokens, tpot_s, service_s)
            per_residence = np.asarray(sequences, dtype=float) / residence

    def rate_of(stat: Array | None) -> Array:  # Little's law where TPOT and memory allow, else 0
        rate = decode_rate_per_s(slo, sequences, output_tokens, tpot_s, fits, stat)
        return np.where(rate > 0, per_residence, 0.0) if admission else rate

    if tpot_rate_per_s is None:
        little = rate_of(tpot_slo_s)
        tpot_caps = np.zeros(np.shape(little), dtype=bool)
    else:
        full = rate_of(np.zeros(np.shape(tpot_s)))
        limit = np.asarray(tpot_rate_per_s, dtype=float)
        little = np.minimum(full, limit)
        tpot_caps = limit < full * (1 - ADMISSION_BINDS_REL)
    slots = little
    if admission:
        slots = np.minimum(little, admission_limited_rate_per_s(slo, sequences, residence, service_s, fixed_s, cv,
                                                                output_cv, input_cap_sd, quantum_load_s, servers))
    dec = np.where(little > 0, slots, 0.0)
    fits = np.asarray(fits, dtype=bool)
    if tpot_rate_per_s is None:
        tpot_misses = np.asarray(tpot_s if tpot_slo_s is None else tpot_slo_s, dtype=float) > slo.tpot_s
    else:
        tpot_misses = little <= 0
    binding = np.select([~fits, tpot_misses, pre <= 0, pre < dec, dec < little * (1 - ADMISSION_BINDS_REL),
                         tpot_caps], [MEMORY, TPOT, TTFT, PREFILL, ADMISSION, TPOT], DECODE)
    return GoodputArrays(goodput_per_s=np.minimum(pre, dec), prefill_rate_per_s=pre, decode_rate_per_s=dec,
                         binding=binding)


def chunked_goodput_per_s(slo: Slo, *, input_cv: float, output_tokens: float, service_s: Array, servers: Array,
                          fixed_s: Array, sequences: Array, tpot_s: Array, fits: Array, tpot_rate_per_s: Array,
                          prefill_cv: Array | float, output_cv: float, input_cap_sd: float = np.inf,
                          quantum_load_s: Array | float = 0.0) -> Array:
    """``goodput(..., admission=True).goodput_per_s`` of chunked-prefill pools, (N,).

    The same numbers, cheaper: where TTFT at its percentile meets the SLO at the decode side's rate
    (Little's law at the full batch or the TPOT limit), both TTFT caps lie above that rate (TTFT
    grows with the rate), so it is the goodput and their bisections are skipped.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        tpot = np.asarray(tpot_s, dtype=float)
        seqs = np.asarray(sequences, dtype=float)
        residence = slot_residence_s(output_tokens, tpot, service_s)
        full = np.where(np.asarray(fits, dtype=bool), seqs / residence, 0.0)
        rate = np.minimum(full, np.asarray(tpot_rate_per_s, dtype=float))
        at, _ = ttft_parts_s(slo.ttft_percentile / 100.0, input_cv, rate, service_s, servers, fixed_s, prefill_cv,
                             sequences=seqs, residence_s=residence, residence_cv=output_cv,
                             input_cap_sd=input_cap_sd, quantum_load_s=quantum_load_s)
    met = (rate > 0) & np.isfinite(at) & (at <= slo.ttft_s)
    out = np.where(rate > 0, rate, 0.0)
    rest = np.flatnonzero((rate > 0) & ~met)
    if len(rest):
        def take(a):
            return a if np.ndim(a) == 0 else np.asarray(a)[rest]
        out[rest] = goodput(slo, input_cv=input_cv, output_tokens=output_tokens, service_s=take(service_s),
                            servers=take(servers), fixed_s=take(fixed_s), sequences=take(seqs),
                            tpot_s=take(tpot), fits=take(np.asarray(fits, dtype=bool)), admission=True,
                            prefill_cv=take(prefill_cv), output_cv=output_cv, input_cap_sd=input_cap_sd,
                            quantum_load_s=take(quantum_load_s),
                            tpot_rate_per_s=take(np.asarray(tpot_rate_per_s, dtype=float))).goodput_per_s
    return out


def kv_handoff_s(hw: HardwareSpec, model: ModelSpec, by: BytesPerElement, *, input_tokens: float, prefill_tp: Array,
                 decode_tp: Array, same_pod: Array, p2p_s: float, prefill_pp: Array | float = 1.0,
                 decode_pp: Array | float = 1.0) -> Array:
    """Prefill -> decode KV transfer of one request, seconds, (N,).

    The request's whole KV (``input_tokens`` cached tokens) moves over ``min(prefill_tp prefill_pp,
    decode_tp decode_pp)`` links in parallel (each die of an instance holds a share: its TP rank's
    heads of its pipeline stage's layers, and sends or receives it on its own link), over the pod's
    fabric when both pools sit in one pod, else over the fabric joining pods
    (planner.xccl.kv_transfer_s).  Not overlapped with prefill: it adds to TTFT.
    """
    kv = kv_bytes_per_sequence(model, by, context=np.array([input_tokens]), tp=np.array([1.0]))
    links = np.minimum(np.asarray(prefill_tp, dtype=float) * np.asarray(prefill_pp, dtype=float),
                       np.asarray(decode_tp, dtype=float) * np.asarray(decode_pp, dtype=float))
    return kv_transfer_s(hw, kv_bytes=kv, same_pod=same_pod, links=links, call_s=p2p_s)


# ----------------------------------------------------------------------------- chunked prefill (collocated)


def chunk_fraction(batch: Array, chunk_tokens: Array, *, groups: Array, new_tokens: float, output_tokens: float,
                   tokens_per_step: float) -> Array:
    """Share of a collocated instance's steps that carry a prefill chunk, at a decode batch, (N,).

    Each of the ``b`` sequences per die ends after ``L / mu`` steps and its slot takes a new request
    (Little's law), whose ``N`` new prompt tokens the chunks prefill: ``b mu N / L`` prompt tokens per
    die and step, the same at any arrival rate once the batch has settled.  A step that carries a
    chunk carries ``C`` per die, so one TP group carries one in a share ``f = min(1, b mu N / (L C))``
    of its steps; at ``f = 1`` every step carries one and the prefill side saturates (its M/G/c queue
    binds).  An instance of ``g`` TP groups that step together (an MoE's groups, joined by the expert
    all-to-all) waits for a chunk on any of them: ``1 - (1 - f)^g`` (conservative: the step is then
    priced as if every group carried one).  0 where ``C = 0`` (no chunking).
    """
    c = np.asarray(chunk_tokens, dtype=float)
    need = np.asarray(batch, dtype=float) * tokens_per_step * new_tokens / output_tokens
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(c > 0, np.minimum(1.0, need / c), 0.0)
    return 1.0 - (1.0 - f) ** np.maximum(np.asarray(groups, dtype=float), 1.0)


def chunked_step_s(plain_step_s: Array, chunk_step_s: Array, fraction: Array) -> Array:
    """Mean step of a collocated instance: a share ``fraction`` of steps carries a chunk, (N,)."""
    plain = np.asarray(plain_step_s, dtype=float)
    return plain + np.asarray(fraction, dtype=float) * (np.asarray(chunk_step_s, dtype=float) - plain)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkTerms:
    """What the TPOT spread of a collocated pool needs from its steps, (N,) each.

    extra_s : a step carrying a chunk minus one without (s)
    fraction : share of steps carrying a chunk (:func:`chunk_fraction`)
    steps_per_request : chunk steps one request's prompt takes, ``N / (tp C)`` (may be < 1)
    tp : dies of the TP group that prefills a request together
    """

    extra_s: Array
    fraction: Array
    steps_per_request: Array
    tp: Array

    @classmethod
    def of(cls, *, plain_step_s: Array, chunk_step_s: Array, fraction: Array, tp: Array, chunk_tokens: Array,
           new_tokens: float) -> ChunkTerms:
        tp_f = np.asarray(tp, dtype=float)
        with np.errstate(invalid="ignore"):  # unpriced rows (inf steps) stay nan: their TPOT is inf anyway
            extra = np.asarray(chunk_step_s, dtype=float) - np.asarray(plain_step_s, dtype=float)
        return cls(extra_s=extra,
                   fraction=np.asarray(fraction, dtype=float),
                   steps_per_request=new_tokens / (tp_f * np.maximum(np.asarray(chunk_tokens, dtype=float), 1e-12)),
                   tp=tp_f)


# ----------------------------------------------------------------------------- TPOT distribution


def mtp_tokens_per_step_moments(draft_tokens: int, acceptance: float) -> tuple[float, float]:
    """Mean and variance of the tokens one sequence emits per decode step with MTP.

    Drafts are accepted in order, each with probability ``acceptance`` given the previous one was:
    ``P(X >= 1 + j) = a**j`` for j = 0..d, so ``E[X] = 1 + sum_j a**j`` (j = 1..d).
    """
    a, d = acceptance, draft_tokens
    tail = np.array([a**j for j in range(d + 1)])            # P(X >= 1 + j), j = 0..d
    pmf = tail - np.append(tail[1:], 0.0)                     # P(X = 1 + j)
    k = np.arange(1, d + 2, dtype=float)
    mean = float((k * pmf).sum())
    return mean, float((k**2 * pmf).sum() - mean**2)


def tpot_quantile_s(q: float, *, tpot_s: Array, step_slope_s: Array, batch: Array, batch_cap: Array,
                    attention_dies: Array, output_tokens: float, draft_tokens: int, acceptance: float,
                    chunk: ChunkTerms | None = None) -> Array:
    """The q-quantile over requests of TPOT (each request's mean time per output token), (N,).

    A request's TPOT is ``K * s_bar / (L - 1)``: K steps to emit its L tokens at a mean step time
    ``s_bar`` over its life.  Independent normal terms (renewal CLT and a linearised step time):

    - MTP: tokens per step X has mean mu, variance sigma^2 (:func:`mtp_tokens_per_step_moments`);
      ``CV(K) = sqrt(sigma^2 / (mu * L))``.
    - Batch: sequences in flight in one instance are Poisson (M/G/inf below the batch cap) with mean
      ``b * A``; their time average over one request's life (a window of one residence, over which
      the count's autocorrelation falls linearly) has variance ``2/3 * b * A``, so the batch per
      die a request sees varies with ``std = sqrt(2 b / (3 A))``; a fuller batch slows every step,
      so more requests arrive per residence: linearised, the deviation is amplified by
      ``1 / (1 - rho)`` with ``rho = (slope * b + f * extra) / step`` (the load-dependent share of the
      step: batch and chunk steps below),
      and clipped to ``[0, batch_cap]``; the step time moves by ``step_slope_s`` per sequence per die.
    - Chunked prefill (collocated, ``chunk``): a share ``f`` of the steps carries a prefill chunk and
      takes ``extra`` longer.  Requests reach the request's TP group as a Poisson stream, each
      bringing ``phi`` chunk steps, so over the ``K = L / mu`` steps of one residence the chunk
      steps are compound Poisson with mean ``f K`` and variance ``phi f K``: the share of chunk
      steps a request sees varies with ``std = sqrt(phi f / K)`` (clipped to ``[0, 1]``), giving
      ``d_c = extra * clip(z std / (1 - rho), -f, 1 - f) / step``, with the feedback of the batch
      term (``rho`` counts the chunk steps' share ``f extra`` too).  The same arrivals drive the batch term:
      the group's arrivals over the residence and the instance's batch averaged over it correlate
      with ``r = sqrt(3 tp / (8 A))`` (uniform against triangular weights over the window).

    ``T_q = TPOT * (1 + sign(z) * sqrt((z CV_K)^2 + d_b^2 + d_c^2 + 2 r d_b d_c))`` with
    ``z = Phi^-1(q)`` and ``d_b = slope * clip(z * std / (1 - rho), -b, cap - b) / step``.  Validity:
    many sequences per instance, many arrivals per residence and long outputs (normal limits); no
    DP-rank imbalance (every attention die is assumed to see the instance's mean); every request
    taken at the mean output length.  Checked against discrete-event simulations (tests/validation).
    """
    z = float(ndtri(q))
    mu, var = mtp_tokens_per_step_moments(draft_tokens, acceptance)
    cv_k = np.sqrt(var / (mu * output_tokens))
    b, cap = np.asarray(batch, dtype=float), np.asarray(batch_cap, dtype=float)
    dies = np.asarray(attention_dies, dtype=float)
    std_b = np.sqrt(2.0 * b / (3.0 * dies))
    tpot = np.asarray(tpot_s, dtype=float)
    slope, step = np.asarray(step_slope_s, dtype=float), tpot * mu
    f = 0.0 if chunk is None else np.asarray(chunk.fraction, dtype=float)
    extra = 0.0 if chunk is None else np.asarray(chunk.extra_s, dtype=float)
    # share of the step that grows with the load (batch and chunk steps), capped at 0.9: the linearised
    # feedback 1 / (1 - rho) diverges as rho -> 1, where the normal approximation no longer holds anyway
    rho = np.clip((slope * b + f * extra) / step, 0.0, 0.9)
    d_b = slope * np.clip(z * std_b / (1.0 - rho), -b, cap - b) / step
    spread = (z * cv_k) ** 2 + d_b**2
    if chunk is not None:
        std_f = np.sqrt(np.asarray(chunk.steps_per_request, dtype=float) * f * mu / output_tokens)
        d_c = extra * np.clip(z * std_f / (1.0 - rho), -f, 1.0 - f) / step
        r = np.clip(np.sqrt(3.0 * np.asarray(chunk.tp, dtype=float) / (8.0 * dies)), 0.0, 1.0)
        spread = spread + d_c**2 + 2.0 * r * d_b * d_c
    return tpot * (1.0 + np.sign(z) * np.sqrt(spread))


def tpot_slo_statistic_s(slo: Slo, *, tpot_s: Array, output_tokens: float, draft_tokens: int, acceptance: float,
                         chunk: ChunkTerms | None = None) -> Array:
    """The TPOT statistic the SLO bounds, for a pool at its full batch, (N,).

    The mean TPOT for a mean-TPOT SLO.  For a percentile: at the full batch the batch cannot grow,
    so the batch term of :func:`tpot_quantile_s` vanishes; the MTP term and, for chunked prefill,
    the chunk-step term remain.  One function for the search, ``evaluate`` and ``decide``.
    """
    tpot = np.asarray(tpot_s, dtype=float)
    if slo.tpot_percentile is None:
        return tpot
    one = np.ones(np.shape(tpot))
    return tpot_quantile_s(slo.tpot_percentile / 100.0, tpot_s=tpot, step_slope_s=0 * one, batch=one,
                           batch_cap=one, attention_dies=one,
                           output_tokens=output_tokens, draft_tokens=draft_tokens, acceptance=acceptance, chunk=chunk)


# ----------------------------------------------------------------------------- TPOT at the occupancy served


@dataclass(frozen=True, slots=True, kw_only=True)
class OccupancyCurve:
    """N decode pools' steps on a batch grid, and what their TPOT at any occupancy needs.

    ``batches`` (N, K): batches per attention die, from 0 (the first priced point's values repeated
    there: the curve starts flat), increasing, up to the pool's own batch ``cap``; a row with fewer
    points pads with nan.  ``step_s`` is the mean (load-consistent) step at each, and with chunked
    prefill ``plain_step_s`` / ``chunk_step_s`` the steps without and with a chunk (else None).  The
    rest are per row (N,): ``cap`` (batch per die of the layout), ``attention_dies``, ``tp``,
    ``chunk_tokens``, ``groups`` (TP groups stepping together, planner.modes.collocated) and scalars
    of the scenario.
    """

    batches: Array
    step_s: Array
    plain_step_s: Array | None
    chunk_step_s: Array | None
    cap: Array
    attention_dies: Array
    tp: Array
    chunk_tokens: Array
    groups: Array
    new_tokens: float
    output_tokens: float
    tokens_per_step: float
    draft_tokens: int
    acceptance: float

    def take(self, rows: Array) -> OccupancyCurve:
        """The rows ``rows`` of every (N, ...) array."""
        def sub(a):
            return None if a is None else np.asarray(a)[rows]
        return OccupancyCurve(batches=sub(self.batches), step_s=sub(self.step_s), plain_step_s=sub(self.plain_step_s),
                              chunk_step_s=sub(self.chunk_step_s), cap=sub(self.cap),
                              attention_dies=sub(self.attention_dies), tp=sub(self.tp),
                              chunk_tokens=sub(self.chunk_tokens), groups=sub(self.groups), new_tokens=self.new_tokens,
                              output_tokens=self.output_tokens, tokens_per_step=self.tokens_per_step,
                              draft_tokens=self.draft_tokens, acceptance=self.acceptance)

    def segment(self, seg: Array) -> OccupancyCurve:
        """The curve cut to one segment per row, points ``seg`` and ``seg + 1``: (N, 2) arrays, the same
        values (a bisection on that segment reads them, with ``seg = 0``, without gathering the grid)."""
        r = np.arange(len(seg))

        def two(a):
            a = None if a is None else np.asarray(a, dtype=float)
            return None if a is None else np.stack([a[r, seg], a[r, seg + 1]], axis=1)
        return OccupancyCurve(batches=two(self.batches), step_s=two(self.step_s), plain_step_s=two(self.plain_step_s),
                              chunk_step_s=two(self.chunk_step_s), cap=self.cap, attention_dies=self.attention_dies,
                              tp=self.tp, chunk_tokens=self.chunk_tokens, groups=self.groups,
                              new_tokens=self.new_tokens, output_tokens=self.output_tokens,
                              tokens_per_step=self.tokens_per_step, draft_tokens=self.draft_tokens,
                              acceptance=self.acceptance)

    def tpot_s(self, q: float | None, batch: Array, seg: Array | None = None) -> tuple[Array, Array]:
        """(mean TPOT, its q-quantile over requests) at ``batch`` sequences per attention die, (N,) each.

        Linear between the grid's points: the mean step, and with chunked prefill the two steps, at
        the share of chunk steps of that batch (:func:`chunk_fraction`), whose slope on the segment is
        the batch term's (:func:`tpot_quantile_s`, with the chunk-step term).  ``q`` None: the mean.
        ``seg``: the segment each batch lies on, when known (its last point below or at the batch).
        """
        b = np.asarray(batch, dtype=float)
        grid = np.asarray(self.batches, dtype=float)
        n = len(b)
        if seg is None:
            valid = np.isfinite(grid).sum(axis=1)
            seg = np.clip((grid <= b[:, None]).sum(axis=1) - 1, 0, valid - 2)
        # the segment's two points of every row, gathered by flat index (row-major: row * K + column)
        i0 = np.arange(n) * grid.shape[1] + seg
        i1 = i0 + 1
        b0, b1 = np.take(grid, i0), np.take(grid, i1)
        w = (b - b0) / (b1 - b0)

        def ends(a):
            a = np.asarray(a, dtype=float)
            return np.take(a, i0), np.take(a, i1)

        def lerp(a0, a1):
            return a0 + w * (a1 - a0)

        s0, s1 = ends(self.step_s)
        tpot = lerp(s0, s1) / self.tokens_per_step
        if q is None:  # the mean: the chunk terms below only shape the quantile
            return tpot, tpot
        chunk = None
        if self.chunk_step_s is not None:
            (p0, p1), (c0, c1) = ends(self.plain_step_s), ends(self.chunk_step_s)
            f = chunk_fraction(b, self.chunk_tokens, groups=self.groups, new_tokens=self.new_tokens,
                               output_tokens=self.output_tokens, tokens_per_step=self.tokens_per_step)
            s0 = chunked_step_s(p0, c0, f)
            s1 = chunked_step_s(p1, c1, f)
            chunk = ChunkTerms.of(plain_step_s=lerp(p0, p1), chunk_step_s=lerp(c0, c1), fraction=f, tp=self.tp,
                                  chunk_tokens=self.chunk_tokens, new_tokens=self.new_tokens)
        slope = (s1 - s0) / (b1 - b0)
        stat = tpot_quantile_s(q, tpot_s=tpot, step_slope_s=slope, batch=b, batch_cap=self.cap,
                               attention_dies=self.attention_dies, output_tokens=self.output_tokens,
                               draft_tokens=self.draft_tokens, acceptance=self.acceptance, chunk=chunk)
        return tpot, stat

    def rate_per_s(self, batch: Array) -> Array:
        """Requests/s one instance serves at ``batch`` sequences per attention die (Little's law), (N,)."""
        b = np.asarray(batch, dtype=float)
        tpot, _ = self.tpot_s(None, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(b > 0, np.asarray(self.attention_dies, dtype=float) * b / (self.output_tokens * tpot), 0.0)

    def tpot_limited_batch(self, slo: Slo) -> Array:
        """The occupancy up to which the TPOT statistic meets the SLO, (N,) batches per attention die.

        The first point of the grid where the statistic misses (``cap`` if none does), then
        BISECTION_STEPS bisections on the segment before it; 0 if it misses already at an empty
        pool.  Every occupancy below it meets the SLO on the grid, so the rate it serves
        (:meth:`rate_per_s`) is the largest the TPOT SLO admits; at a looser SLO it never moves down.
        """
        q = None if slo.tpot_percentile is None else slo.tpot_percentile / 100.0
        grid = np.asarray(self.batches, dtype=float)
        n, k = grid.shape
        last = np.isfinite(grid).sum(axis=1) - 2  # the last segment of each row
        miss = np.zeros((n, k), dtype=bool)
        cap = np.asarray(self.cap, dtype=float)
        for col in range(k):  # the grid's points, one column (a batch of every row) at a time
            here = np.isfinite(grid[:, col])
            stat = self.tpot_s(q, np.where(here, grid[:, col], cap), np.minimum(col, last))[1]
            miss[:, col] = here & ~(stat <= slo.tpot_s)
        out = np.asarray(self.cap, dtype=float).copy()
        j = np.argmax(miss, axis=1)
        crossing = miss.any(axis=1)
        out[crossing & (j == 0)] = 0.0
        rows = np.flatnonzero(crossing & (j > 0))
        if len(rows):
            seg = j[rows] - 1
            sub = self.take(rows).segment(seg)  # the one segment each row bisects on: (M, 2) arrays
            lo, hi = grid[rows, seg], grid[rows, seg + 1]
            first = np.zeros(len(rows), dtype=np.int64)
            for _ in range(BISECTION_STEPS):
                mid = 0.5 * (lo + hi)
                good = sub.tpot_s(q, mid, first)[1] <= slo.tpot_s
                lo, hi = np.where(good, mid, lo), np.where(good, hi, mid)
            out[rows] = lo
        return out
