"""Load imbalance of one evaluated layout, per pool: what the busiest expert die and the slowest DP
rank cost (the ``expert_load`` part of ``planner evaluate`` and of ``plan --json``).

Per MoE layer class: the busiest expert die's load over the mean (averaged over the class's
layers, and on its hottest layer) and the two waits of one layer per micro-batch
(``combine_wait``: every die waits for the busiest expert die; ``dispatch_wait``: for the slowest
attention rank).  Per pool, what they cost a step: the step re-priced with perfect expert balance,
and then also without DP-rank imbalance (same vector code, N = 1); the differences include the
micro-batch overlap, which a sum of waits would not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.evaluate import Evaluation, decode_knobs
from planner.inputs.expert_load import ExpertLoad, Policy
from planner.modes import MODES
from planner.modes.base import prefill_arrays
from planner.serving.context import Env
from planner.serving.prefill import prefill_step
from planner.serving.result import PoolStep


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerClassLoad:
    """One MoE layer class of a pool: busiest expert die / mean and the waits of one layer (seconds)."""

    layer_class: str
    layers: int
    busiest_over_mean: float          # averaged over the class's MoE layers
    busiest_over_mean_hottest: float  # on the class's hottest MoE layer
    combine_wait_s: float             # per layer and micro-batch
    dispatch_wait_s: float            # per layer and micro-batch


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolLoad:
    """A pool's expert-load policy and what imbalance costs its step."""

    policy: str
    rebalance_period_s: float
    skew: str                          # "fitted" or "measured"
    classes: tuple[LayerClassLoad, ...]
    step_s: float
    step_perfect_balance_s: float      # the same step with perfect expert balance
    step_no_imbalance_s: float         # ... and no DP-rank imbalance either
    expert_imbalance_cost_s: float     # step_s - step_perfect_balance_s
    dp_imbalance_cost_s: float         # step_perfect_balance_s - step_no_imbalance_s


def _f(x: np.ndarray | float) -> float:
    return float(np.asarray(x).reshape(-1)[0])


def _perfect(load: ExpertLoad) -> ExpertLoad:
    return replace(load, policy=Policy.PERFECT, counts=None, _tables={})


def _price(ev: Evaluation, env: Env, pool: str) -> PoolStep:
    if pool == "prefill":
        assert ev.layout.prefill is not None
        return prefill_step(env, prefill_arrays(ev.layout.prefill.model_dump()))
    return MODES[ev.layout.mode].price(env, decode_knobs(ev.layout))


def _classes(step: PoolStep) -> tuple[LayerClassLoad, ...]:
    out = []
    for name, cost in step.layers.items():
        if cost.load_ratio is None:
            continue
        hottest = cost.load_ratio_hottest if cost.load_ratio_hottest is not None else cost.load_ratio
        waits = {w: sum(_f(c.time_s) for op, c in cost.ops.items() if op.split(".")[-1] == w)
                 for w in ("combine_wait", "dispatch_wait")}
        out.append(LayerClassLoad(layer_class=name, layers=step.layer_counts[name],
                                  busiest_over_mean=_f(cost.load_ratio), busiest_over_mean_hottest=_f(hottest),
                                  combine_wait_s=waits["combine_wait"], dispatch_wait_s=waits["dispatch_wait"]))
    return tuple(out)


# Re-priced steps shared by the layouts of one report (planner.documents.plan): (id(Env), pool, knobs) -> step,
# and id(Env) -> its balanced and even variants; each entry keeps the Env it is keyed on alive.
LoadMemo = dict[tuple, tuple[object, object]]


def _variants(env: Env, memo: LoadMemo | None) -> tuple[Env, Env]:
    """``env`` with perfect expert balance, and also without DP-rank imbalance."""
    def build() -> tuple[Env, Env]:
        balanced = replace(env, prefill_load=_perfect(env.prefill_load), decode_load=_perfect(env.decode_load))
        return balanced, replace(balanced, dp_count_dispersion=0.0, decode_context_cv=0.0, prefill_work_cv=0.0)

    if memo is None:
        return build()
    hit = memo.get(("variants", id(env)))
    if hit is None:
        hit = memo[("variants", id(env))] = (env, build())
    return hit[1]  # type: ignore[return-value]


