"""Score pool candidates: step times from the serving models, then rates under the SLOs.

Decode (pd, transformerless): continuous batching; at the candidate's batch ``b`` per attention
die, Little's law gives the request rate an instance sustains, ``A * b / (output * TPOT(b))``,
valid when TPOT(b) meets the SLO and the batch fits in memory.  Prefill: an instance is a group
of M/G/c servers (request slots) whose service time is the forward time; its goodput for
``n`` instances is the largest rate whose TTFT percentile meets the SLO (planner.queueing).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from planner import queueing
from planner.cost.memory import kv_bytes_per_sequence
from planner.goodput import BISECTION_STEPS
from planner.search.space import CandidateSet
from planner.serving.context import Env
from planner.serving.decode import DecodeArrays, decode_fits, shared_decode_step
from planner.serving.prefill import PrefillArrays, prefill_step
from planner.serving.transformerless import TransformerlessArrays, transformerless_fits, transformerless_step
from planner.spec.scenario import Scenario
from planner.xccl import kv_transfer_s

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
    dies: np.ndarray
    tpot_s: np.ndarray
    step_s: np.ndarray
    max_batch: np.ndarray
    ok: np.ndarray
    rejected: Counter

    def knob(self, name: str, rows: np.ndarray | int) -> np.ndarray:
        return self.cands.arrays[name][np.asarray(rows) % len(self.cands)]

    def __len__(self) -> int:
        return len(self.rate_per_s)


def _decode_arrays(a: dict[str, np.ndarray], mode: str) -> DecodeArrays | TransformerlessArrays:
    if mode == "transformerless":
        return TransformerlessArrays(
            attention_dies=_f(a["attention_dies"]), expert_dies=_f(a["expert_dies"]), domains=_f(a["domains"]),
            tp=_f(a["tp"]), ep=_f(a["ep"]), batch=_f(a["batch"]), micro_batches=_f(a["micro_batches"]),
            redundant=_f(a["redundant"]))
    chunk = a.get("chunk_tokens", np.zeros_like(a["batch"]))
    return DecodeArrays(dies=_f(a["dies"]), tp=_f(a["tp"]), ep=_f(a["ep"]), batch=_f(a["batch"]),
                        micro_batches=_f(a["micro_batches"]), redundant=_f(a["redundant"]), chunk_tokens=_f(chunk))


def _decode_eval(env: Env, mode: str):
    """Memory first (cheap), then step times for the candidates that fit; misfits get inf."""
    fits_fn = transformerless_fits if mode == "transformerless" else decode_fits
    step_fn = transformerless_step if mode == "transformerless" else shared_decode_step

    def run(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fits, max_b = fits_fn(env, _decode_arrays(a, mode))
        step_s = np.full(len(fits), np.inf)
        keep = np.flatnonzero(fits)
        if len(keep):
            step = step_fn(env, _decode_arrays({k: v[keep] for k, v in a.items()}, mode))
            step_s[keep] = step.step_s
        return {"step_s": step_s, "fits": fits, "max_batch": max_b}
    return run


def score_decode(scenario: Scenario, cands: CandidateSet, mode: str) -> DecodeScore:
    """Evaluate decode candidates with MTP off and (when the model has it) on."""
    variants = [0] + ([scenario.mtp_draft_tokens] if scenario.mtp_draft_tokens else [])
    parts = []
    for drafts in variants:
        env = Env.of(scenario, draft_tokens=drafts)
        out = _chunked(_decode_eval(env, mode), cands)
        out["mtp"] = np.full(len(cands), drafts, dtype=np.int64)
        out["tps"] = np.full(len(cands), env.tokens_per_step)
        parts.append(out)
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    a, reps = cands.arrays, len(variants)
    tpot = out["step_s"] / out["tps"]
    att = np.tile(a["attention_dies"] if mode == "transformerless" else a["dies"], reps)
    dies = np.tile(a["attention_dies"] + a["expert_dies"] if mode == "transformerless" else a["dies"], reps)
    batch = np.tile(a["batch"], reps)
    rate = att * batch / (scenario.workload.output_tokens * tpot)
    rejected = Counter()
    rejected["memory"] = int((~out["fits"]).sum())
    slo_miss = out["fits"] & (tpot > scenario.slo.tpot_s)
    rejected["tpot_slo"] = int(slo_miss.sum())
    ok = out["fits"] & ~slo_miss
    return DecodeScore(cands=cands, batch=batch, mtp=out["mtp"], rate_per_s=np.where(ok, rate, 0.0),
                       dies=dies.astype(np.int64), tpot_s=tpot, step_s=out["step_s"], max_batch=out["max_batch"],
                       ok=ok, rejected=rejected)


@dataclass
class PrefillScore:
    """Per candidate: forward time, request slots and service time per instance, feasibility."""

    cands: CandidateSet
    step_s: np.ndarray
    slots: np.ndarray
    service_s: np.ndarray
    dies: np.ndarray
    ok: np.ndarray
    rejected: Counter


def score_prefill(scenario: Scenario, cands: CandidateSet) -> PrefillScore:
    """Prefill candidates: slots per instance and the service time of one request.

    A TP group of ``tp`` dies prefills ``k = tp * batch_tokens / new_tokens`` requests per
    forward.  ``k >= 1``: ``floor(k)`` slots served in one forward each; ``k < 1``: one slot
    whose request takes ``ceil(1/k)`` forwards (chunked).
    """
    env = Env.of(scenario, draft_tokens=0)

    def run(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        step = prefill_step(env, PrefillArrays(dies=_f(a["dies"]), tp=_f(a["tp"]), ep=_f(a["ep"]),
                                               batch_tokens=_f(a["batch_tokens"]),
                                               micro_batches=_f(a["micro_batches"]), redundant=_f(a["redundant"])))
        return {"step_s": step.step_s, "fits": step.fits}

    out = _chunked(run, cands)
    a = cands.arrays
    k = a["tp"] * a["batch_tokens"] / env.new_input_tokens
    groups = a["dies"] // a["tp"]
    slots = groups * np.where(k >= 1, np.floor(k), 1.0)
    service = out["step_s"] * np.where(k >= 1, 1.0, np.ceil(1.0 / np.maximum(k, 1e-12)))
    rejected = Counter(memory=int((~out["fits"]).sum()))
    return PrefillScore(cands=cands, step_s=out["step_s"], slots=slots, service_s=service,
                        dies=a["dies"].astype(np.int64), ok=out["fits"], rejected=rejected)


def kv_handoff_s(scenario: Scenario, budget: int) -> float:
    """KV transfer of one request from its prefill die to its decode die (one link each)."""
    env = Env.of(scenario, draft_tokens=0)
    kv = kv_bytes_per_sequence(env.model, env.by, context=np.array([env.input_tokens]), tp=np.array([1.0]))
    return float(kv_transfer_s(scenario.hardware, kv_bytes=kv, layout_dies=np.array([float(budget)]),
                               links=1.0, call_s=env.calls.p2p_s)[0])


def prefill_rates(scenario: Scenario, service_s: np.ndarray, servers: np.ndarray, fixed_s: float) -> np.ndarray:
    """Largest request rate with TTFT(p) <= SLO for M/G/c pools, (N,).

    TTFT = waiting-time quantile + service + ``fixed_s`` (KV hand-off and first decode step).
    Service-time variability follows the input-length variability (cs^2 = input_cv^2).
    """
    slo = scenario.slo
    budget = slo.ttft_s - service_s - fixed_s
    cv2 = scenario.workload.input_cv ** 2
    rate = queueing.max_arrival_rate_per_s(budget, slo.ttft_percentile / 100.0, service_s, cv2, servers,
                                           BISECTION_STEPS)
    return np.where(budget >= 0, rate, 0.0)
