"""``plan``: search every mode for the die budget and rank layouts by goodput per die."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from planner import goodput as gp
from planner.evaluate import GoodputPoint, evaluate, layout_goodput
from planner.inputs.layout import Layout, Mode, parse_layout
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

    @property
    def dies(self) -> int:
        return self.layout.dies

    @property
    def per_die(self) -> float:
        return self.metrics.goodput_requests_per_s / self.dies


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
    elapsed_s: float = 0.0


def _prefill_layout(p: PrefillScore, i: int, n: int) -> dict[str, int]:
    return {"instances": n, **{k: int(v[i]) for k, v in p.cands.arrays.items()}}


def _decode_layout(d: DecodeScore, i: int, n: int, mode: Mode) -> dict[str, int]:
    return {"instances": n, **{k: int(d.knob(k, i)) for k in MODES[mode].decode_keys}}


def _layout(mode: Mode, scenario: Scenario, prefill: dict | None, decode: dict, mtp: int) -> Layout:
    sc = scenario.file.model_copy(update={"mtp": scenario.file.mtp.model_copy(
        update={"acceptance": scenario.file.mtp.acceptance if mtp else 0.0})})
    data = {"mode": mode.value, "decode": decode, "scenario": sc.model_dump(mode="json")}
    if prefill is not None:
        data["prefill"] = prefill
    return parse_layout(data, "search")


def _exact(mode: Mode, layout: Layout, scenario: Scenario, search_rate: float) -> Planned | None:
    from planner.inputs.scenario import resolve_scenario

    sc = resolve_scenario(layout.scenario) if layout.scenario else scenario
    metrics = layout_goodput(evaluate(layout, sc, "search"))
    if not metrics.meets_slo:
        return None
    return Planned(mode=mode, layout=layout, metrics=metrics, search_goodput_per_s=search_rate)


def pair_goodput(scenario: Scenario, pre: PrefillScore, dec: DecodeScore, splits: list[cb.Split]) -> np.ndarray:
    """Goodput of the (prefill, decode) pairs the splits chose, exactly as ``evaluate`` prices them, (S,).

    The envelopes choose pairs with a KV hand-off over one link and no first decode step in TTFT
    (so the prefill side is scored once for every decode pool); this re-scores each chosen pair
    with its own hand-off (``min(tp_p, tp_d)`` links over the fabric spanning the layout) and its
    decode pool's TPOT, through planner.goodput, in one vector call.
    """
    pi = np.array([s.prefill_index for s in splits], dtype=np.int64)
    pn = np.array([s.prefill_instances for s in splits], dtype=float)
    di = np.array([s.decode_index for s in splits], dtype=np.int64)
    dn = np.array([s.decode_instances for s in splits], dtype=float)
    env = Env.of(scenario, draft_tokens=0)
    kv = gp.kv_handoff_s(scenario.hardware, env.model, env.by, input_tokens=env.input_tokens,
                         prefill_tp=pre.cands.arrays["tp"][pi], decode_tp=dec.knob("tp", di),
                         layout_dies=pn * pre.dies[pi] + dn * dec.dies[di], p2p_s=env.calls.p2p_s)
    g = gp.goodput(scenario.slo, input_cv=scenario.workload.input_cv, output_tokens=scenario.workload.output_tokens,
                   service_s=pre.service_s[pi], servers=pre.slots[pi] * pn, fixed_s=kv + dec.tpot_s[di],
                   sequences=dec.sequences[di] * dn, tpot_s=dec.tpot_s[di], fits=pre.ok[pi] & dec.ok[di])
    return g.goodput_per_s


def _pd_like(scenario: Scenario, budget: int, mode: Mode, pre: PrefillScore, pre_env: cb.Envelope,
             dec: DecodeScore, mask: np.ndarray | None = None) -> list[tuple[float, int, Callable[[], Layout]]]:
    """(goodput, dies, layout builder) per budget split; layouts are built only when listed."""
    env_d = cb.decode_envelope(budget, dec, mask)
    splits = cb.combine(budget, pre_env, env_d, pre.dies, dec.dies)
    if not splits:
        return []
    rates = pair_goodput(scenario, pre, dec, splits)
    out = []
    for s, rate in zip(splits, rates, strict=True):
        build = partial(lambda s: _layout(mode, scenario, _prefill_layout(pre, s.prefill_index, s.prefill_instances),
                                          _decode_layout(dec, s.decode_index, s.decode_instances, mode),
                                          int(dec.mtp[s.decode_index])), s)
        out.append((float(rate), s.dies, build))
    return out


def _collocated(scenario: Scenario, budget: int, dec: DecodeScore, mask: np.ndarray | None = None,
                per_dies: int = 4) -> list[tuple[float, int, Callable[[], Layout]]]:
    """Collocated: per die count keep the best few by decode rate, then queue prefill chunks."""
    ok = dec.ok if mask is None else dec.ok & mask
    cand = np.flatnonzero(ok)
    if len(cand) == 0:
        return []
    order = np.lexsort((cand, -dec.rate_per_s[cand], dec.dies[cand]))
    c = cand[order]
    rank = np.arange(len(c)) - np.searchsorted(dec.dies[c], dec.dies[c], side="left")
    c = c[rank < per_dies]
    reps = budget // dec.dies[c]
    rows = np.repeat(c, reps)
    n = cb._counts(reps)
    new = scenario.workload.input_tokens * (1 - scenario.workload.cache_hit_rate)
    tp = dec.knob("tp", rows)
    slots, forwards = gp.request_slots(tp, dec.knob("prefill_chunk_tokens", rows), new, dec.dies[rows] / tp)
    rate = gp.goodput(scenario.slo, input_cv=scenario.workload.input_cv, output_tokens=scenario.workload.output_tokens,
                      service_s=dec.step_s[rows] * forwards, servers=slots * n, fixed_s=np.zeros(len(rows)),
                      sequences=dec.sequences[rows] * n, tpot_s=dec.tpot_s[rows], fits=dec.ok[rows]).goodput_per_s
    env = cb.scatter_best(budget, dec.dies[rows] * n, rate, rows, n)
    out, seen = [], set()
    for value in np.unique(env.rate[env.rate > 0]):
        s = env.dies_for(value)
        i, m = int(env.index[s]), int(env.instances[s])
        if (i, m) not in seen:
            seen.add((i, m))
            build = partial(lambda i, m: _layout(Mode.COLLOCATED, scenario, None,
                                                 _decode_layout(dec, i, m, Mode.COLLOCATED), int(dec.mtp[i])), i, m)
            out.append((float(env.rate[s]), m * int(dec.dies[i]), build))
    return out


def _rank_key(p: Planned) -> tuple:
    return (-round(p.per_die, 12), p.dies, round(p.metrics.tpot_s, 12), p.mode.value,
            str(sorted(p.layout.to_dict().items())))


def _pareto(planned: list[Planned]) -> list[Planned]:
    """Layouts not beaten on both goodput per die (higher) and TPOT (lower)."""
    pts = sorted(planned, key=lambda p: (p.metrics.tpot_s, -p.per_die))
    front, best = [], -1.0
    for p in pts:
        if p.per_die > best * (1 + 1e-9):
            front.append(p)
            best = p.per_die
    return front


def _near_misses(scenario: Scenario, scores: dict[Mode, DecodeScore], pre: PrefillScore | None,
                 fixed_s: float) -> list[dict[str, Any]]:
    out = []
    for mode, dec in scores.items():
        fits = np.flatnonzero(dec.max_batch >= dec.batch)
        if len(fits):
            i = int(fits[np.argmin(dec.tpot_s[fits])])
            out.append({"mode": mode.value, "pool": "decode", "best_tpot_s": float(dec.tpot_s[i]),
                        "meets_tpot_slo": bool(dec.tpot_s[i] <= scenario.slo.tpot_s),
                        "layout": _decode_layout(dec, i, 1, mode)})
    if pre is not None and pre.ok.any():
        i = int(np.flatnonzero(pre.ok)[np.argmin(pre.service_s[pre.ok])])
        out.append({"mode": "pd/transformerless", "pool": "prefill",
                    "best_ttft_s": float(pre.service_s[i] + fixed_s),
                    "meets_ttft_slo": bool(pre.service_s[i] + fixed_s <= scenario.slo.ttft_s),
                    "layout": _prefill_layout(pre, i, 1)})
    return out


def _pools(scenario: Scenario, budget: int, modes: tuple[Mode, ...], plan: Plan) -> tuple:
    """Score every mode's decode candidates, and the prefill pools when a mode with candidates needs them."""
    model = scenario.model
    scores: dict[Mode, DecodeScore] = {}
    for mode in modes:
        entry = MODES[mode]
        cands = entry.candidates(model, budget)
        plan.rejected.update(cands.rejected)
        if len(cands) == 0:
            continue
        scores[mode] = score_decode(scenario, cands, entry)
        plan.candidates_evaluated += len(scores[mode])
        plan.rejected.update({f"{mode.value}_{k}": v for k, v in scores[mode].rejected.items() if v})
        plan.feasible += int(scores[mode].ok.sum())
    pre = None
    if any(MODES[mode].prefill_pool for mode in scores):
        cands = space.prefill_pools(model, budget)
        plan.rejected.update(cands.rejected)
        pre = score_prefill(scenario, cands)
        plan.candidates_evaluated += len(cands)
        plan.rejected.update({f"prefill_{k}": v for k, v in pre.rejected.items() if v})
    return pre, scores


