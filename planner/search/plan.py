"""``plan``: search every mode for the die budget and rank layouts by goodput per die."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from planner.evaluate import evaluate
from planner.goodput import layout_goodput
from planner.search import combine as cb
from planner.search import space
from planner.search.score import DecodeScore, PrefillScore, kv_handoff_s, prefill_rates, score_decode, score_prefill
from planner.spec.layout import LayoutFile, Mode
from planner.spec.scenario import Scenario

ALL_MODES = (Mode.COLLOCATED, Mode.PD, Mode.TRANSFORMERLESS)


@dataclass
class Planned:
    """One ranked layout with its exact metrics (the same numbers ``planner evaluate`` gives)."""

    mode: Mode
    layout: LayoutFile
    metrics: dict[str, Any]
    search_goodput_per_s: float

    @property
    def dies(self) -> int:
        return self.layout.dies

    @property
    def per_die(self) -> float:
        return self.metrics["goodput_requests_per_s"] / self.dies


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
    a = p.cands.arrays
    return {"instances": n, "dies": int(a["dies"][i]), "tp": int(a["tp"][i]), "ep": int(a["ep"][i]),
            "batch_tokens": int(a["batch_tokens"][i]), "micro_batches": int(a["micro_batches"][i]),
            "redundant_experts": int(a["redundant"][i])}


def _decode_layout(d: DecodeScore, i: int, n: int, mode: Mode) -> dict[str, int]:
    def k(name: str) -> int:
        return int(d.knob(name, i))

    out = {"instances": n, "tp": k("tp"), "ep": k("ep"), "batch": k("batch"), "micro_batches": k("micro_batches"),
           "redundant_experts": k("redundant")}
    if mode == Mode.TRANSFORMERLESS:
        out.update(attention_dies=k("attention_dies"), expert_dies=k("expert_dies"), domains=k("domains"))
    else:
        out["dies"] = k("dies")
    if mode == Mode.COLLOCATED:
        out["prefill_chunk_tokens"] = k("chunk_tokens")
    return out


def _layout(mode: Mode, scenario: Scenario, prefill: dict | None, decode: dict, mtp: int) -> LayoutFile:
    sc = scenario.file.model_copy(update={"mtp": scenario.file.mtp.model_copy(
        update={"acceptance": scenario.file.mtp.acceptance if mtp else 0.0})})
    return LayoutFile.model_validate({"mode": mode.value, "prefill": prefill, "decode": decode,
                                      "scenario": sc.model_dump(mode="json")})


def _exact(mode: Mode, layout: LayoutFile, scenario: Scenario, search_rate: float) -> Planned | None:
    from planner.spec.scenario import resolve_scenario

    sc = resolve_scenario(layout.scenario) if layout.scenario else scenario
    metrics = layout_goodput(evaluate(layout, sc, "search"))
    if not metrics["meets_slo"]:
        return None
    return Planned(mode=mode, layout=layout, metrics=metrics, search_goodput_per_s=search_rate)


def _pd_like(scenario: Scenario, budget: int, mode: Mode, pre: PrefillScore, pre_env: cb.Envelope,
             dec: DecodeScore, mask: np.ndarray | None = None) -> list[tuple[float, int, Callable[[], LayoutFile]]]:
    """(search rate, dies, layout builder) per budget split; layouts are built only when listed."""
    env_d = cb.decode_envelope(budget, dec, mask)
    out = []
    for s in cb.combine(budget, pre_env, env_d, pre.dies, dec.dies):
        build = partial(lambda s: _layout(mode, scenario, _prefill_layout(pre, s.prefill_index, s.prefill_instances),
                                          _decode_layout(dec, s.decode_index, s.decode_instances, mode),
                                          int(dec.mtp[s.decode_index])), s)
        out.append((s.goodput_per_s, s.dies, build))
    return out


def _collocated(scenario: Scenario, budget: int, dec: DecodeScore, mask: np.ndarray | None = None,
                per_dies: int = 4) -> list[tuple[float, int, Callable[[], LayoutFile]]]:
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
    k = tp * dec.knob("chunk_tokens", rows) / new
    groups = dec.knob("dies", rows) / tp
    slots = groups * np.where(k >= 1, np.floor(k), 1.0)
    service = dec.step_s[rows] * np.where(k >= 1, 1.0, np.ceil(1.0 / np.maximum(k, 1e-12)))
    rate = np.minimum(prefill_rates(scenario, service, slots * n, 0.0), dec.rate_per_s[rows] * n)
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
    return (-round(p.per_die, 12), p.dies, round(p.metrics["tpot_s"], 12), p.mode.value,
            str(sorted(p.layout.to_dict().items())))


def _pareto(planned: list[Planned]) -> list[Planned]:
    """Layouts not beaten on both goodput per die (higher) and TPOT (lower)."""
    pts = sorted(planned, key=lambda p: (p.metrics["tpot_s"], -p.per_die))
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
    model = scenario.model
    pre = None
    if Mode.PD in modes or (Mode.TRANSFORMERLESS in modes and model.is_moe):
        cands = space.prefill_pools(model, budget)
        plan.rejected.update(cands.rejected)
        pre = score_prefill(scenario, cands)
        plan.candidates_evaluated += len(cands)
        plan.rejected.update({f"prefill_{k}": v for k, v in pre.rejected.items() if v})
    builders = {Mode.PD: space.pd_decode_pools, Mode.TRANSFORMERLESS: space.transformerless_pools,
                Mode.COLLOCATED: space.collocated_pools}
    scores: dict[Mode, DecodeScore] = {}
    for mode in modes:
        cands = builders[mode](model, budget)
        plan.rejected.update(cands.rejected)
        if len(cands) == 0:
            continue
        mode_name = "transformerless" if mode == Mode.TRANSFORMERLESS else "shared"
        scores[mode] = score_decode(scenario, cands, mode_name)
        plan.candidates_evaluated += len(scores[mode])
        plan.rejected.update({f"{mode.value}_{k}": v for k, v in scores[mode].rejected.items() if v})
        plan.feasible += int(scores[mode].ok.sum())
    return pre, scores


def _thresholds(scenario: Scenario, dec: DecodeScore, count: int = 6) -> list[float]:
    t = np.sort(dec.tpot_s[dec.ok])
    if len(t) == 0:
        return []
    qs = np.unique(np.quantile(t, np.linspace(0.0, 1.0, count)))
    return [float(x) for x in qs] + [scenario.slo.tpot_s]


def plan(scenario: Scenario, *, modes: tuple[Mode, ...] = ALL_MODES, top: int = 10) -> Plan:
    """Search ``modes`` for the scenario's die budget; rank by goodput per die."""
    start = time.perf_counter()
    budget = min(scenario.file.dies, scenario.hardware.num_dies)
    result = Plan(scenario=scenario, budget=budget, modes=tuple(modes))
    pre, scores = _pools(scenario, budget, modes, result)
    # The search charges TTFT the KV hand-off but not the first decode step (it depends on the decode
    # pool, unknown while prefill is scored): optimistic by one TPOT, independent of the SLO, so the
    # search is monotone in it.  Every listed layout is then re-priced exactly (layout_goodput).
    fixed = kv_handoff_s(scenario, budget)
    pre_env = cb.prefill_envelope(scenario, budget, pre, fixed) if pre is not None else None
    found: dict[str, Planned] = {}

    def collect(mode: Mode, mask: np.ndarray | None, limit: int) -> None:
        dec = scores[mode]
        if mode == Mode.COLLOCATED:
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


