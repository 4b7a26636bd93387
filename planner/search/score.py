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
from planner.modes import collocated
from planner.modes.base import ModeEntry, prefill_arrays
from planner.search import space
from planner.search.space import CandidateSet
from planner.serving.context import Env
from planner.serving.prefill import prefill_step

CHUNK = 32768  # rows per vector evaluation (bounds memory; measured fastest of 4K-64K)


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

    ``rate_per_s`` is the decode side's: Little's law at the full batch where TPOT meets the SLO there
    (pd, transformerless), or at the occupancy up to which it does (chunked prefill: the slot wait keeps
    the batch part full, planner.goodput.OccupancyCurve); ``tpot_s`` and ``tpot_slo_s`` are the full batch's,
    except at ``floored`` rows (SLO misses left unpriced): there the step, TPOT and statistic are floors under
    their own (prefill pools) or nan (chunked prefill: the row's knob group misses at an empty pool).

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
    plain_step_s: np.ndarray  # a step without a chunk (chunked prefill; else the step)
    max_batch: np.ndarray
    ok: np.ndarray
    rejected: Counter
    # rows left unpriced, already missing the TPOT SLO (score_decode: their step a floor, or nan), None: none
    floored: np.ndarray | None = None
    _by_dies: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    # goodput of (row, instance count) pairs priced so far (chunked prefill; planner.search.plan), sorted by key
    _pair_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), init=False, repr=False,
                                   compare=False)
    _pair_rates: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False, repr=False, compare=False)

    def pair_rates(self, rows: np.ndarray, n: np.ndarray, price) -> np.ndarray:
        """``price(rows, n)`` of each (row, count) pair, priced once per pair over the search's calls
        (the search lists the best layouts under each TPOT threshold from the same pairs)."""
        keys = np.asarray(rows, dtype=np.int64) * (1 << 32) + np.asarray(n, dtype=np.int64)
        at = np.clip(np.searchsorted(self._pair_keys, keys), 0, max(len(self._pair_keys) - 1, 0))
        known = (self._pair_keys[at] == keys) if len(self._pair_keys) else np.zeros(len(keys), dtype=bool)
        out = np.empty(len(keys))
        out[known] = self._pair_rates[at[known]]
        todo = np.flatnonzero(~known)
        if len(todo):
            new_keys, first = np.unique(keys[todo], return_index=True)
            fresh = price(np.asarray(rows)[todo][first], np.asarray(n)[todo][first])
            out[todo] = fresh[np.searchsorted(new_keys, keys[todo])]
            merged = np.concatenate([self._pair_keys, new_keys])
            order = np.argsort(merged, kind="stable")
            self._pair_keys, self._pair_rates = merged[order], np.concatenate([self._pair_rates, fresh])[order]
        return out

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


# The decode step's outputs per row (misfits: inf steps, chunk share 0); the last three only with chunked
# prefill (elsewhere both steps are the step and the share is 0: not stored, 10 MB each in a default plan).
_STEP_FIELDS = ("step_s", "plain_step_s", "chunk_step_s", "chunk_fraction")