def _thresholds(scenario: Scenario, dec: DecodeScore, count: int = 6) -> list[float]:
    t = np.sort(dec.tpot_s[dec.ok])
    if len(t) == 0:
        return []
    qs = np.unique(np.quantile(t, np.linspace(0.0, 1.0, count)))
    return [float(x) for x in qs] + [scenario.slo.tpot_s]


def _selector_handoff_s(scenario: Scenario, budget: int) -> float:
    """The KV hand-off the envelopes charge while choosing pairs: one link, over the budget's fabric."""
    env = Env.of(scenario, draft_tokens=0)
    return float(gp.kv_handoff_s(scenario.hardware, env.model, env.by, input_tokens=env.input_tokens, prefill_tp=1.0,
                                 decode_tp=1.0, layout_dies=float(budget), p2p_s=env.calls.p2p_s)[0])


def plan(scenario: Scenario, *, modes: tuple[Mode, ...] = ALL_MODES, top: int = 10) -> Plan:
    """Search ``modes`` for the scenario's die budget; rank by goodput per die."""
    start = time.perf_counter()
    budget = min(scenario.file.dies, scenario.hardware.num_dies)
    result = Plan(scenario=scenario, budget=budget, modes=tuple(modes))
    pre, scores = _pools(scenario, budget, modes, result)
    # The search charges TTFT the KV hand-off but not the first decode step (it depends on the decode
    # pool, unknown while prefill is scored): optimistic by one TPOT, independent of the SLO, so the
    # search is monotone in it.  Every listed layout is then re-priced exactly (layout_goodput).
    fixed = _selector_handoff_s(scenario, budget)
    pre_env = cb.prefill_envelope(scenario, budget, pre, fixed) if pre is not None else None
    found: dict[str, Planned] = {}

    def collect(mode: Mode, mask: np.ndarray | None, limit: int) -> None:
        dec = scores[mode]
        if not MODES[mode].prefill_pool:
            items = _collocated(scenario, budget, dec, mask)
        elif pre_env is not None:
            items = _pd_like(scenario, budget, mode, pre, pre_env, dec, mask)
        else:
            items = []
        by_total = sorted(items, key=lambda it: (-it[0], it[1]))[:3] if mask is None else []
        items.sort(key=lambda it: (-it[0] / it[1], it[1]))
        for rate, _dies, build in items[:limit] + by_total:
            layout = build()
            key = str(sorted(layout.to_dict().items()))
            if key not in found and (p := _exact(mode, layout, scenario, rate)) is not None:
                found[key] = p

    for mode in scores:
        collect(mode, None, max(top, 8))
        for tau in _thresholds(scenario, scores[mode]):
            collect(mode, scores[mode].tpot_s <= tau, 1)
    ranked = sorted(found.values(), key=_rank_key)
    result.layouts = ranked
    result.pareto = _pareto(ranked)
    if not ranked:
        result.near_misses = _near_misses(scenario, scores, pre, fixed + scenario.slo.tpot_s)
    result.elapsed_s = time.perf_counter() - start
    return result
