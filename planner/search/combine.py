"""Combine scored pools into layouts for every split of the die budget.

For prefill-decode modes the goodput of a layout is ``min(prefill rate, decode rate)``; the
best prefill over ``s`` dies and the best decode over ``B - s`` dies are found separately
(envelopes over die counts), so the maximum over splits is exact without enumerating the
product of prefill and decode candidates.  Each split then gives one layout, trimmed to the
fewest dies that keep its goodput.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from planner.inputs.scenario import Scenario
from planner.search.score import DecodeScore, PrefillScore, prefill_rates


@dataclass
class Envelope:
    """Best rate (req/s) with at most ``s`` dies, for s = 0..budget, and who achieves it."""

    rate: np.ndarray       # (B+1,)
    index: np.ndarray      # candidate index, -1 where nothing fits
    instances: np.ndarray  # instance count of that candidate
    _ordered: bool | None = field(default=None, init=False, repr=False, compare=False)

    def dies_for(self, rate: float) -> int:
        """Fewest dies whose best rate reaches ``rate``; -1 when no die count in the budget does."""
        return int(self.dies_for_each(np.asarray([rate], dtype=float))[0])

    def dies_for_each(self, rates: np.ndarray) -> np.ndarray:
        """:meth:`dies_for` of each of ``rates``, (V,) int64.

        The first die count with ``rate >= r (1 - 1e-12)``: a binary search, the envelope being a running
        maximum (non-decreasing; checked once, else a scan per rate), so the search's cost grows with the
        budget's length only through ``log B`` (a 21-pod budget has 16,129 die counts).
        """
        threshold = np.asarray(rates, dtype=float) * (1 - 1e-12)
        if self._ordered is None:
            self._ordered = bool(np.all(self.rate[1:] >= self.rate[:-1]))
        if not self._ordered:
            reach = self.rate[None, :] >= threshold[:, None]
            return np.where(reach.any(axis=1), np.argmax(reach, axis=1), -1).astype(np.int64)
        at = np.searchsorted(self.rate, threshold, side="left")
        return np.where(at < len(self.rate), at, -1).astype(np.int64)


def _prefix_max(rate: np.ndarray, index: np.ndarray, inst: np.ndarray) -> Envelope:
    """Allow fewer dies than ``s``: running maximum, remembering where it was reached."""
    best = np.maximum.accumulate(rate)
    pos = np.maximum.accumulate(np.where(rate >= best, np.arange(len(rate)), 0))
    return Envelope(rate=best, index=np.where(best > 0, index[pos], -1), instances=np.where(best > 0, inst[pos], 0))


def _counts(reps: np.ndarray) -> np.ndarray:
    """For repeat counts ``reps``: 1..reps[0], 1..reps[1], ... as one array (no Python loop)."""
    total = int(reps.sum())
    starts = np.repeat(np.cumsum(reps) - reps, reps)
    return np.arange(total) - starts + 1


def scatter_best(budget: int, dies: np.ndarray, rate: np.ndarray, cand: np.ndarray, inst: np.ndarray) -> Envelope:
    """Envelope from (dies used, rate) points: max per exact die count, then running max."""
    best = np.zeros(budget + 1)
    idx = np.full(budget + 1, -1, dtype=np.int64)
    ins = np.zeros(budget + 1, dtype=np.int64)
    keep = (dies <= budget) & (rate > 0)
    dies, rate, cand, inst = dies[keep], rate[keep], cand[keep], inst[keep]
    order = np.lexsort((cand, -rate, dies))  # per die count: highest rate first, then lowest index
    dies, rate, cand, inst = dies[order], rate[order], cand[order], inst[order]
    first = np.ones(len(dies), dtype=bool)
    first[1:] = dies[1:] != dies[:-1]
    best[dies[first]], idx[dies[first]], ins[dies[first]] = rate[first], cand[first], inst[first]
    return _prefix_max(best, idx, ins)


def admissible(dies: np.ndarray, n: np.ndarray, pod_dies: int) -> np.ndarray:
    """Pools the search may list, (R,): one that fits in a pod, or instances that divide a pod or take whole pods.

    Sizes that divide the pod and multiples of it pack first-fit without waste (1, 2, 4, 8 in an
    8-GPU server form a divisibility chain), so a pool spread over pods always packs; a pool of
    other sizes is only listed where it fits in one pod.  Layouts are still checked whole when
    listed (planner.search.plan._take).
    """
    d = np.asarray(dies, dtype=np.int64)
    aligned = np.where(d <= pod_dies, pod_dies % np.maximum(d, 1) == 0, d % pod_dies == 0)
    return (d * np.asarray(n) <= pod_dies) | aligned


def decode_envelope(budget: int, score: DecodeScore, mask: np.ndarray | None = None, pod_dies: int | None = None
                    ) -> Envelope:
    """Best ``n * rate`` over decode candidates and instance counts with ``n * dies <= s`` (admissible pools)."""
    cand = score.feasible_by_dies()  # by dies, then rate (highest first), then row; a subset keeps that order
    if mask is not None:
        cand = cand[mask[cand]]
    if len(cand) == 0:
        return scatter_best(budget, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
    d, r = score.dies[cand], score.rate_per_s[cand]
    # per die count, only the highest-rate candidate can win (n * rate is monotone in rate)
    first = np.ones(len(d), dtype=bool)
    first[1:] = d[1:] != d[:-1]
    d, r, cand = d[first], r[first], cand[first]
    reps = budget // d
    rows = np.repeat(np.arange(len(d)), reps)
    n = _counts(reps)
    if pod_dies is not None:
        keep = admissible(d[rows], n, pod_dies)
        rows, n = rows[keep], n[keep]
    return scatter_best(budget, d[rows] * n, r[rows] * n, cand[rows], n)


def pareto_prefill(score: PrefillScore) -> np.ndarray:
    """Prefill candidates not dominated at equal dies (no other is both faster and wider)."""
    cand = np.flatnonzero(score.ok)
    if len(cand) == 0:
        return cand
    d, svc, slots = score.dies[cand], score.service_s[cand], score.slots[cand]
    order = np.lexsort((cand, -slots, svc, d))
    d, slots, cand = d[order], slots[order], cand[order]
    group = np.cumsum(np.r_[True, d[1:] != d[:-1]])
    lifted = slots + group * (slots.max() + 1.0)
    running = np.maximum.accumulate(lifted)
    keep = np.r_[True, lifted[1:] > running[:-1]]
    return np.sort(cand[keep])


def prefill_envelope(scenario: Scenario, budget: int, score: PrefillScore, fixed_s: float) -> Envelope:
    """Best prefill goodput over candidates and instance counts with ``n * dies <= s`` (admissible pools)."""
    cand = pareto_prefill(score)
    if len(cand) == 0:
        return scatter_best(budget, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
    reps = budget // score.dies[cand]
    rows = np.repeat(cand, reps)
    n = _counts(reps)
    keep = admissible(score.dies[rows], n, scenario.hardware.pod_dies)
    rows, n = rows[keep], n[keep]
    rate = prefill_rates(scenario, score.service_s[rows], score.slots[rows] * n, fixed_s + score.quantum_s[rows],
                         score.quantum_load_s[rows])
    return scatter_best(budget, score.dies[rows] * n, rate, rows, n)


@dataclass(frozen=True)
class Split:
    """One layout from one budget split: goodput and the pools that achieve it."""

    goodput_per_s: float
    prefill_index: int
    prefill_instances: int
    decode_index: int
    decode_instances: int
    dies: int


def combine(budget: int, pre: Envelope, dec: Envelope, pre_dies: np.ndarray, dec_dies: np.ndarray) -> list[Split]:
    """Every split s of the budget: goodput min(G_P(s), G_D(B-s)), trimmed to the fewest dies."""
    s = np.arange(budget + 1)
    g = np.minimum(pre.rate[s], dec.rate[budget - s])
    values = np.unique(g[g > 0])
    sp, sd = pre.dies_for_each(values), dec.dies_for_each(values)
    ok = (sp >= 0) & (sd >= 0) & (sp + sd <= budget)
    return _splits(pre, dec, sp[ok], sd[ok], pre_dies, dec_dies)


def _splits(pre: Envelope, dec: Envelope, sp: np.ndarray, sd: np.ndarray, pre_dies: np.ndarray,
            dec_dies: np.ndarray) -> list[Split]:
    """One Split per distinct (prefill, count, decode, count) the die counts ``sp``, ``sd`` (V,) pick, the first
    occurrence kept, in order."""
    pi, pn, di, dn = pre.index[sp], pre.instances[sp], dec.index[sd], dec.instances[sd]
    dies = pn * pre_dies[pi] + dn * dec_dies[di]
    rate = np.minimum(pre.rate[sp], dec.rate[sd])
    out: dict[tuple[int, int, int, int], Split] = {}
    for r, a, b, c, d, e in zip(rate.tolist(), pi.tolist(), pn.tolist(), di.tolist(), dn.tolist(), dies.tolist(),
                                strict=True):
        out.setdefault((a, b, c, d), Split(r, a, b, c, d, e))
    return list(out.values())


def sized(budget: int, rate: float, pre: Envelope, dec: Envelope, pre_dies: np.ndarray, dec_dies: np.ndarray
          ) -> Split | None:
    """The fewest dies whose envelopes reach ``rate`` on both pools (None when the budget cannot)."""
    sp, sd = pre.dies_for(rate), dec.dies_for(rate)
    if sp < 0 or sd < 0 or sp + sd > budget:
        return None
    pi, pn, di, dn = int(pre.index[sp]), int(pre.instances[sp]), int(dec.index[sd]), int(dec.instances[sd])
    dies = pn * int(pre_dies[pi]) + dn * int(dec_dies[di])
    return Split(float(min(pre.rate[sp], dec.rate[sd])), pi, pn, di, dn, dies)


def combine_separate(pre: Envelope, dec: Envelope, pre_dies: np.ndarray, dec_dies: np.ndarray) -> list[Split]:
    """Pools on different hardware, each with its own budget (the envelopes' lengths): every goodput level
    either pool reaches, met by the fewest dies of each."""
    values = np.unique(np.concatenate([pre.rate[pre.rate > 0], dec.rate[dec.rate > 0]]))
    sp, sd = pre.dies_for_each(values), dec.dies_for_each(values)
    ok = (sp >= 0) & (sd >= 0)
    return _splits(pre, dec, sp[ok], sd[ok], pre_dies, dec_dies)
