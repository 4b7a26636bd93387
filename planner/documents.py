"""Report documents: the ``--json`` output of evaluate and plan, built from library results.

One place for the JSON contract (rounding, schema version, non-finite values).  No rendering here.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from planner.evaluate import Evaluation, layout_goodput
from planner.inputs.scenario import Scenario
from planner.search.plan import Plan, Planned
from planner.serving.result import PoolStep

SCHEMA_VERSION = 1

# ----------------------------------------------------------------------------- plain numbers


def _f(x: np.ndarray) -> float:
    return float(np.asarray(x).reshape(-1)[0])


def breakdown(step: PoolStep) -> dict[str, Any]:
    """Per layer class: per-op time and binding side, per-collective time; once-per-step costs."""
    layers = {}
    for name, cost in step.layers.items():
        ops = {op: {"time_s": _f(c.time_s), "bound": "compute" if bool(c.compute_bound[0]) else "memory",
                    "flops": _f(c.flops), "bytes": _f(c.bytes)} for op, c in cost.ops.items()}
        comm = {op: _f(t) for op, t in cost.comm.items() if _f(t) > 0}
        layers[name] = {"count": step.layer_counts[name], "layer_s": _f(step.layer_s[name]),
                        "compute_s_per_micro_batch": _f(cost.compute_s),
                        "communication_s_per_micro_batch": _f(cost.comm_s), "ops": ops, "communication": comm}
    memory = {k: _f(v) for k, v in step.memory.items()}
    per_die = sum(v for k, v in memory.items() if not k.startswith("expert_die_"))
    return {"layers": layers, "per_step": {k: _f(v) for k, v in step.extra.items()},
            "memory_bytes": memory, "usable_memory_bytes": step.capacity_bytes,
            "memory_shortfall_bytes": max(0.0, per_die - step.capacity_bytes)}


def prefill_metrics(ev: Evaluation) -> dict[str, Any] | None:
    """Prefill pool throughput: prompt tokens (cache hits included) per second, per die, per chip."""
    p, step = ev.layout.prefill, ev.prefill
    if p is None or step is None:
        return None
    dies = p.instances * p.dies
    hit = ev.scenario.workload.cache_hit_rate
    step_s = _f(step.step_s)
    tokens_per_s = dies * p.batch_tokens / step_s / (1 - hit)
    return {"step_s": step_s, "input_tokens_per_s": tokens_per_s, "input_tokens_per_s_per_die": tokens_per_s / dies,
            "input_tokens_per_s_per_chip": tokens_per_s / dies * ev.scenario.hardware.dies_per_chip,
            "fits_memory": bool(step.fits[0]), "breakdown": breakdown(step)}


def decode_metrics(ev: Evaluation) -> dict[str, Any]:
    """Decode pool throughput at the layout's batch: output tokens/s, per die (all decode dies), per chip."""
    d, step, env = ev.layout.decode, ev.decode, ev.env
    inst_dies = ev.layout.decode_instance_dies
    dies = d.instances * inst_dies
    step_s = _f(step.step_s)
    seqs = d.instances * ev.layout.decode_attention_dies * d.batch
    out_per_s = seqs * env.tokens_per_step / step_s
    return {"step_s": step_s, "tokens_per_step": env.tokens_per_step, "tpot_s": step_s / env.tokens_per_step,
            "context_tokens": env.decode_context_tokens, "batch": d.batch,
            "max_batch_by_memory": int(_f(step.max_batch)), "fits_memory": bool(step.fits[0]),
            "output_tokens_per_s": out_per_s, "output_tokens_per_s_per_die": out_per_s / dies,
            "output_tokens_per_s_per_chip": out_per_s / dies * ev.scenario.hardware.dies_per_chip,
            "breakdown": breakdown(step)}


ROOFLINE_NOTE = ("Roofline estimates are optimistic by nature: they assume the calibrated kernel and fabric "
                 "efficiencies below and perfect overlap where the layout overlaps; published systems reach "
                 "55-80% of them (planner validate).")


def efficiencies_used(hw: Any) -> dict[str, Any]:
    """The efficiencies and overheads of the hardware profile, with their kind (spec/measured/...)."""
    f = hw.file
    out = {name: sec.model_dump(mode="json", exclude={"source", "calibrated_from"})
           for name, sec in (("gemm", f.efficiency.gemm), ("attention", f.efficiency.attention),
                             ("memory", f.efficiency.memory), ("overheads", f.overheads),
                             ("collectives", f.collectives))}
    out["fabrics"] = {fab.name: fab.efficiency.model_dump(mode="json", exclude={"source", "calibrated_from"})
                      for fab in f.fabrics}
    return out


def report_dict(ev: Evaluation) -> dict[str, Any]:
    """The ``planner evaluate --json`` document (keys sorted on output)."""
    doc = {"schema_version": SCHEMA_VERSION, "scenario": ev.scenario.file.model_dump(mode="json"),
           "layout": ev.layout.to_dict(), "dies": ev.dies, "chips": ev.chips,
           "prefill": prefill_metrics(ev), "decode": decode_metrics(ev), "goodput": asdict(layout_goodput(ev)),
           "efficiencies": efficiencies_used(ev.scenario.hardware), "note": ROOFLINE_NOTE}
    return finite_or_none(doc)


def finite_or_none(value: Any) -> Any:
    """JSON has no infinity: non-finite floats (an SLO that cannot be met) become null."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value


# ----------------------------------------------------------------------------- report document

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
    metrics = asdict(p.metrics)
    entry.update({k: metrics[k] for k in _METRIC_KEYS})
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
