"""``plan``: search every mode for the die budget and rank layouts by goodput per die."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from planner import goodput as gp
from planner.errors import PlannerError
from planner.evaluate import (
    Evaluation,
    GoodputPoint,
    StepMemo,
    evaluate,
    layout_goodputs,
    place_layout,
    price_decode_pools,
    priced_curves,
    priced_whole,
)
from planner.inputs.layout import Layout, Mode, own_scenario, parse_layout
from planner.inputs.scenario import Scenario
from planner.modes import ALL_MODES, MODES
from planner.search import combine as cb
from planner.search import space
from planner.search.score import DecodeScore, PrefillScore, score_decode, score_prefill
from planner.serving.context import Env


@dataclass
class Planned:
    """One ranked layout with its exact metrics (the same numbers ``planner evaluate`` gives)."""

    mode: Mode
    layout: Layout
    metrics: GoodputPoint
    search_goodput_per_s: float
    # the layout priced under its own scenario (``evaluate``), for the reports' per-pool details
    evaluation: Evaluation | None = field(default=None, repr=False, compare=False)

    @property
    def dies(self) -> int:
        return self.layout.dies

    @property
    def per_die(self) -> float:
        return self.metrics.goodput_requests_per_s / self.dies


@dataclass(frozen=True, slots=True)
class Pins:
    """What the user's serving stack fixes (``planner plan --tp / --pp / --max-batch``): every pool's TP
    degree (a transformerless pool's attention TP), every pool's pipeline stages, and the decode batch per
    die at most.  None: searched.  :func:`check_pins` refuses values the search cannot price."""

    tp: int | None = None
    pp: int | None = None
    max_batch: int | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.tp, self.pp, self.max_batch))

    def flags(self) -> str:
        """The pins as the flags that set them (``--tp 2 --max-batch 448``; empty: none)."""
        return " ".join(f"--{name.replace('_', '-')} {value}" for name, value in
                        (("tp", self.tp), ("pp", self.pp), ("max_batch", self.max_batch)) if value is not None)

    def allow(self, layout: Layout) -> bool:
        """Whether every pool of ``layout`` meets the pins (as :func:`_pinned` keeps search candidates)."""
        pools = [(pool, decode) for pool, decode in ((layout.decode, True), (layout.prefill, False))
                 if pool is not None]
        return all((self.tp is None or pool.tp == self.tp) and (self.pp is None or pool.stages == self.pp)
                   and (not decode or self.max_batch is None or pool.batch <= self.max_batch)
                   for pool, decode in pools)


def check_pins(scenario: Scenario, pins: Pins, max_pp: int | None = None, budget: int | None = None) -> None:
    """Refuse pins no candidate can meet, one line naming the flag (a plan would otherwise report nothing fits)."""
    model, hw = scenario.model, scenario.hardware
    heads = model.attention.num_heads
    if pins.tp is not None:
        grid = space.TP_GRID if model.is_moe else space.DENSE_TP_GRID
        if pins.tp not in grid or heads % pins.tp:
            choices = ", ".join(str(t) for t in grid if heads % t == 0)
            raise PlannerError(f"--tp {pins.tp}: the search prices TP {choices} for {model.name} "
                               f"({heads} attention heads{'' if model.is_moe else ', dense'})",
                               where="plan", fix=f"choose --tp among {choices}")
        if pins.tp > max(space.TP_GRID) and pins.tp > hw.pod_dies:
            raise PlannerError(f"--tp {pins.tp} is wider than one {hw.name} pod ({hw.pod_dies} dies): its all-reduce "
                               "would cross the cluster fabric every layer", where="plan",
                               fix=f"choose --tp <= {max(max(space.TP_GRID), hw.pod_dies)}")
        if pins.tp > 1 and not model.attention.decode_tp_useful:
            raise PlannerError(f"--tp {pins.tp}: {model.name}'s decode runs at TP1 in every mode the search prices "
                               "(MLA: each TP rank would read the whole latent KV cache, so decode runs DP "
                               "attention), and --tp pins every pool", where="plan", fix="drop --tp (or give 1)")
    if pins.pp is not None:
        if pins.pp > 1 and model.is_moe:
            raise PlannerError(f"--pp {pins.pp}: pipeline stages are modelled for dense models only ({model.name} has "
                               "routed experts)", where="plan", fix="drop --pp (or give 1)")
        if pins.pp not in space.PP_GRID:
            raise PlannerError(f"--pp {pins.pp}: the search prices {', '.join(map(str, space.PP_GRID))} pipeline "
                               "stages", where="plan", fix=f"choose --pp among {', '.join(map(str, space.PP_GRID))}")
        if max_pp is not None and pins.pp > max_pp:
            raise PlannerError(f"--pp {pins.pp} is above --max-pp {max_pp}", where="plan", fix="drop one of them")
    group = (pins.tp or 1) * (pins.pp or 1)
    if budget is not None and group > budget:
        raise PlannerError(f"--tp {pins.tp or 1} x --pp {pins.pp or 1} = {group} dies per instance is more than the "
                           f"budget's {budget}", where="plan", fix="add dies (--dies, --pods) or loosen the pins")


def _pinned(cands: space.CandidateSet, pins: Pins | None, decode: bool) -> space.CandidateSet:
    """Keep the candidates the pins allow (each drop counted under its reason); ``decode``: a decode pool
    (``max_batch`` caps its batch per die; a prefill pool's batch is tokens)."""
    if not pins or not len(cands):
        return cands
    a = cands.arrays
    if pins.tp is not None:
        cands.keep(a["tp"] == pins.tp, "tp_not_pinned")
    if pins.pp is not None:
        pp = a["pp"] if "pp" in a else np.ones(len(cands), dtype=np.int64)
        cands.keep(pp == pins.pp, "pp_not_pinned")
    if decode and pins.max_batch is not None and "batch" in a:
        cands.keep(a["batch"] <= pins.max_batch, "batch_over_max_batch")
    return cands


@dataclass
class Plan:
    scenario: Scenario
    budget: int
    modes: tuple[Mode, ...] = ALL_MODES
    candidates_evaluated: int = 0
    feasible: int = 0
    rejected: Counter = field(default_factory=Counter)
    layouts: list[Planned] = field(default_factory=list)
    pareto: list[Planned] = field(default_factory=list)
    near_misses: list[dict[str, Any]] = field(default_factory=list)
    pareto_dropped: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    target_rate_per_s: float | None = None
    max_pp: int | None = None  # the most pipeline stages searched (None: the whole grid)
    pins: Pins = field(default_factory=Pins)  # what the stack fixes (none: the whole search)


def _prefill_layout(p: PrefillScore, i: int, n: int, hardware: str | None = None) -> dict[str, int | str]:
    out: dict[str, int | str] = {"instances": n, **{k: int(v[i]) for k, v in p.cands.arrays.items()}}
    if out.get("pp") == 1:  # one stage: the key's default, left out
        out.pop("pp")
    return {"hardware": hardware, **out} if hardware else out


def _decode_layout(d: DecodeScore, i: int, n: int, mode: Mode) -> dict[str, int | str]:
    out: dict[str, int | str] = {"instances": n, **{k: int(d.knob(k, i)) for k in MODES[mode].decode_keys}}
    if out.get("pp") == 1:  # one stage: the key's default, left out
        out.pop("pp")
    if not out.get("shared_expert_replicas"):  # the default placement: on the token's die
        out.pop("shared_expert_replicas", None)
    else:
        out["shared_experts"] = "replicated"
    return out


def _layout(mode: Mode, scenario: Scenario, prefill: dict | None, decode: dict, mtp: int) -> Layout:
    sc = scenario.document()
    sc["mtp"]["acceptance"] = scenario.mtp.acceptance if mtp else 0.0
    data = {"mode": mode.value, "decode": decode, "scenario": sc}
    if prefill is not None:
        data["prefill"] = prefill
    return parse_layout(data, "search")


# Listed layouts whose TPOT(b) curves are priced in one vector call (rows of the step models per call:
# well under planner.serving.transformerless.DEDUP_MIN_ROWS, so the attention side is priced row by row).
CURVES_PER_CALL = 64


def _exact(listed: dict[str, tuple[Mode, Layout, float]], scenario: Scenario) -> dict[str, Planned]:
    """The listed layouts (key -> mode, layout, search rate) priced exactly (``evaluate`` + ``layout_goodput``),
    those meeting the SLOs kept in listing order.  The decode TPOT(b) curves of layouts of one mode and one
    scenario are priced together (the same floats as one by one: planner.evaluate.priced_curves)."""
    # one Scenario per distinct [scenario] table (own_scenario builds a new one each call), so the memo's
    # steps are shared by the layouts with the same pools under the same scenario
    scenarios: dict[str | None, Scenario] = {}
    memo: StepMemo = {}

    def own(layout: Layout) -> Scenario:
        doc = layout.scenario.model_dump_json() if layout.scenario is not None else None
        if doc not in scenarios:
            scenarios[doc] = own_scenario(layout, scenario)
        return scenarios[doc]

    price_decode_pools([(layout, own(layout)) for _, layout, _ in listed.values()], "search", memo)
    evs = {key: evaluate(layout, own(layout), "search", memo) for key, (_, layout, _) in listed.items()}
    groups: dict[tuple, list[str]] = {}
    for key, ev in evs.items():
        lay = ev.layout
        if priced_whole(ev):
            sc = lay.scenario.model_dump_json() if lay.scenario else None
            groups.setdefault((lay.mode, sc, getattr(lay.decode, "hardware", None)), []).append(key)
    for keys in groups.values():
        for lo in range(0, len(keys), CURVES_PER_CALL):
            part = keys[lo:lo + CURVES_PER_CALL]
            for key, curve in zip(part, priced_curves([evs[k] for k in part]), strict=True):
                evs[key] = replace(evs[key], curve=curve)
    found = {}
    keys = list(listed)
    points = dict(zip(keys, layout_goodputs([evs[k] for k in keys]), strict=True))
    for key, (mode, layout, rate) in listed.items():
        metrics = points[key]
        if metrics.meets_slo:
            found[key] = Planned(mode=mode, layout=layout, metrics=metrics, search_goodput_per_s=rate,
                                 evaluation=evs[key])
    return found


def pair_goodput(scenario: Scenario, pre: PrefillScore, dec: DecodeScore, splits: list[cb.Split]) -> np.ndarray:
    """Goodput of the (prefill, decode) pairs the splits chose, exactly as ``evaluate`` prices them, (S,).

    The envelopes choose pairs with a KV hand-off over one link and no first decode step in TTFT
    (so the prefill side is scored once for every decode pool); this re-scores each chosen pair
    with its own hand-off (``min(tp_p pp_p, tp_d pp_d)`` links over the fabric spanning the layout) and its
    decode pool's TPOT, through planner.goodput, in one vector call.
    """
    pi = np.array([s.prefill_index for s in splits], dtype=np.int64)
    pn = np.array([s.prefill_instances for s in splits], dtype=float)
    di = np.array([s.decode_index for s in splits], dtype=np.int64)
    dn = np.array([s.decode_instances for s in splits], dtype=float)
    env = Env.of(scenario, draft_tokens=0)
    pre_pp = pre.cands.arrays["pp"][pi] if "pp" in pre.cands.arrays else 1.0
    dec_pp = dec.knob("pp", di) if "pp" in dec.cands.arrays else 1.0
    kv = gp.kv_handoff_s(scenario.hardware, env.model, env.by, input_tokens=env.input_tokens,
                         prefill_tp=pre.cands.arrays["tp"][pi], decode_tp=dec.knob("tp", di),
                         prefill_pp=pre_pp, decode_pp=dec_pp,
                         same_pod=(pn * pre.dies[pi] + dn * dec.dies[di] <= scenario.hardware.pod_dies)
                         & (scenario.prefill_hardware is None),
                         p2p_s=env.calls.p2p_s)
    g = gp.goodput(scenario.slo, input_cv=scenario.workload.input_cv, output_tokens=scenario.workload.output_tokens,
                   service_s=pre.service_s[pi], servers=pre.slots[pi] * pn,
                   fixed_s=kv + dec.tpot_s[di] + pre.quantum_s[pi],
                   sequences=dec.sequences[di] * dn, tpot_s=dec.tpot_s[di], fits=pre.ok[pi] & dec.ok[di],
                   tpot_slo_s=dec.tpot_slo_s[di], quantum_load_s=pre.quantum_load_s[pi],
                   input_cap_sd=scenario.workload.input_cap_sd)
    return g.goodput_per_s


# Target-rate sizing: the envelopes choose pairs without the first decode step in TTFT, so a pair
# sized for exactly R can fall just short once priced exactly; these margins on the prefill side
# find the smallest pair that does reach R.
SIZING_MARGINS = (1.0, 1.01, 1.03, 1.1, 1.3)


def _pd_splits(scenario: Scenario, budget: int, pre: PrefillScore, pre_env: cb.Envelope, dec: DecodeScore,
               mask: np.ndarray | None = None, target: float | None = None) -> list[cb.Split]:
    """The (prefill, decode) pairs the envelopes choose per budget split (or per sizing margin for a target)."""
    env_d = cb.decode_envelope(budget, dec, mask, scenario.hardware.pod_dies)
    mixed = scenario.prefill_hardware is not None
    total = budget + (scenario.prefill_dies if mixed else 0)
    if target is None:
        return (cb.combine_separate(pre_env, env_d, pre.dies, dec.dies) if mixed
                else cb.combine(budget, pre_env, env_d, pre.dies, dec.dies))
    sized = (cb.sized(total, target * f, pre_env, env_d, pre.dies, dec.dies) for f in SIZING_MARGINS)
    return list({(s.prefill_index, s.prefill_instances, s.decode_index, s.decode_instances): s
                 for s in sized if s is not None}.values())


def _pd_items(scenario: Scenario, mode: Mode, pre: PrefillScore, dec: DecodeScore, splits: list[cb.Split],
              rates: np.ndarray) -> list[tuple[float, int, Callable[[], Layout]]]:
    """(goodput, dies, layout builder) per split, given the splits' goodputs (:func:`pair_goodput`)."""
    mixed = scenario.prefill_hardware is not None
    out = []
    for s, rate in zip(splits, rates, strict=True):
        hw = scenario.prefill_hardware.name if mixed else None
        build = partial(lambda s, hw: _layout(mode, scenario,
                                              _prefill_layout(pre, s.prefill_index, s.prefill_instances, hw),
                                              _decode_layout(dec, s.decode_index, s.decode_instances, mode),
                                              int(dec.mtp[s.decode_index])), s, hw)
        out.append((float(rate), s.dies, build))
    return out


def _pd_batched(scenario: Scenario, budget: int, mode: Mode, pre: PrefillScore, pre_env: cb.Envelope,
                dec: DecodeScore, masks: list[np.ndarray | None], target: float | None
                ) -> list[list[tuple[float, int, Callable[[], Layout]]]]:
    """(goodput, dies, layout builder) per split of each mask, the goodputs of every mask's splits priced in one
    vector call
    (planner.goodput is elementwise over pairs, so each split gets the floats of its own call; one call
    instead of one per TPOT threshold: the per-call bisection overhead dominated, 0.15 s per default plan)."""
    splits = [_pd_splits(scenario, budget, pre, pre_env, dec, mask, target) for mask in masks]
    flat = [s for part in splits for s in part]
    rates = pair_goodput(scenario, pre, dec, flat) if flat else np.zeros(0)
    out, lo = [], 0
    for part in splits:
        out.append(_pd_items(scenario, mode, pre, dec, part, rates[lo:lo + len(part)]) if part else [])
        lo += len(part)
    return out


def _chunked_side(scenario: Scenario, dec: DecodeScore, rows: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(service time, servers per instance, quantum at zero load, its load part) of decode rows that
    prefill in chunks inside their steps: a token stream per TP group whose forward is a step carrying
    a chunk, idling on steps without one (planner.goodput.prefill_queue).
    """
    w = scenario.workload
    tp, chunk = dec.knob("tp", rows), dec.knob("prefill_chunk_tokens", rows)
    new_tokens = w.input_tokens * (1 - w.cache_hit_rate)
    return gp.prefill_queue(tp, chunk, new_tokens, dec.dies[rows] / tp, dec.chunk_step_s[rows],
                            dec.plain_step_s[rows])


def _chunked_goodput(scenario: Scenario, dec: DecodeScore, rows: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Goodput of ``n`` instances of decode rows that prefill in chunks inside their steps (planner.goodput)."""
    w = scenario.workload

    def price(rows: np.ndarray, n: np.ndarray) -> np.ndarray:
        service, slots, quantum, load = _chunked_side(scenario, dec, rows)
        return gp.chunked_goodput_per_s(scenario.slo, input_cv=w.input_cv, output_tokens=w.output_tokens,
                                        service_s=service, servers=slots * n, fixed_s=quantum, quantum_load_s=load,
                                        sequences=dec.sequences[rows] * n, tpot_s=dec.tpot_s[rows], fits=dec.ok[rows],
                                        tpot_rate_per_s=dec.rate_per_s[rows] * n, prefill_cv=w.input_cv,
                                        output_cv=w.output_cv, input_cap_sd=w.input_cap_sd)

    return dec.pair_rates(rows, n, price)


# Inverse sizing of chunked-prefill instances: die totals tried past the first one that serves the
# target, so the listing has alternatives (all with at most this many times the fewest dies).
SIZING_SLACK = 1.25


def _sized_counts(scenario: Scenario, budget: int, dec: DecodeScore, cand: np.ndarray, target: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, instance counts, goodput) of every candidate x count that could serve ``target`` with the
    fewest dies, tried in order of total dies (exhaustive up to the first total that serves it).

    A count must reach the decode side's linear rate, ``n >= target / rate``, and keep the prefill
    side below saturation, ``n >= target * service / slots``; totals are walked upward from there.
    """
    service, slots, _, _ = _chunked_side(scenario, dec, cand)
    lower = np.maximum(np.ceil(target / dec.rate_per_s[cand] * (1 - 1e-12)),
                       np.ceil(target * service / slots * (1 - 1e-12)))
    dies = dec.dies[cand]
    keep = lower * dies <= budget
    cand, dies, lower = cand[keep], dies[keep], lower[keep]
    rows, counts, rates, stop = [], [], [], budget
    for total in range(int((lower * dies).min(initial=budget + 1)), budget + 1):
        if total > stop:
            break
        hit = (total % dies == 0) & (total // dies >= lower)
        hit &= cb.admissible(dies, total // dies, scenario.hardware.pod_dies)
        if not hit.any():
            continue
        r, n = cand[hit], (total // dies[hit]).astype(float)
        g = _chunked_goodput(scenario, dec, r, n)
        rows.append(r), counts.append(n), rates.append(g)
        if stop == budget and (g >= target * (1 - 1e-12)).any():
            stop = min(budget, int(total * SIZING_SLACK))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    return np.concatenate(rows), np.concatenate(counts), np.concatenate(rates)


def _all_counts(scenario: Scenario, budget: int, dec: DecodeScore, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, instance count) of ``cand`` within the budget whose pool the search may list (admissible)."""
    reps = budget // dec.dies[cand]
    rows, n = np.repeat(cand, reps), cb._counts(reps)
    keep = cb.admissible(dec.dies[rows], n, scenario.hardware.pod_dies)
    return rows[keep], n[keep]


def _collocated_points(scenario: Scenario, budget: int, dec: DecodeScore, cand: np.ndarray, first: int = 4
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, instance counts, goodput) of every (candidate, count) that can reach the best goodput at its
    die total: the search's envelope over them equals the one over the whole space.

    ``n`` instances of a row serve at most ``n u`` with ``u = min(decode rate, slots / service)``
    (Little's law; an M/G/c prefill queue stays below ``c / E[S]``).  The ``first`` rows per die count
    with the highest ``u`` are priced at every count; then every other (row, count) whose bound reaches
    the envelope they give at its die total (a point below the envelope cannot move it), so the prefill
    side is ranked too, not only the decode rate.
    """
    service, slots, _, _ = _chunked_side(scenario, dec, cand)
    u = np.minimum(dec.rate_per_s[cand], slots / service)
    order = np.lexsort((cand, -u, dec.dies[cand]))
    c, uc = cand[order], u[order]
    rank = np.arange(len(c)) - np.searchsorted(dec.dies[c], dec.dies[c], side="left")
    head = rank < first
    rows, n = _all_counts(scenario, budget, dec, c[head])
    rate = _chunked_goodput(scenario, dec, rows, n)
    if head.all():
        return rows, n, rate
    env = cb.scatter_best(budget, (dec.dies[rows] * n).astype(np.int64), rate, rows, n.astype(np.int64))
    bound = np.zeros(len(dec))
    bound[c] = uc
    more, m = _all_counts(scenario, budget, dec, c[~head])
    reach = m * bound[more] >= env.rate[dec.dies[more] * m] * (1 - 1e-9)
    more, m = more[reach], m[reach]
    return (np.concatenate([rows, more]), np.concatenate([n, m]),
            np.concatenate([rate, _chunked_goodput(scenario, dec, more, m)]))


def _collocated(scenario: Scenario, budget: int, mode: Mode, dec: DecodeScore, mask: np.ndarray | None = None,
                target: float | None = None) -> list[tuple[float, int, Callable[[], Layout]]]:
    """Chunked-prefill modes: every candidate and instance count that can be the best at its die total
    (:func:`_collocated_points`), then one layout per goodput level of the envelope.

    With a target rate every candidate is sized (:func:`_sized_counts`).
    """
    ok = dec.ok if mask is None else dec.ok & mask
    cand = np.flatnonzero(ok)
    if len(cand) == 0:
        return []
    if target is None:
        rows, n, rate = _collocated_points(scenario, budget, dec, cand)
    else:
        rows, n, rate = _sized_counts(scenario, budget, dec, cand, target)
    env = cb.scatter_best(budget, (dec.dies[rows] * n).astype(np.int64), rate, rows, n.astype(np.int64))
    out, seen = [], set()
    values = np.unique(env.rate[env.rate > 0]) if target is None else [target]
    for value in values:
        s = env.dies_for(value)
        if s < 0:
            continue
        i, m = int(env.index[s]), int(env.instances[s])
        if (i, m) not in seen:
            seen.add((i, m))
            build = partial(lambda i, m: _layout(mode, scenario, None, _decode_layout(dec, i, m, mode),
                                                 int(dec.mtp[i])), i, m)
            out.append((float(env.rate[s]), m * int(dec.dies[i]), build))
    return out


def _rank_key(p: Planned) -> tuple:
    return (-round(p.per_die, 12), p.dies, round(p.metrics.tpot_s, 12), p.mode.value,
            str(sorted(p.layout.to_dict().items())))


def _sizing_key(p: Planned) -> tuple:
    """Inverse sizing: fewest dies first, then the most goodput (headroom), then the usual order."""
    return (p.dies, -round(p.metrics.goodput_requests_per_s, 12), *_rank_key(p)[2:])


# The Pareto front shown (goodput per die vs TPOT) leaves out two kinds of point that answer no
# capacity question: a layout serving less than PARETO_FLOOR_FRAC of the best goodput per die (the
# unfiltered front started with a 536-die layout at 0.7 tok/s per die), and one dominated by a wide
# margin -- another front point within PARETO_TPOT_MARGIN of its TPOT serves PARETO_GOODPUT_MARGIN
# times as much per die.  ``Plan.pareto_dropped`` counts the points each rule removed.
PARETO_FLOOR_FRAC = 0.25
PARETO_TPOT_MARGIN = 0.05
PARETO_GOODPUT_MARGIN = 2.0


def _pareto(planned: list[Planned]) -> tuple[list[Planned], dict[str, int]]:
    """Layouts not beaten on both goodput per die (higher) and TPOT (lower), without the points
    below the floor or dominated by a wide margin; and how many each rule dropped."""
    pts = sorted(planned, key=lambda p: (p.metrics.tpot_s, -p.per_die))
    front, best = [], -1.0
    for p in pts:
        if p.per_die > best * (1 + 1e-9):
            front.append(p)
            best = p.per_die
    floor = PARETO_FLOOR_FRAC * max((p.per_die for p in front), default=0.0)
    kept = [p for p in front if p.per_die >= floor]
    wide = [p for p in kept if any(q.metrics.tpot_s <= p.metrics.tpot_s * (1 + PARETO_TPOT_MARGIN)
                                   and q.per_die >= p.per_die * PARETO_GOODPUT_MARGIN for q in kept)]
    return ([p for p in kept if p not in wide],
            {"below_floor": len(front) - len(kept), "dominated_by_wide_margin": len(wide)})


def _near_misses(scenario: Scenario, scores: dict[Mode, DecodeScore], pre: PrefillScore | None,
                 fixed_s: float) -> list[dict[str, Any]]:
    out = []
    for mode, dec in scores.items():
        fits = np.flatnonzero(dec.max_batch >= dec.batch)
        if len(fits):
            i = int(fits[np.argmin(dec.tpot_s[fits])])
            # a floored row's TPOT is a floor under its own (or nan, which np.argmin returns first), so a priced
            # row first at the least is the least of all; a floored row there: every fitting row priced
            if dec.floored is not None and dec.floored[i]:
                dec = score_decode(scenario, dec.cands, MODES[mode], floors=False)
                i = int(fits[np.argmin(dec.tpot_s[fits])])
            out.append({"mode": mode.value, "pool": "decode", "best_tpot_s": float(dec.tpot_s[i]),
                        "meets_tpot_slo": bool(dec.tpot_slo_s[i] <= scenario.slo.tpot_s),
                        "layout": _decode_layout(dec, i, 1, mode)})
    if pre is not None and pre.ok.any():
        i = int(np.flatnonzero(pre.ok)[np.argmin(pre.service_s[pre.ok])])
        out.append({"mode": "pd/transformerless", "pool": "prefill",
                    "best_ttft_s": float(pre.service_s[i] + pre.quantum_s[i] + fixed_s),
                    "meets_ttft_slo": bool(pre.service_s[i] + pre.quantum_s[i] + fixed_s <= scenario.slo.ttft_s),
                    "layout": _prefill_layout(pre, i, 1)})
    return out


@dataclass(frozen=True, slots=True)
class WeightsAgainstBudget:
    """One copy of a model's weights against the HBM a die budget may use (a plan with no near miss:
    nothing fits in memory).  ``planner.cost.memory``: weights as held (MTP module, bf16 head and
    router included), usable bytes per die after the runtime and communication reserves."""

    weights_bytes: float
    usable_bytes_per_die: float
    dies: int

    @property
    def usable_bytes(self) -> float:
        """The budget's usable HBM, all dies."""
        return self.usable_bytes_per_die * self.dies

    @property
    def fits_once(self) -> bool:
        """One copy of the weights fits the budget's usable HBM (then the layouts searched do not)."""
        return self.weights_bytes < self.usable_bytes


def weights_against_budget(scenario: Scenario, budget: int) -> WeightsAgainstBudget:
    """One copy of the scenario model's weights against ``budget`` dies of its (decode) hardware."""
    from planner.cost.memory import WeightShare, usable_bytes, weight_bytes

    model = scenario.model
    share = WeightShare(tp=np.ones(1), slots=np.full(1, model.ffn.num_routed_experts))
    weights = weight_bytes(model, Env.of(scenario).by, share)
    return WeightsAgainstBudget(weights_bytes=float(sum(float(v[0]) for v in weights.values())),
                                usable_bytes_per_die=usable_bytes(scenario.hardware), dies=budget)


# Instances larger than one pod span pods (their all-to-all then runs on the fabric joining pods).
# The search considers instances up to this many dies, or one pod if pods are larger, so the
# candidate space depends on the pod, not on how many pods the budget has: more pods add instance
# counts and budget splits, not candidates.  1024 dies exceed every published MoE instance
# (DeepSeek EP144 decode on H800, CloudMatrix-Infer EP320, xDeepServe 480 + 288 dies).
SPAN_LIMIT_DIES = 1024


# Besides the best per die, the layouts with the most total goodput are priced exactly (so the
# best total is never lost to the per-die ranking).
BEST_TOTAL_LISTED = 3

# The search counts dies as one budget; instances must also pack whole into pods (planner.placement).
# A layout that does not is skipped and the next best is tried, up to this many per list.
PACKING_TRIES = 200


def prefill_scenario(scenario: Scenario) -> Scenario:
    """The scenario the prefill pool sees: on its own hardware when the scenario names one."""
    hw = scenario.prefill_hardware
    return scenario if hw is None else replace(scenario, hardware=hw, dies=scenario.prefill_dies,
                                               pods=scenario.prefill_pods)


def placement_summary(layout: Layout, scenario: Scenario) -> tuple[int, dict[str, list[int]], str | None]:
    """(pods used, pods per pool, fabric KV crosses) of a layout planned for ``scenario``."""
    pl = place_layout(layout, prefill_scenario(scenario), scenario)
    kinds = pl.kinds()
    by_pool = {q.pool: list(q.pods) for _, placed in kinds for q in placed.pools}
    hw, kv = scenario.hardware, None
    if layout.prefill is not None and layout.decode is not None:
        kv = hw.kv_fabric(pl.same_pod).name
    return sum(placed.pods_used for _, placed in kinds), by_pool, kv


def _packs(layout: Layout, scenario: Scenario) -> bool:
    """The layout's instances fit in the scenario's pods (per hardware kind)."""
    pl = place_layout(layout, prefill_scenario(scenario), scenario)
    if pl.shared:
        return (pl.decode or pl.prefill).pods_used <= scenario.pods
    return ((pl.decode is None or pl.decode.pods_used <= scenario.pods)
            and (pl.prefill is None or pl.prefill.pods_used <= scenario.prefill_pods))


def _take(scenario: Scenario, mode: Mode, items: list[tuple[float, int, Callable[[], Layout]]], quota: int,
          listed: dict[str, tuple[Mode, Layout, float]], result: Plan) -> None:
    """List (for exact pricing) the first ``quota`` items whose instances pack into the pods (others are counted)."""
    for rate, _dies, build in items[:PACKING_TRIES]:
        if quota <= 0:
            return
        layout = build()
        if not _packs(layout, scenario):
            result.rejected["layout_does_not_pack_into_the_pods"] += 1
            continue
        quota -= 1
        key = str(sorted(layout.to_dict().items()))
        if key not in listed:
            listed[key] = (mode, layout, rate)


def instance_cap(scenario: Scenario, budget: int) -> int:
    """The largest instance (dies) the search enumerates: one pod, or up to SPAN_LIMIT_DIES across pods."""
    return min(budget, max(scenario.hardware.pod_dies, SPAN_LIMIT_DIES))


def _within_max_pp(cands: space.CandidateSet, max_pp: int | None) -> space.CandidateSet:
    """Drop the candidates of more pipeline stages than ``max_pp`` (counted under their reason)."""
    if max_pp is not None and "pp" in cands.arrays:
        cands.keep(cands.arrays["pp"] <= max_pp, "pp_over_max_pp")
    return cands


def _within_pod(cands: space.CandidateSet, pod_dies: int) -> space.CandidateSet:
    """Drop the dense models' TP groups wider than one pod (space.DENSE_TP_GRID past TP_GRID): their
    all-reduce would cross the cluster fabric every layer."""
    tp = cands.arrays.get("tp")
    if tp is not None and len(tp):
        cands.keep((tp <= max(space.TP_GRID)) | (tp <= pod_dies), "tp_beyond_pod")
    return cands


def _pools(scenario: Scenario, budget: int, modes: tuple[Mode, ...], plan: Plan) -> tuple:
    """Score every mode's decode candidates, and the prefill pools when a mode with candidates needs them."""
    model = scenario.model
    cap = instance_cap(scenario, budget)
    scores: dict[Mode, DecodeScore] = {}
    for mode in modes:
        entry = MODES[mode]
        cands = _within_max_pp(_within_pod(entry.candidates(model, cap), scenario.hardware.pod_dies), plan.max_pp)
        cands = _pinned(cands, plan.pins, decode=True)
        plan.rejected.update(cands.rejected)
        if len(cands) == 0:
            continue
        scores[mode] = score_decode(scenario, cands, entry)
        plan.candidates_evaluated += len(scores[mode])
        plan.rejected.update({f"{mode.value}_{k}": v for k, v in scores[mode].rejected.items() if v})
        plan.feasible += int(scores[mode].ok.sum())
    if not scores:  # no decode candidate at all: a question the modes (or pins) cannot answer, not a memory miss
        held = plan.pins.flags()
        names = ", ".join(m.value for m in modes)
        from planner.modes.transformerless import ATTENTION_DIES_STEP, MIN_EXPERT_DIES

        smallest = ATTENTION_DIES_STEP + MIN_EXPERT_DIES
        why = ("; transformerless puts routed experts on dies of their own, and a dense model has none"
               if not model.is_moe and Mode.TRANSFORMERLESS in modes else
               f"; a transformerless instance takes at least {ATTENTION_DIES_STEP} attention dies beside "
               f"{MIN_EXPERT_DIES} or more expert dies ({smallest}), the budget is {budget}"
               if Mode.TRANSFORMERLESS in modes and budget < smallest else "")
        raise PlannerError(f"no decode pool of {model.name} on {scenario.hardware.name} in --modes {names}"
                           + (f" under {held}" if held else "") + why, where="plan",
                           fix="add a mode (--modes)" + (" or loosen the pins" if held else ""))
    pre = None
    if any(MODES[mode].prefill_pool for mode in scores):
        pre_sc = prefill_scenario(scenario)
        cands = _within_max_pp(_within_pod(space.prefill_pools(model, instance_cap(pre_sc, pre_sc.dies)),
                                           pre_sc.hardware.pod_dies), plan.max_pp)
        cands = _pinned(cands, plan.pins, decode=False)
        plan.rejected.update(cands.rejected)
        pre = score_prefill(pre_sc, cands)
        plan.candidates_evaluated += len(cands)
        plan.rejected.update({f"prefill_{k}": v for k, v in pre.rejected.items() if v})
    return pre, scores


# TPOT thresholds the search also lists the best layouts under (quantiles of the feasible TPOTs):
# the envelopes ignore the first decode step in TTFT, so a lower-TPOT decode pool can win once priced
# exactly.  12 keeps the best total goodput monotone in the TPOT SLO on the suite's scenarios (6 did not
# once multi-pod packing constrained the pools; tests/search/test_plan.py) at ~0.3 s per default plan.
TPOT_THRESHOLDS = 12


def _thresholds(scenario: Scenario, dec: DecodeScore, count: int = TPOT_THRESHOLDS) -> list[float]:
    t = np.sort(dec.tpot_s[dec.ok])
    if len(t) == 0:
        return []
    qs = np.unique(np.quantile(t, np.linspace(0.0, 1.0, count)))
    return [float(x) for x in qs] + [scenario.slo.tpot_s]


def _threshold_masks(dec: DecodeScore, thresholds: list[float]) -> list[np.ndarray]:
    """``dec.tpot_s <= tau`` for each threshold, at the rows that are ``ok`` (False elsewhere): the searches
    read a mask only there (planner.search.combine.decode_envelope, :func:`_collocated`), so the other
    rows are not compared (a default plan's transformerless rows: 1.3 M, 7% of them ok)."""
    rows = np.flatnonzero(dec.ok)
    tpot = dec.tpot_s[rows]
    masks = []
    for tau in thresholds:
        mask = np.zeros(len(dec.ok), dtype=bool)
        mask[rows] = tpot <= tau
        masks.append(mask)
    return masks


def sizing_target_per_s(scenario: Scenario, *, requests_per_s: float | None = None,
                output_tokens_per_s: float | None = None) -> float | None:
    """The request rate an inverse sizing asks for: given as requests/s, or as output tokens/s over the
    scenario's output tokens per request (not both); positive and finite, else one line (exit 2)."""
    if requests_per_s is not None and output_tokens_per_s is not None:
        raise PlannerError("give --target-rate or --target-output-tokens-per-s, not both", where="plan",
                           fix="keep one of the two flags")
    flag, value = (("--target-output-tokens-per-s", output_tokens_per_s) if output_tokens_per_s is not None
                   else ("--target-rate", requests_per_s))
    if value is not None and not 0.0 < value < math.inf:  # 0 or inf would reach the search as 0 or inf dies
        raise PlannerError(f"{flag} must be positive and finite (got {value:g})", where="plan",
                           fix=f"give {flag} a number above 0")
    return output_tokens_per_s / scenario.workload.output_tokens if output_tokens_per_s is not None else requests_per_s


def _selector_handoff_s(scenario: Scenario, budget: int) -> float:
    """The KV hand-off the envelopes charge while choosing pairs: one link, across pods if the budget spans pods."""
    env = Env.of(scenario, draft_tokens=0)
    return float(gp.kv_handoff_s(scenario.hardware, env.model, env.by, input_tokens=env.input_tokens, prefill_tp=1.0,
                                 decode_tp=1.0,
                                 same_pod=budget <= scenario.hardware.pod_dies and scenario.prefill_hardware is None,
                                 p2p_s=env.calls.p2p_s)[0])


# Search candidates per mode re-priced exactly (as planner evaluate prices them) and ranked.  A
# constant, so ranks never depend on --top; 10 is the default --top (about 32 layouts ranked).
CANDIDATES_PER_MODE = 10


def plan(scenario: Scenario, *, modes: tuple[Mode, ...] = ALL_MODES, top: int = 10,
         target_rate_per_s: float | None = None, max_pp: int | None = None, pins: Pins | None = None) -> Plan:
    """Search ``modes`` for the scenario's die budget; rank by goodput per die.

    The ranking does not depend on ``top`` (a report lists its first ``top`` layouts, and a rank is
    a position in the whole ranking): each mode re-prices its CANDIDATES_PER_MODE best search
    candidates, plus the best per TPOT threshold and the best by total goodput.

    With ``target_rate_per_s``: inverse sizing.  Layouts whose goodput reaches the target, ranked
    by fewest dies (then highest goodput); the die budget is only a cap.

    With ``max_pp``: no pool of more pipeline stages (1: none; dense models only search them).

    With ``pins``: only the candidates of the pinned TP and stages, and decode batches at most the
    pinned one (:class:`Pins`; :func:`check_pins` refuses pins the search cannot price).
    """
    start = time.perf_counter()
    budget = min(scenario.dies, scenario.pods * scenario.hardware.pod_dies)
    pins = pins or Pins()
    check_pins(scenario, pins, max_pp, budget)
    result = Plan(scenario=scenario, budget=budget, modes=tuple(modes), target_rate_per_s=target_rate_per_s,
                  max_pp=max_pp, pins=pins)
    pre, scores = _pools(scenario, budget, modes, result)
    # The search charges TTFT the KV hand-off but not the first decode step (it depends on the decode
    # pool, unknown while prefill is scored): optimistic by one TPOT, independent of the SLO, so the
    # search is monotone in it.  Every listed layout is then re-priced exactly (layout_goodput).
    fixed = _selector_handoff_s(scenario, budget)
    pre_sc = prefill_scenario(scenario)
    pre_env = cb.prefill_envelope(pre_sc, pre_sc.dies if pre_sc is not scenario else budget, pre, fixed) \
        if pre is not None else None
    listed: dict[str, tuple[Mode, Layout, float]] = {}

    target = target_rate_per_s

    def collect(mode: Mode, mask: np.ndarray | None, limit: int, priced: list | None) -> None:
        dec = scores[mode]
        if not MODES[mode].prefill_pool:
            items = _collocated(scenario, budget, mode, dec, mask, target)
        elif priced is not None:
            items = priced
        else:
            items = []
        if target is not None:
            items = sorted((it for it in items if it[0] >= target * (1 - 1e-12)), key=lambda it: (it[1], -it[0]))
            by_total = []
        else:
            by_total = sorted(items, key=lambda it: (-it[0], it[1]))
            items.sort(key=lambda it: (-it[0] / it[1], it[1]))
        totals = BEST_TOTAL_LISTED if mask is None else 1
        for chosen, quota in ((items, limit), (by_total, totals if by_total else 0)):
            _take(scenario, mode, chosen, quota, listed, result)

    for mode in scores:
        masks = [None, *_threshold_masks(scores[mode], _thresholds(scenario, scores[mode]))]
        priced: list = [None] * len(masks)
        if MODES[mode].prefill_pool and pre_env is not None:
            priced = _pd_batched(scenario, budget, mode, pre, pre_env, scores[mode], masks, target)
        for mask, items in zip(masks, priced, strict=True):
            collect(mode, mask, CANDIDATES_PER_MODE if mask is None else 1, items)
    found = _exact(listed, scenario)
    ranked = sorted(found.values(), key=_rank_key if target is None else _sizing_key)
    result.layouts = ranked
    result.pareto, result.pareto_dropped = _pareto(ranked)
    if not ranked and target is None:
        result.near_misses = _near_misses(scenario, scores, pre, fixed + scenario.slo.tpot_s)
    result.elapsed_s = time.perf_counter() - start
    return result