def _decode_eval(env: Env, entry: ModeEntry, cands: CandidateSet, out: dict[str, np.ndarray],
                 tpot_cap_s: float | None = None) -> None:
    """Memory first (cheap, every row), then step times for the rows that fit, written into ``out``'s
    (N,) views; misfits keep inf.

    ``tpot_cap_s`` (a mean-TPOT SLO, in a mode with a prefill pool): a fitting row whose step floor
    (``entry.step_floor``, never above its step) already gives a TPOT above it misses the SLO whatever its
    step; it keeps the floor as its step (still above the SLO, so counted as a TPOT miss, rate 0) and
    ``out["floored"]`` marks it, unpriced (transformerless, default plan: ~2/3 of the rows that fit).  Chunked
    prefill: the rows whose knob group misses it at an empty pool serve no rate whatever their steps
    (:func:`_empty_pool_misses`); their steps are left nan, ``floored`` marks them (default plan: 21 K of
    the 22 K rows that fit).

    Besides the (mean) step: the steps without and with a prefill chunk and the share of chunk
    steps (chunked prefill; elsewhere both steps are the step and the share is 0).  The fitting rows
    are priced CHUNK at a time (not CHUNK candidates at a time, most of which may not fit): the step
    models are elementwise, so the rows priced together do not change a row's floats, and fewer,
    fuller calls cost less (transformerless, default plan: 0.73 -> 0.45 s measured).
    """
    a = cands.arrays
    for lo in range(0, len(cands), CHUNK):
        part = {k: v[lo:lo + CHUNK] for k, v in a.items()}
        out["fits"][lo:lo + CHUNK], out["max_batch"][lo:lo + CHUNK] = entry.fits(env, entry.step_arrays(part))
    fields = [f for f in _STEP_FIELDS if f in out]
    for f in fields:
        out[f][:] = 0.0 if f == "chunk_fraction" else np.inf
    keep = np.flatnonzero(out["fits"])
    out["floored"][:] = False
    if tpot_cap_s is not None and entry.step_floor is not None and len(keep):
        floor = entry.step_floor(env, entry.step_arrays({k: v[keep] for k, v in a.items()}))
        past = np.divide(floor, env.tokens_per_step) > tpot_cap_s  # as score_decode's TPOT and SLO miss
        out["step_s"][keep[past]] = floor[past]
        out["floored"][keep[past]] = True
        keep = keep[~past]
    if tpot_cap_s is not None and not entry.prefill_pool and len(keep):
        past = _empty_pool_misses(env, entry, a, keep, tpot_cap_s)
        for f in fields:
            if f != "chunk_fraction":
                out[f][keep[past]] = np.nan
        out["floored"][keep[past]] = True
        keep = keep[~past]
    for lo in range(0, len(keep), CHUNK):
        rows = keep[lo:lo + CHUNK]
        step = entry.price(env, {k: v[rows] for k, v in a.items()})
        chunked = step.chunk_step_s is not None
        if chunked and len(fields) == 1:
            raise ValueError(f"{entry.mode.value}: a step with prefill chunks in a mode with a prefill pool")
        out["step_s"][rows] = step.step_s
        if len(fields) > 1:
            out["plain_step_s"][rows] = step.plain_step_s if chunked else step.step_s
            out["chunk_step_s"][rows] = step.chunk_step_s if chunked else step.step_s
        if chunked:
            out["chunk_fraction"][rows] = step.chunk_fraction