def _knobs(ev: Evaluation, pool: str) -> dict:
    return ev.layout.prefill.model_dump() if pool == "prefill" else decode_knobs(ev.layout)  # type: ignore[union-attr]


def _key(ev: Evaluation, env: Env, pool: str) -> tuple:
    knobs = _knobs(ev, pool)
    return (id(env), pool, ev.layout.mode, tuple(sorted((k, v) for k, v in knobs.items() if k != "instances")))


def _step_s(ev: Evaluation, env: Env, pool: str, memo: LoadMemo | None) -> float:
    """The pool's step under ``env`` (one of :func:`_variants`), priced once per (env, pool knobs) with a memo."""
    if memo is None:
        return _f(_price(ev, env, pool).step_s)
    key = _key(ev, env, pool)
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = (env, _f(_price(ev, env, pool).step_s))
    return hit[1]  # type: ignore[return-value]


def pool_load(ev: Evaluation, pool: str, memo: LoadMemo | None = None) -> PoolLoad:
    """Expert load and imbalance cost of ``pool`` ("prefill" or "decode") of an evaluated layout.

    ``memo``: shared by the layouts of one report whose evaluations share Env objects (planner.evaluate's
    memo); a pool's re-priced steps are then priced once (the instance count is not a step knob).
    """
    step = ev.prefill if pool == "prefill" else ev.decode
    assert step is not None
    env = ev.prefill_env if pool == "prefill" else ev.env
    load = env.prefill_load if pool == "prefill" else env.decode_load
    balanced, even = _variants(env, memo)
    t, t_balanced, t_even = _f(step.step_s), _step_s(ev, balanced, pool, memo), _step_s(ev, even, pool, memo)
    return PoolLoad(policy=load.policy.value, rebalance_period_s=load.rebalance_period_s,
                    skew="measured" if load.counts is not None else "fitted", classes=_classes(step), step_s=t,
                    step_perfect_balance_s=t_balanced, step_no_imbalance_s=t_even,
                    expert_imbalance_cost_s=t - t_balanced, dp_imbalance_cost_s=t_balanced - t_even)


def layout_load(ev: Evaluation, memo: LoadMemo | None = None) -> dict[str, PoolLoad]:
    """:func:`pool_load` of every pool the layout prices (prefill only when it has its own pool)."""
    steps = {"prefill": ev.prefill, "decode": ev.decode}
    return {pool: pool_load(ev, pool, memo) for pool, step in steps.items() if step is not None}


def price_variants(evs: list[Evaluation], memo: LoadMemo) -> None:
    """The balanced and even steps :func:`layout_load` asks of ``evs``' pools, priced into ``memo`` ahead: one
    vector call per (variant Env, pool, mode, shared-expert replicas placed or not) instead of one per pool
    (the step models price every row on its own: each row's step is its own call's).  A default plan's report:
    16 decode calls -> 8 (0.059 -> 0.036 s)."""
    groups: dict[tuple, tuple[Env, str, Evaluation, dict[tuple, dict]]] = {}
    for ev in evs:
        for pool, step in (("prefill", ev.prefill), ("decode", ev.decode)):
            if step is None:
                continue
            knobs = _knobs(ev, pool)
            for env in _variants(ev.prefill_env if pool == "prefill" else ev.env, memo):
                key = _key(ev, env, pool)
                if key not in memo:
                    shape = (id(env), pool, ev.layout.mode, (knobs.get("shared_expert_replicas") or 0) > 0,
                             (knobs.get("pp") or 1) > 1)
                    groups.setdefault(shape, (env, pool, ev, {}))[3][key] = knobs
    for env, pool, ev, members in groups.values():
        if len(members) < 2:
            continue
        names = [k for k, v in next(iter(members.values())).items() if v is None or isinstance(v, int | float)]
        knobs = {k: np.array([m[k] for m in members.values()], dtype=float) for k in names}
        step = (prefill_step(env, prefill_arrays(knobs)) if pool == "prefill"
                else MODES[ev.layout.mode].price(env, knobs))
        for i, key in enumerate(members):
            memo[key] = (env, float(step.step_s[i]))
