"""MoE units: router, shared experts, routed experts on expert dies, and the busiest die's load.

The expert load (how many more token copies the busiest expert die of an EP group receives
than the mean, per MoE layer) is :mod:`planner.cost.expert_load`; :func:`expert_imbalances` is its
entry for a model (over the dies that hold routed slots: :func:`routed_dies`), and
:func:`expert_side` prices what it costs as ``combine_wait``: every die waits at the combine for
the busiest one's extra expert work.  :func:`expert_imbalance` (the hottest layer) sizes the
expert workspace.
"""

from __future__ import annotations

import numpy as np

from planner.cost import elementwise
from planner.cost.expert_load import busiest_die_ratios
from planner.cost.precision import BytesPerElement
from planner.cost.roofline import Array, Cost, Device, gemm, sum_costs
from planner.inputs.expert_load import ExpertLoad, Policy
from planner.inputs.model import ModelSpec


def cold_replica_slots(model: ModelSpec, load: ExpertLoad | None, *, ep: Array, redundant: Array,
                       shared_replicas: Array | None) -> Array:
    """Whether the routed slots beside a shared-expert replica hold only cold pieces, (N,) bool.

    With ``0 < k < ep`` replicas one per die and ``s >= 2`` slots per die (xDeepServe EP288: 256 dies of
    1 routed + 1 redundant expert, 32 of 1 shared replica + 1 redundant), a load-aware placement
    (every policy but ``none``: xDeepServe places redundant experts on the least-loaded dies) puts the
    coldest pieces beside the replicas, which already carry ``T / k`` copies.  Taken as carrying
    none: the routed copies spread over the ``ep - k`` routed-only dies.
    """
    e = np.asarray(ep, dtype=float)
    if shared_replicas is None or load is None or load.policy == Policy.NONE or not model.is_moe:
        return np.zeros(np.shape(e), dtype=bool)
    k = np.asarray(shared_replicas, dtype=float)
    slots = (model.ffn.num_routed_experts + np.asarray(redundant, dtype=float) + k) / e
    return (k > 0) & (k < e) & (slots >= 2)


def routed_dies(model: ModelSpec, load: ExpertLoad | None, *, ep: Array, redundant: Array,
                shared_replicas: Array | None) -> Array:
    """Dies' worth of routed expert slots an EP group spreads its routed copies over, (N,).

    Notes
    -----
    ``ep``, unless ``0 < k < ep`` shared-expert replicas sit one per die: then ``ep - k`` when the
    replica dies' routed slots hold only cold pieces (:func:`cold_replica_slots`), else
    ``ep (E + R) / (E + R + k)``: ``ep - k`` dies hold ``s`` routed slots and ``k`` dies ``s - 1``
    (``s = (E + R + k) / ep``), i.e. ``(E + R) / s`` dies of ``s`` slots (CloudMatrix-Infer EP320:
    288, exactly its routed-expert dies).  The busiest-die ratio is over these dies and relative to
    their mean (``ep / n`` times the group's), so the largest piece counts as its own share of the
    group's copies; over ``ep`` dies it would count ``ep / n`` times (+12.5% at EP288 with 32
    replicas and no redundant experts).
    """
    e = np.asarray(ep, dtype=float)
    if shared_replicas is None or not model.is_moe:
        return e
    k = np.asarray(shared_replicas, dtype=float)
    routed = model.ffn.num_routed_experts + np.asarray(redundant, dtype=float)
    cold = cold_replica_slots(model, load, ep=ep, redundant=redundant, shared_replicas=shared_replicas)
    return np.where(cold, e - k, np.where((k > 0) & (k < e), e * routed / (routed + k), e))


def expert_imbalances(model: ModelSpec, load: ExpertLoad, *, ep: Array, redundant: Array, copies_per_die: Array,
                      rows: tuple[int, ...] | None = None,
                      shared_replicas: Array | None = None) -> tuple[Array, Array]:
    """Busiest expert die's copies / the mean, (averaged over the MoE layers ``rows`` (all: None), the
    hottest of them), (N,) each.  Exactly 1 for a dense model and under ``perfect`` balance
    (planner.cost.expert_load).  ``copies_per_die``: the group's mean routed copies per die; with
    shared-expert replicas on some dies (``shared_replicas``) the ratio is over the routed-only dies
    (:func:`routed_dies`), relative to their mean."""
    if not model.is_moe:
        ones = np.ones(np.broadcast_shapes(np.shape(ep), np.shape(copies_per_die)))
        return ones, ones
    f = model.ffn
    n = routed_dies(model, load, ep=ep, redundant=redundant, shared_replicas=shared_replicas)
    c = np.asarray(copies_per_die, dtype=float) * np.asarray(ep, dtype=float) / n
    return busiest_die_ratios(load, experts=f.num_routed_experts, top_k=f.top_k, ep=n, redundant=redundant,
                              copies_per_die=c, rows=rows)