def _knob_groups(entry: ModeEntry, a: dict[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` grouped by every decode knob but the batch (the rows of one TPOT-at-occupancy curve): (the
    index in ``rows`` of each group's first row, each row's group), groups in the order of their knobs."""
    key = np.zeros(len(rows), dtype=np.int64)
    for k in (k for k in entry.decode_keys if k != "batch"):  # one integer per group (mixed radix over each knob)
        values, code = np.unique(a[k][rows], return_inverse=True)
        key = key * len(values) + code.reshape(-1)
    _, first, member = np.unique(key, return_index=True, return_inverse=True)
    return first, member.reshape(-1)


def _empty_pool_misses(env: Env, entry: ModeEntry, a: dict[str, np.ndarray], rows: np.ndarray,
                       tpot_cap_s: float) -> np.ndarray:
    """Chunked prefill, a mean-TPOT SLO: the ``rows`` whose TPOT curve misses ``tpot_cap_s`` already at an empty
    pool, so they serve no rate whatever their own steps, (len(rows),) bool.

    Every curve of a knob group starts flat at the group's lightest point, ``BELOW_GRID[0]`` times its
    micro-batches (:func:`_occupancy_rates`); its mean TPOT there is that step over the tokens per step, the
    curve's batch-0 point, and where it misses the SLO :meth:`planner.goodput.OccupancyCurve.tpot_limited_batch`
    gives 0.  That point is priced here once per group, on its own (the step models are elementwise: the
    floats :func:`_occupancy_rates` prices it to), before the group's rows are.
    """
    first, member = _knob_groups(entry, a, rows)
    reps = rows[first]
    knobs = {k: v[reps] for k, v in a.items()}
    knobs["batch"] = (a["micro_batches"][reps] * float(collocated.BELOW_GRID[0])).astype(float)
    lightest = entry.price(env, knobs).step_s
    return ~(np.divide(lightest, env.tokens_per_step) <= tpot_cap_s)[member]


def _occupancy_rates(scenario: Scenario, env: Env, entry: ModeEntry, a: dict[str, np.ndarray],
                     out: dict[str, np.ndarray]) -> np.ndarray:
    """Chunked prefill: requests/s per instance up to which TPOT meets its SLO at the occupancy served, (N,).

    Each fitting row's TPOT(b) curve (planner.modes.collocated.occupancy_batches, as ``evaluate``
    prices it) is read off the rows of the same knobs at the grid's smaller batches (priced here
    already), plus the points below the grid, priced once per knob group; then
    planner.goodput.OccupancyCurve.tpot_limited_batch and Little's law there.  0 where the row does not fit.
    """
    rate = np.zeros(len(out["fits"]))
    fit = np.flatnonzero(out["fits"] & ~out["floored"])  # a floored row's curve misses at an empty pool: rate 0
    if not len(fit):
        return rate
    first, member = _knob_groups(entry, a, fit)
    grid = np.asarray(space.DECODE_BATCH_GRID, dtype=float)
    batch = a["batch"][fit].astype(float)
    col = np.searchsorted(grid, batch)
    # the steps without and with a chunk shape only a TPOT quantile: a mean-TPOT SLO reads the mean step alone
    quantile = scenario.slo.tpot_percentile is not None
    fields = ("step_s", "plain_step_s", "chunk_step_s") if quantile else ("step_s",)
    on_grid = {f: np.full((len(first), len(grid)), np.nan) for f in fields}
    for f in fields:
        on_grid[f][member, col] = out[f][fit]
    # the points below the grid, once per group: BELOW_GRID x micro-batches
    reps = fit[first]
    below = np.asarray(collocated.BELOW_GRID)
    knobs = {k: np.repeat(v[reps], len(below)) for k, v in a.items()}
    knobs["batch"] = (a["micro_batches"][reps][:, None] * below[None, :]).reshape(-1).astype(float)
    step = entry.price(env, knobs)
    low = {"step_s": step.step_s, "plain_step_s": step.plain_step_s, "chunk_step_s": step.chunk_step_s}
    mb = a["micro_batches"][fit].astype(float)
    # each row's points, increasing: [0, below..., grid <= batch]; the rest nan (pushed to the end)
    pts = np.concatenate([mb[:, None] * below[None, :], np.broadcast_to(grid, (len(fit), len(grid)))], axis=1)
    valid = np.concatenate([np.ones((len(fit), len(below)), dtype=bool),
                            (grid[None, :] <= batch[:, None]) & np.isfinite(on_grid["step_s"][member])], axis=1)
    order = np.argsort(~valid, axis=1, kind="stable")

    def curve(values: np.ndarray) -> np.ndarray:
        v = np.where(valid, values, np.nan)
        v = np.take_along_axis(v, order, axis=1)
        return np.concatenate([v[:, :1], v], axis=1)  # batch 0: the first point's values (the curve starts flat)

    batches = curve(pts)
    batches[:, 0] = 0.0
    values = {f: curve(np.concatenate([low[f].reshape(-1, len(below))[member], on_grid[f][member]], axis=1))
              for f in fields}
    tp = a["tp"][fit].astype(float)
    occ = gp.OccupancyCurve(batches=batches, step_s=values["step_s"], plain_step_s=values.get("plain_step_s"),
                            chunk_step_s=values.get("chunk_step_s"), cap=batch,
                            attention_dies=entry.attention_dies({k: v[fit] for k, v in a.items()}), tp=tp,
                            chunk_tokens=a["prefill_chunk_tokens"][fit].astype(float),
                            groups=collocated.synchronised_groups(env, a["dies"][fit], tp,
                                                                 a["pp"][fit] if "pp" in a else None),
                            new_tokens=env.new_input_tokens, output_tokens=env.output_tokens,
                            tokens_per_step=env.tokens_per_step, draft_tokens=env.draft_tokens,
                            acceptance=scenario.mtp.acceptance)
    rate[fit] = occ.rate_per_s(occ.tpot_limited_batch(scenario.slo))
    return rate


def score_decode(scenario: Scenario, cands: CandidateSet, entry: ModeEntry, floors: bool = True) -> DecodeScore:
    """Evaluate decode candidates with MTP off and (when the model has it) on.

    ``floors``: rows that miss a mean-TPOT SLO whatever their step (a step floor past it, or a chunked-prefill
    curve past it at an empty pool) are not priced (:func:`_decode_eval`; their ``floored`` mark set): the same
    rates, feasibility and rejected counts, and every row that meets the SLO priced exactly; False prices every
    row that fits."""
    variants = [0] + ([scenario.mtp_draft_tokens] if scenario.mtp_draft_tokens else [])
    w, a = scenario.workload, cands.arrays
    n, reps = len(cands), len(variants)
    # every variant's rows written into one (reps N,) array per field (no concatenation afterwards)
    steps = _STEP_FIELDS if not entry.prefill_pool else _STEP_FIELDS[:1]
    whole = {f: np.empty(reps * n) for f in (*steps, "max_batch", "tpot_s", "tpot_slo_s")}
    whole["fits"] = np.empty(reps * n, dtype=bool)
    whole["floored"] = np.empty(reps * n, dtype=bool)
    # a mean-TPOT SLO: a row whose step floor misses it at the full batch (prefill pools), or whose knob group's
    # TPOT misses it at an empty pool (chunked prefill), is not priced
    cap = scenario.slo.tpot_s if floors and scenario.slo.tpot_percentile is None else None
    whole["mtp"] = np.repeat(np.asarray(variants, dtype=np.int64), n)
    if not entry.prefill_pool:
        whole["tpot_rate_per_s"] = np.empty(reps * n)
    for v, drafts in enumerate(variants):
        env = Env.of(scenario, draft_tokens=drafts)
        out = {k: x[v * n:(v + 1) * n] for k, x in whole.items()}
        _decode_eval(env, entry, cands, out, cap)
        np.divide(out["step_s"], env.tokens_per_step, out=out["tpot_s"])
        chunk = None
        if not entry.prefill_pool:  # chunked prefill: the chunk steps widen the TPOT spread
            chunk = gp.ChunkTerms.of(plain_step_s=out["plain_step_s"], chunk_step_s=out["chunk_step_s"],
                                     fraction=out["chunk_fraction"], tp=a["tp"], chunk_tokens=a["prefill_chunk_tokens"],
                                     new_tokens=env.new_input_tokens)
        with np.errstate(invalid="ignore"):  # misfits (inf steps): nan, then inf
            stat = gp.tpot_slo_statistic_s(scenario.slo, tpot_s=out["tpot_s"], output_tokens=w.output_tokens,
                                           draft_tokens=drafts, acceptance=scenario.mtp.acceptance, chunk=chunk)
        out["tpot_slo_s"][:] = np.where(out["fits"], stat, np.inf)
        if not entry.prefill_pool:
            out["tpot_rate_per_s"][:] = _occupancy_rates(scenario, env, entry, a, out)
    out = whole
    tpot = out["tpot_s"]
    att = np.tile(entry.attention_dies(a), reps)
    dies = np.tile(entry.instance_dies(a).astype(np.int64), reps)
    batch = np.tile(a["batch"], reps)
    sequences = np.asarray(att * batch, dtype=float)
    tpot_slo = out["tpot_slo_s"]
    rate = gp.decode_rate_per_s(scenario.slo, sequences, w.output_tokens, tpot, out["fits"], tpot_slo)
    slo_miss = out["fits"] & (tpot_slo > scenario.slo.tpot_s)
    if "tpot_rate_per_s" in out:  # chunked prefill: TPOT at the occupancy served, not at the full batch
        rate = out["tpot_rate_per_s"]
        slo_miss = out["fits"] & (rate <= 0)
    rejected = Counter()
    rejected["memory"] = int((~out["fits"]).sum())
    rejected["tpot_slo"] = int(slo_miss.sum())
    ok = out["fits"] & ~slo_miss
    return DecodeScore(cands=cands, batch=batch, mtp=out["mtp"], rate_per_s=rate, sequences=sequences,
                       dies=dies, tpot_s=tpot, tpot_slo_s=tpot_slo, step_s=out["step_s"],
                       chunk_step_s=out.get("chunk_step_s", out["step_s"]),
                       plain_step_s=out.get("plain_step_s", out["step_s"]),
                       max_batch=out["max_batch"],
                       ok=ok, rejected=rejected, floored=out["floored"])


@dataclass
class PrefillScore:
    """Per candidate: forward time, request slots and service time per instance, feasibility."""

    cands: CandidateSet
    step_s: np.ndarray
    slots: np.ndarray
    service_s: np.ndarray
    quantum_s: np.ndarray  # the quantum at zero load (0: a prefill pool starts a forward at once)
    quantum_load_s: np.ndarray  # its part growing with the stream's utilization (planner.goodput.prefill_queue)
    dies: np.ndarray
    ok: np.ndarray
    rejected: Counter


def score_prefill(scenario: Scenario, cands: CandidateSet) -> PrefillScore:
    """Prefill candidates: slots per instance and the service time of one request.

    Servers (one token stream per TP group), service and quantum: planner.goodput.prefill_queue.
    """
    env = Env.of(scenario, draft_tokens=0)

    def run(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        step = prefill_step(env, prefill_arrays(a))
        return {"step_s": step.step_s, "fits": step.fits}

    out = _chunked(run, cands)
    a = cands.arrays
    service, slots, quantum, load = gp.prefill_queue(a["tp"], a["batch_tokens"], env.new_input_tokens,
                                                     a["dies"] // a["tp"], out["step_s"])
    rejected = Counter(memory=int((~out["fits"]).sum()))
    return PrefillScore(cands=cands, step_s=out["step_s"], slots=slots, service_s=service,
                        quantum_s=quantum, quantum_load_s=load,
                        dies=a["dies"].astype(np.int64), ok=out["fits"], rejected=rejected)


def prefill_rates(scenario: Scenario, service_s: np.ndarray, servers: np.ndarray, fixed_s: np.ndarray | float,
                  quantum_load_s: np.ndarray | float = 0.0) -> np.ndarray:
    """Largest request rate with TTFT(p) <= SLO for prefill token streams, (N,) (planner.goodput)."""
    return gp.ttft_limited_rate_per_s(scenario.slo, scenario.workload.input_cv, service_s, servers, fixed_s,
                                      None, scenario.workload.input_cap_sd, quantum_load_s)