# ----------------------------------------------------------------------------- report document

SCHEMA_VERSION = 1
TPOT_DEFINITION = "TPOT = (e2e - TTFT) / (output_tokens - 1): mean time per output token after the first"
_METRIC_KEYS = ("goodput_requests_per_s", "output_tokens_per_s", "output_tokens_per_s_per_die",
                "output_tokens_per_s_per_chip", "ttft_s", "tpot_s", "binding_constraint")


def sig(value: Any, digits: int = 6) -> Any:
    """Round floats to ``digits`` significant digits so reports are stable across platforms."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: sig(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sig(v, digits) for v in value]
    return value


def layout_entry(p: Planned, rank: int, dies_per_chip: int) -> dict[str, Any]:
    entry = {"rank": rank, "mode": p.mode.value, "layout": p.layout.to_dict(), "dies": p.dies,
             "chips": p.dies / dies_per_chip, "mtp": bool(p.layout.scenario and p.layout.scenario.mtp.acceptance > 0)}
    entry.update({k: p.metrics[k] for k in _METRIC_KEYS})
    return entry


def file_hashes(scenario: Scenario) -> dict[str, str]:
    """SHA-256 of every data file the plan read, by base name (for regression checks)."""
    import hashlib

    out = {}
    for kind, spec in (("hardware_profiles", scenario.hardware), ("models", scenario.model)):
        out[f"{kind}/{spec.path.name}"] = hashlib.sha256(spec.path.read_bytes()).hexdigest()
    return out


def plan_dict(result: Plan, top: int) -> dict[str, Any]:
    """The ``planner plan --json`` document (deterministic; no timings, no absolute paths)."""
    sc = result.scenario
    dpc = sc.hardware.dies_per_chip
    layouts = [layout_entry(p, i + 1, dpc) for i, p in enumerate(result.layouts[:top])]
    best = {}
    for i, p in enumerate(result.layouts):
        best.setdefault(p.mode.value, layout_entry(p, i + 1, dpc))
    from planner.evaluate import ROOFLINE_NOTE, efficiencies_used

    doc = {"schema_version": SCHEMA_VERSION, "scenario": sc.file.model_dump(mode="json"),
           "efficiencies": efficiencies_used(sc.hardware), "note": ROOFLINE_NOTE,
           "data_files": file_hashes(sc), "tpot_definition": TPOT_DEFINITION, "budget_dies": result.budget,
           "modes": [m.value for m in result.modes], "top": top,
           "search": {"candidates_evaluated": result.candidates_evaluated, "feasible": result.feasible,
                      "rejected_by_reason": dict(sorted(result.rejected.items())),
                      "layouts_ranked": len(result.layouts)},
           "layouts": layouts, "best_per_mode": best,
           "pareto": [layout_entry(p, result.layouts.index(p) + 1, dpc) for p in result.pareto],
           "near_misses": result.near_misses}
    return sig(doc)