def expert_imbalance(model: ModelSpec, load: ExpertLoad, *, ep: Array, redundant: Array, copies_per_die: Array,
                     rows: tuple[int, ...] | None = None) -> Array:
    """:func:`expert_imbalances` on the hottest MoE layer, (N,): what sizes a die's expert workspace
    (one buffer, reused by every layer, holds the busiest layer's copies; memory.workspace_bytes)."""
    return expert_imbalances(model, load, ep=ep, redundant=redundant, copies_per_die=copies_per_die, rows=rows)[1]


def difference(hot: Cost, mean: Cost) -> Cost:
    """The extra work of ``hot`` over ``mean`` (the busiest die's over the mean die's), every field."""
    return Cost(hot.time_s - mean.time_s, hot.flops - mean.flops, hot.bytes - mean.bytes,
                hot.compute_s - mean.compute_s, hot.memory_s - mean.memory_s)


def expert_side(dev: Device, model: ModelSpec, by: BytesPerElement, *, copies: Array, slots: Array,
                imbalance: Array, launch_s: float | Array = 0.0, shared_replicas: Array | None = None,
                tokens: Array | None = None, ep: Array | None = None, load: ExpertLoad | None = None,
                redundant: Array | None = None) -> dict[str, Cost]:
    """Expert GEMMs and elementwise kernels of a mean die, and ``combine_wait``: the busiest die's extra.

    Notes
    -----
    The busiest die computes ``imbalance * copies`` token copies, the mean die ``copies``; the
    combine completes when the busiest die is done, so every die waits the difference (xDeepServe:
    the combine absorbs the expert imbalance).  The wait is charged on the compute side (the
    busiest die's own work is on the critical path) and shown as its own row.
    """
    def side(c: Array) -> dict[str, Cost]:
        ops = routed_experts(dev, model, by, copies=c, slots=slots, launch_s=launch_s)
        ops["expert_elementwise"] = elementwise.expert_side(dev, model, by, copies=c, launch_s=launch_s)
        return ops

    mean = side(copies)
    mean["combine_wait"] = difference(sum_costs(side(copies * imbalance)), sum_costs(mean))
    if shared_replicas is None or not np.any(np.asarray(shared_replicas) > 0):
        return mean
    # candidates with replicas take the replicated form, the others keep the one above (row by row)
    cold = cold_replica_slots(model, load, ep=ep, redundant=0.0 if redundant is None else redundant,
                              shared_replicas=shared_replicas)
    rep = _with_shared_replicas(dev, model, by, copies=copies, slots=slots, imbalance=imbalance,
                                launch_s=launch_s, replicas=shared_replicas, tokens=tokens, ep=ep, cold=cold)
    on = np.asarray(shared_replicas) > 0
    zero = mean["combine_wait"].scaled(0.0)
    return {n: _where(on, rep.get(n, zero), mean.get(n, zero)) for n in dict.fromkeys([*mean, *rep])}


