"""Score pool candidates: step times from the serving models, then rates under the SLOs.

Decode (pd, transformerless): continuous batching; at the candidate's batch ``b`` per attention
die, Little's law gives the request rate an instance sustains, ``A * b / (output * TPOT(b))``,
valid when TPOT(b) meets the SLO and the batch fits in memory.  Prefill: an instance is a group
of M/G/c servers (request slots) whose service time is the forward time; its goodput for
``n`` instances is the largest rate whose TTFT percentile meets the SLO (planner.queueing).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from planner import goodput as gp
from planner.inputs.scenario import Scenario
from planner.modes.base import ModeEntry, prefill_arrays
from planner.search.space import CandidateSet
from planner.serving.context import Env
from planner.serving.prefill import prefill_step

CHUNK = 32768  # candidates per vector evaluation (bounds memory; measured fastest of 8K-128K)


def _f(a: np.ndarray) -> np.ndarray:
    return a.astype(float)


def _chunked(fn, cands: CandidateSet) -> dict[str, np.ndarray]:
    """Run ``fn(arrays) -> dict of arrays`` over chunks of the candidate set and concatenate."""
    n = len(cands)
    parts: list[dict[str, np.ndarray]] = []
    for lo in range(0, n, CHUNK):
        parts.append(fn({k: v[lo:lo + CHUNK] for k, v in cands.arrays.items()}))
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass
class DecodeScore:
    """Per scored row: rate per instance (req/s), dies per instance, TPOT, memory cap, feasibility.

    Rows are the candidates once per MTP variant (off, then on); ``knob(name, rows)`` reads a
    candidate's knob without copying the candidate set per variant.
    """

    cands: CandidateSet
    batch: np.ndarray
    mtp: np.ndarray
    rate_per_s: np.ndarray
    sequences: np.ndarray
    dies: np.ndarray
    tpot_s: np.ndarray
    tpot_slo_s: np.ndarray
    step_s: np.ndarray
    chunk_step_s: np.ndarray  # a step carrying a prefill chunk (chunked prefill; else the step)
    max_batch: np.ndarray
    ok: np.ndarray
    rejected: Counter
    _by_dies: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def feasible_by_dies(self) -> np.ndarray:
        """Rows of ``ok`` ordered by dies, then rate (highest first), then row: sorted once per score, since
        the search builds an envelope from every TPOT-threshold subset of the rows (planner.search.combine)."""
        if self._by_dies is None:
            rows = np.flatnonzero(self.ok)
            self._by_dies = rows[np.lexsort((rows, -self.rate_per_s[rows], self.dies[rows]))]
        return self._by_dies

    def knob(self, name: str, rows: np.ndarray | int) -> np.ndarray:
        return self.cands.arrays[name][np.asarray(rows) % len(self.cands)]

    def __len__(self) -> int:
        return len(self.rate_per_s)


def _decode_eval(env: Env, entry: ModeEntry):
    """Memory first (cheap), then step times for the candidates that fit; misfits get inf.

    Besides the (mean) step: the steps without and with a prefill chunk and the share of chunk
    steps (chunked prefill; elsewhere both steps are the step and the share is 0).
    """

    def run(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fits, max_b = entry.fits(env, entry.step_arrays(a))
        n = len(fits)
        out = {"step_s": np.full(n, np.inf), "plain_step_s": np.full(n, np.inf), "chunk_step_s": np.full(n, np.inf),
               "chunk_fraction": np.zeros(n), "fits": fits, "max_batch": max_b}
        keep = np.flatnonzero(fits)
        if len(keep):
            step = entry.price(env, {k: v[keep] for k, v in a.items()})
            out["step_s"][keep] = step.step_s
            chunked = step.chunk_step_s is not None
            out["plain_step_s"][keep] = step.plain_step_s if chunked else step.step_s
            out["chunk_step_s"][keep] = step.chunk_step_s if chunked else step.step_s
            if chunked:
                out["chunk_fraction"][keep] = step.chunk_fraction
        return out
    return run


def score_decode(scenario: Scenario, cands: CandidateSet, entry: ModeEntry) -> DecodeScore:
    """Evaluate decode candidates with MTP off and (when the model has it) on."""
    variants = [0] + ([scenario.mtp_draft_tokens] if scenario.mtp_draft_tokens else [])
    w, a = scenario.workload, cands.arrays
    parts = []
    for drafts in variants:
        env = Env.of(scenario, draft_tokens=drafts)
        out = _chunked(_decode_eval(env, entry), cands)
        out["mtp"] = np.full(len(cands), drafts, dtype=np.int64)
        out["tpot_s"] = out["step_s"] / env.tokens_per_step
        chunk = None
        if not entry.prefill_pool:  # chunked prefill: the chunk steps widen the TPOT spread
            chunk = gp.ChunkTerms.of(plain_step_s=out["plain_step_s"], chunk_step_s=out["chunk_step_s"],
                                     fraction=out["chunk_fraction"], tp=a["tp"], chunk_tokens=a["prefill_chunk_tokens"],
                                     new_tokens=env.new_input_tokens)
        with np.errstate(invalid="ignore"):  # misfits (inf steps): nan, then inf
            stat = gp.tpot_slo_statistic_s(scenario.slo, tpot_s=out["tpot_s"], output_tokens=w.output_tokens,
                                           draft_tokens=drafts, acceptance=scenario.mtp.acceptance, chunk=chunk)
        out["tpot_slo_s"] = np.where(out["fits"], stat, np.inf)
        parts.append(out)
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    reps = len(variants)
    tpot = out["tpot_s"]
    att = np.tile(entry.attention_dies(a), reps)
    dies = np.tile(entry.instance_dies(a), reps)
    batch = np.tile(a["batch"], reps)
    sequences = (att * batch).astype(float)
    tpot_slo = out["tpot_slo_s"]
    rate = gp.decode_rate_per_s(scenario.slo, sequences, w.output_tokens, tpot, out["fits"], tpot_slo)
    rejected = Counter()
    rejected["memory"] = int((~out["fits"]).sum())
    slo_miss = out["fits"] & (tpot_slo > scenario.slo.tpot_s)
    rejected["tpot_slo"] = int(slo_miss.sum())
    ok = out["fits"] & ~slo_miss
    return DecodeScore(cands=cands, batch=batch, mtp=out["mtp"], rate_per_s=rate, sequences=sequences,
                       dies=dies.astype(np.int64), tpot_s=tpot, tpot_slo_s=tpot_slo, step_s=out["step_s"],
                       chunk_step_s=out["chunk_step_s"],
                       max_batch=out["max_batch"],
                       ok=ok, rejected=rejected)


@dataclass
class PrefillScore:
    """Per candidate: forward time, request slots and service time per instance, feasibility."""

    cands: CandidateSet
    step_s: np.ndarray
    slots: np.ndarray
    service_s: np.ndarray
    prefill_cv: np.ndarray  # CV of a request's own prefill time (planner.goodput.prefill_cv)
    dies: np.ndarray
    ok: np.ndarray
    rejected: Counter


def score_prefill(scenario: Scenario, cands: CandidateSet) -> PrefillScore:
    """Prefill candidates: slots per instance and the service time of one request.

    Slots and forwards per request: planner.goodput.request_slots.
    """
    env = Env.of(scenario, draft_tokens=0)

    def run(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        step = prefill_step(env, prefill_arrays(a))
        return {"step_s": step.step_s, "fits": step.fits}

    out = _chunked(run, cands)
    a = cands.arrays
    slots, forwards = gp.request_slots(a["tp"], a["batch_tokens"], env.new_input_tokens, a["dies"] // a["tp"])
    service = out["step_s"] * forwards
    rejected = Counter(memory=int((~out["fits"]).sum()))
    return PrefillScore(cands=cands, step_s=out["step_s"], slots=slots, service_s=service,
                        prefill_cv=gp.prefill_cv(scenario.workload.input_cv, a["tp"], a["batch_tokens"],
                                                 env.new_input_tokens),
                        dies=a["dies"].astype(np.int64), ok=out["fits"], rejected=rejected)


def prefill_rates(scenario: Scenario, service_s: np.ndarray, servers: np.ndarray, fixed_s: np.ndarray | float,
                  prefill_cv: np.ndarray) -> np.ndarray:
    """Largest request rate with TTFT(p) <= SLO for M/G/c pools, (N,) (planner.goodput)."""
    return gp.ttft_limited_rate_per_s(scenario.slo, scenario.workload.input_cv, service_s, servers, fixed_s,
                                      prefill_cv, scenario.workload.input_cap_sd)
