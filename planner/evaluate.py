"""Price one written-down layout: step times, throughput per pool, memory, breakdown.

``evaluate`` runs the vectorized step-time models with one candidate (N = 1) — the same code
the search runs on millions — and turns the result into plain numbers for reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from planner.errors import LayoutError
from planner.serving.context import Env
from planner.serving.decode import DecodeArrays, shared_decode_step
from planner.serving.prefill import PrefillArrays, prefill_step
from planner.serving.result import PoolStep
from planner.serving.transformerless import TransformerlessArrays, transformerless_step
from planner.spec.layout import LayoutFile, Mode, check_layout
from planner.spec.scenario import Scenario

SCHEMA_VERSION = 1


def _one(x: float | int | None) -> np.ndarray:
    return np.array([float(x or 0)])


def prefill_arrays(layout: LayoutFile) -> PrefillArrays:
    p = layout.prefill
    assert p is not None
    return PrefillArrays(dies=_one(p.dies), tp=_one(p.tp), ep=_one(p.ep), batch_tokens=_one(p.batch_tokens),
                         micro_batches=_one(p.micro_batches), redundant=_one(p.redundant_experts))


def decode_arrays(layout: LayoutFile) -> DecodeArrays:
    d = layout.decode
    return DecodeArrays(dies=_one(d.dies), tp=_one(d.tp), ep=_one(d.ep), batch=_one(d.batch),
                        micro_batches=_one(d.micro_batches), redundant=_one(d.redundant_experts),
                        chunk_tokens=_one(d.prefill_chunk_tokens))


def transformerless_arrays(layout: LayoutFile) -> TransformerlessArrays:
    d = layout.decode
    return TransformerlessArrays(attention_dies=_one(d.attention_dies), expert_dies=_one(d.expert_dies),
                                 domains=_one(d.domains), tp=_one(d.tp), ep=_one(d.ep), batch=_one(d.batch),
                                 micro_batches=_one(d.micro_batches), redundant=_one(d.redundant_experts))


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """Result of pricing one layout under one scenario."""

    scenario: Scenario
    layout: LayoutFile
    prefill: PoolStep | None
    decode: PoolStep
    env: Env

    @property
    def dies(self) -> int:
        return self.layout.dies

    @property
    def chips(self) -> float:
        return self.layout.dies / self.scenario.hardware.dies_per_chip


def evaluate(layout: LayoutFile, scenario: Scenario, where: str = "layout") -> Evaluation:
    """Price ``layout`` under ``scenario``; impossible layouts raise LayoutError (exit 2)."""
    check_layout(layout, scenario.model, where)
    if layout.dies > scenario.hardware.num_dies:
        raise LayoutError(f"uses {layout.dies} dies but {scenario.hardware.name} has {scenario.hardware.num_dies}",
                          where=where, fix="use fewer instances or dies")
    env = Env.of(scenario)
    prefill = prefill_step(env, prefill_arrays(layout)) if layout.prefill is not None else None
    if layout.mode == Mode.TRANSFORMERLESS:
        decode = transformerless_step(env, transformerless_arrays(layout))
    else:
        decode = shared_decode_step(env, decode_arrays(layout))
    return Evaluation(scenario=scenario, layout=layout, prefill=prefill, decode=decode, env=env)


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
    from planner.goodput import layout_goodput  # goodput builds on this module

    doc = {"schema_version": SCHEMA_VERSION, "scenario": ev.scenario.file.model_dump(mode="json"),
           "layout": ev.layout.to_dict(), "dies": ev.dies, "chips": ev.chips,
           "prefill": prefill_metrics(ev), "decode": decode_metrics(ev), "goodput": layout_goodput(ev),
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
