"""Prefill pool (pd and transformerless modes): one forward of ``batch_tokens`` per die.

TP/SP attention (causal, prefix-cache aware), EP experts with deduplicated (DeepEP "normal")
all-to-all, micro-batch overlap as in decode, and eager-mode launch overhead per kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.cost import memory as mem
from planner.cost import moe
from planner.cost.roofline import Array, Cost
from planner.serving.context import Env
from planner.serving.decode import lm_head
from planner.serving.layers import (
    LayerClass,
    SharedDieShape,
    shared_die_layers,
)
from planner.serving.pipeline import pipeline_extra
from planner.serving.result import PoolStep


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefillArrays:
    dies: Array
    tp: Array
    ep: Array
    batch_tokens: Array
    micro_batches: Array
    redundant: Array
    pp: Array | None = None  # pipeline stages (None: 1); planner.serving.pipeline


def _f(x: Array) -> Array:
    return np.asarray(x, dtype=float)


def prefill_step(env: Env, p: PrefillArrays) -> PoolStep:
    """One prefill forward of every die of an instance (all candidates at once), eager mode."""
    env = replace(env, dev=env.dev.eager())  # the eager stack's kernel inventory (profile [kernels])
    model = env.model
    tp, ep, m = _f(p.tp), _f(p.ep), _f(p.micro_batches)
    T = _f(p.batch_tokens) / m
    N, P = env.new_input_tokens, env.prefix_tokens
    eager = env.dev.eager_launch_s
    slots = (model.ffn.num_routed_experts + _f(p.redundant)) / ep if model.is_moe else ep * 0 + 1
    shape = SharedDieShape(group_tokens=tp * T, die_tokens=T, tp=tp, ep=ep, slots=slots,
                           redundant=_f(p.redundant), load=env.prefill_load, dedup=True, dp_seqs=tp * T / N,
                           dp_work_cv=env.prefill_work_cv, dp_dispersion=0.0,
                           context_ops=model.attention.prefill_context_ops, launch_s=eager)

    def attention(cls: LayerClass) -> dict[str, Cost]:
        return model.attention.prefill_ops(env.dev, env.by, tokens=tp * T, seqs=tp * T / N, new_tokens=N,
                                           prefix_tokens=P, tp=tp, window=env.window if cls.sliding else 0.0,
                                           launch_s=eager)

    layers, layer_s, counts, tail = shared_die_layers(env, shape, attention, m)
    seqs = tp * _f(p.batch_tokens) / N
    extra = {"pipeline_tail": tail, "lm_head": lm_head(env, seqs, tp).time_s}
    extra.update(pipeline_extra(env, p.pp, tp, tp * _f(p.batch_tokens), extra["lm_head"],
                                sum(layer_s[n] * counts[n] for n in layer_s)))
    extra["scheduler_gap"] = np.full(np.shape(tp), env.dev.scheduler_gap_s)
    step = sum(layer_s[n] * counts[n] for n in layer_s) + sum(extra.values())
    memory, fits = _memory(env, p, shape)
    return PoolStep(step_s=step, layers=layers, layer_s=layer_s, layer_counts=counts, extra=extra, memory=memory,
                    capacity_bytes=mem.usable_bytes(env.hw), fits=fits)


def _memory(env: Env, p: PrefillArrays, shape: SharedDieShape) -> tuple[dict[str, Array], Array]:
    model, by = env.model, env.by
    tp, B = _f(p.tp), _f(p.batch_tokens)
    weights = mem.weight_bytes(model, by, mem.WeightShare(tp, shape.slots, pp=1.0 if p.pp is None else _f(p.pp)))
    seqs = tp * B / env.new_input_tokens
    kv = seqs * mem.kv_bytes_per_sequence(model, by, context=env.input_tokens, tp=tp) / tp
    k = model.ffn.top_k if model.is_moe else 0
    imb = moe.expert_imbalance(model, shape.load, ep=shape.ep, redundant=shape.redundant,
                               copies_per_die=shape.die_tokens * k)
    ws = mem.workspace_bytes(model, tokens=tp * shape.die_tokens, expert_copies=shape.die_tokens * k * imb,
                             logits_tokens=seqs, tp=tp)
    out = {f"weights_{n}": v for n, v in weights.items()}
    out["kv_cache"] = kv
    out["workspace"] = ws
    total = sum(out.values())
    return out, total <= mem.usable_bytes(env.hw)
