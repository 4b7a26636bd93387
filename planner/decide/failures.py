"""Failure what-if: the goodput a layout keeps when k dies, one node or one pod fail.

An instance that loses a die is out (its EP group and TP groups cannot run without it); the
surviving instances absorb the load within the SLOs: the surviving goodput is the goodput of the
layout with those instances removed, priced by planner.evaluate (the same model as every other
number).  A pool with no instance left serves nothing, so the layout's goodput is 0.

Where the failure lands (the worst case is reported, so the figure holds wherever it strikes):

- ``dies``: k dies in k different instances, split between the pools in the way that hurts most;
- ``node``: one node of ``dies_per_node`` dies (hardware profile); the layout's dies are packed
  from the first die of the first node in placement order (prefill instances, then decode
  instances, as planner.placement places them), so an instance whose size is not a multiple of
  the node straddles two nodes, and a node may hold two instances or both pools;
- ``pod``: every instance with a die in one pod, pods as planner.placement fills them.

``surviving_frac`` is the surviving goodput over the layout's goodput: running the layout at no
more than that fraction of its goodput leaves headroom for the failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from planner.evaluate import evaluate, layout_goodput
from planner.inputs.layout import Layout
from planner.inputs.scenario import Scenario
from planner.modes import MODES

DEFAULT_FAILED_DIES = 1


class FailureKind(StrEnum):
    DIES = "dies"
    NODE = "node"
    POD = "pod"


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """The worst case of one kind of failure for one layout."""

    kind: FailureKind
    failed_dies: int                 # dies the failed unit holds
    lost_prefill_instances: int
    lost_decode_instances: int
    surviving_goodput_requests_per_s: float
    surviving_frac: float            # of the layout's goodput (0 when the layout serves nothing)


Pair = tuple[int, int]  # (lost prefill instances, lost decode instances)


def _pools(layout: Layout) -> tuple[tuple[int, int], tuple[int, int]]:
    """((instances, dies each) of prefill, of decode); (0, 0) for a pool the mode does not have."""
    p = layout.prefill
    pre = (p.instances, p.dies) if p is not None else (0, 0)
    return pre, (layout.decode.instances, layout.decode_instance_dies)


def die_hits(layout: Layout, k: int) -> set[Pair]:
    """k dies in k distinct instances, every split between the pools."""
    (np_, _), (nd, _) = _pools(layout)
    return {(j, min(k - j, nd)) for j in range(0, min(k, np_) + 1)}


def node_hits(layout: Layout, node_dies: int) -> set[Pair]:
    """Each node: ``node_dies`` dies from die 0 on, along the layout's dies packed in placement order."""
    (np_, dp), (nd, dd) = _pools(layout)
    total = np_ * dp + nd * dd
    starts = np.arange(0, total, node_dies)[:, None]
    ends = starts + node_dies

    def hit(first: int, count: int, size: int) -> np.ndarray:
        lo = first + size * np.arange(count)[None, :]
        return ((lo < ends) & (lo + size > starts)).sum(axis=1)

    pairs = np.stack([hit(0, np_, dp), hit(np_ * dp, nd, dd)], axis=1)
    return {(int(a), int(b)) for a, b in np.unique(pairs, axis=0)}


def pod_hits(layout: Layout, scenario: Scenario) -> set[Pair]:
    """Every instance with a die in one pod, for each pod the layout uses (planner.placement)."""
    placement = evaluate(layout, scenario, "failure what-if").placement
    sizes = dict(zip(("prefill", "decode"), (d for _, d in _pools(layout)), strict=True))
    out: set[Pair] = set()
    for _, pl in placement.kinds():
        lost: dict[int, dict[str, int]] = {}
        for pool in pl.pools:
            size = sizes[pool.pool]
            for pod, dies in zip(pool.pods, pool.dies_per_pod, strict=True):
                lost.setdefault(pod, {})[pool.pool] = max(1, dies // size) if size <= pl.pod_dies else 1
        out |= {(v.get("prefill", 0), v.get("decode", 0)) for v in lost.values()}
    return out


def surviving_goodput(layout: Layout, scenario: Scenario, lost: Pair) -> float:
    """Goodput (req/s) of ``layout`` without ``lost`` (prefill, decode) instances; 0 if a pool is empty."""
    (np_, _), (nd, _) = _pools(layout)
    left_p, left_d = np_ - lost[0], nd - lost[1]
    if left_d <= 0 or (np_ > 0 and left_p <= 0):
        return 0.0
    update = {"decode": layout.decode.model_copy(update={"instances": left_d})}
    if np_ > 0:
        update["prefill"] = layout.prefill.model_copy(update={"instances": left_p})  # type: ignore[union-attr]
    reduced = layout.model_copy(update=update)
    return layout_goodput(evaluate(reduced, scenario, "failure what-if")).goodput_requests_per_s


def failure(layout: Layout, scenario: Scenario, kind: FailureKind, goodput_requests_per_s: float,
            failed_dies: int = DEFAULT_FAILED_DIES, cache: dict[Pair, float] | None = None) -> Failure:
    """The worst case of ``kind`` for ``layout`` (priced under ``scenario``, its own [scenario] for a
    planned layout) whose goodput is ``goodput_requests_per_s``.

    ``failed_dies`` is k for ``FailureKind.DIES``; a node holds ``hardware.dies_per_node`` dies and
    a pod ``hardware.pod_dies``.  ``cache`` (one per layout and scenario) keeps the surviving goodput
    of each loss across calls.
    """
    hw = scenario.hardware
    if kind is FailureKind.DIES:
        unit, pairs = failed_dies, die_hits(layout, failed_dies)
    elif kind is FailureKind.NODE:
        unit, pairs = hw.dies_per_node, node_hits(layout, hw.dies_per_node)
    else:
        unit, pairs = hw.pod_dies, pod_hits(layout, scenario)
    cache = {} if cache is None else cache
    for pair in pairs - cache.keys():
        cache[pair] = surviving_goodput(layout, scenario, pair)
    priced = {pair: cache[pair] for pair in sorted(pairs)}
    worst = min(priced, key=lambda pair: (priced[pair], pair))
    rate = priced[worst]
    return Failure(kind=kind, failed_dies=unit, lost_prefill_instances=worst[0], lost_decode_instances=worst[1],
                   surviving_goodput_requests_per_s=rate,
                   surviving_frac=rate / goodput_requests_per_s if goodput_requests_per_s > 0 else 0.0)


def supported(layout: Layout) -> bool:
    """Both pools written down (a pool priced alone has no end-to-end goodput to lose)."""
    return layout.decode is not None and (layout.prefill is not None or not MODES[layout.mode].prefill_pool)