def _with_shared_replicas(dev: Device, model: ModelSpec, by: BytesPerElement, *, copies: Array, slots: Array,
                          imbalance: Array, launch_s: float | Array, replicas: Array, tokens: Array | None,
                          ep: Array | None, cold: Array) -> dict[str, Cost]:
    """Expert dies that also host ``k`` replicas of the shared experts (each token is served by one).

    Notes
    -----
    ``ep`` dies hold ``s`` expert slots each: ``E + R`` routed and ``k`` shared replicas in all
    (CloudMatrix-Infer EP320: 256 + 32 + 32, one per die; xDeepServe EP288: 256 + 32).  ``T =
    tokens * ep`` tokens per step reach the group; a routed slot gets ``q = T * top_k / (E + R)``
    copies on average, a replica ``T / k``.  With ``k >= ep`` every die hosts ``k / ep`` replicas
    and ``s - k / ep`` routed slots; with ``k < ep`` replicas sit one per die on ``k`` dies, which
    keep ``s - 1`` routed slots, and the other dies ``s`` routed slots.  The mean die computes
    ``tokens * top_k`` routed and ``tokens`` shared copies; the busiest die is the slower of the
    two kinds with routed copies scaled by the imbalance; the combine waits the difference.  The
    imbalance is over the routed dies (:func:`routed_dies`) and relative to their mean; with ``cold``
    (:func:`cold_replica_slots`) a replica die's routed slots carry nothing and the routed-only dies
    ``tokens * top_k * ep / (ep - k)`` copies on average, else ``q s``.
    """
    f = model.ffn
    k, e, t = (np.asarray(x, dtype=float) for x in (replicas, ep, tokens))
    s = np.asarray(slots, dtype=float)
    q = t * e * f.top_k / np.maximum(s * e - k, 1.0)     # copies per routed slot (mean)
    per_replica = t * e / np.maximum(k, 1.0)              # copies per shared replica

    def die(routed_copies: Array, routed_n: Array, replicas_here: Array) -> dict[str, Cost]:
        ops = routed_experts(dev, model, by, copies=routed_copies, slots=np.maximum(routed_n, 1e-9),
                             launch_s=launch_s)
        for name, c in shared_experts(dev, model, by, tokens=per_replica, launch_s=launch_s).items():
            ops[f"{name}_replica"] = c.scaled(replicas_here)
        ops["expert_elementwise"] = elementwise.expert_side(
            dev, model, by, copies=routed_copies + per_replica * replicas_here, launch_s=launch_s)
        return ops

    here = k / e
    mean = die(copies, s - here, here)
    many = here >= 1
    # k >= ep: every die alike; k < ep: the routed-only dies and the replica dies, the slower one binds
    alike = sum_costs(die(q * (s - here) * imbalance, s - here, here))
    per_routed_die = np.where(cold, t * e * f.top_k / np.maximum(e - k, 1.0), q * s)
    routed_only = sum_costs(die(per_routed_die * imbalance, s, np.zeros_like(k)))
    beside = np.where(cold, 0.0, q * np.maximum(s - 1, 0) * imbalance)
    replica = sum_costs(die(beside, np.maximum(s - 1, 0), np.ones_like(k)))
    pick_replica = ~many & (replica.time_s > routed_only.time_s)
    other = _where(pick_replica, replica, routed_only)
    busiest, average = _where(many, alike, other), sum_costs(mean)
    # no die is slower than the mean die when the kinds are balanced (rounding of weight reads aside)
    mean["combine_wait"] = difference(_where(busiest.time_s > average.time_s, busiest, average), average)
    return mean


def _where(cond: Array, a: Cost, b: Cost) -> Cost:
    return Cost(*(np.where(cond, getattr(a, n), getattr(b, n)) for n in ("time_s", "flops", "bytes", "compute_s",
                                                                          "memory_s")))


def router(dev: Device, model: ModelSpec, by: BytesPerElement, *, tokens: Array, launch_s: float | Array = 0.0) -> Cost:
    """Router GEMM ``[M x h] @ [h x E]`` (kept in bf16, as DeepSeek-V3's gate)."""
    f = model.ffn
    return gemm(dev, tokens, f.num_routed_experts, model.hidden, weight_bytes=by.head, act_bytes=by.out,
                out_bytes=4.0, launch_s=launch_s)


def shared_experts(dev: Device, model: ModelSpec, by: BytesPerElement, *, tokens: Array, tp: Array | float = 1.0,
                   launch_s: float | Array = 0.0) -> dict[str, Cost]:
    """Shared experts on the die that holds the tokens (DP, as DeepSeek runs them)."""
    f = model.ffn
    if not f.num_shared_experts:
        return {}
    inter = f.num_shared_experts * f.shared_expert_intermediate_size / np.asarray(tp, dtype=float)
    kw = dict(weight_bytes=by.weight, act_bytes=by.act, out_bytes=by.out, launch_s=launch_s)
    return {"shared_gate_up": gemm(dev, tokens, 2 * inter, model.hidden, **kw),
            "shared_down": gemm(dev, tokens, model.hidden, inter, **kw)}


def routed_experts(dev: Device, model: ModelSpec, by: BytesPerElement, *, copies: Array, slots: Array,
                   launch_s: float | Array = 0.0) -> dict[str, Cost]:
    """Grouped expert GEMMs on one expert die.

    Parameters
    ----------
    copies : token copies this die computes (already scaled by the imbalance), (N,)
    slots : expert replicas hosted on the die, (N,)

    Notes
    -----
    Tokens per hosted expert ``lam = copies / slots``; an expert's weights are read only if at
    least one token reaches it, probability ``1 - exp(-lam)`` (Poisson arrivals), which is
    what makes small decode batches weight-bandwidth bound.
    """
    f = model.ffn
    lam = copies / slots
    hit = 1.0 - np.exp(-lam)
    inter = f.moe_intermediate_size
    kw = dict(weight_bytes=by.weight, act_bytes=by.act, out_bytes=by.out, count=slots,
              weights_read_frac=hit, launch_s=launch_s)
    return {"experts_gate_up": gemm(dev, lam, 2 * inter, model.hidden, **kw),
            "experts_down": gemm(dev, lam, model.hidden, inter, **kw)}
