"""Result of a step-time model for one pool, arrays over candidates."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from planner.cost.roofline import Array, Cost
from planner.serving.layers import LayerCost


class Deferred(Mapping):
    """A mapping built on first use: a breakdown a search prices for 10^4-10^5 candidates and never reads
    (planner.modes.collocated mixes every op of its two steps); reading it gives the same dict as building it
    at once."""

    __slots__ = ("_build", "_data")

    def __init__(self, build: Callable[[], dict]) -> None:
        self._build: Callable[[], dict] | None = build
        self._data: dict | None = None

    def _dict(self) -> dict:
        if self._data is None:
            self._data, self._build = self._build(), None  # type: ignore[misc]
        return self._data

    def __getitem__(self, key: Any) -> Any:
        return self._dict()[key]

    def __iter__(self) -> Iterator:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolStep:
    """One iteration (decode step or prefill forward) of a pool, per candidate.

    ``layers`` holds, per layer class, the per-micro-batch cost of one layer on one die;
    ``layer_s`` the per-layer time with the micro-batch overlap applied; ``extra`` the costs
    paid once per iteration (LM head, MTP, pipeline tail, scheduler gap).

    Chunked prefill (collocated): every field is the mean over steps with and without a prefill
    chunk (a share ``chunk_fraction`` carries one, planner.goodput.chunk_fraction);
    ``plain_step_s`` / ``chunk_step_s`` are the two step times.  None outside chunked prefill.
    """

    step_s: Array
    layers: Mapping[str, LayerCost]  # a dict, or built on first use (Deferred)
    layer_s: dict[str, Array]
    layer_counts: dict[str, int]
    extra: dict[str, Array]
    memory: dict[str, Array]
    capacity_bytes: float
    fits: Array
    max_batch: Array = field(default_factory=lambda: np.zeros(0))
    plain_step_s: Array | None = None
    chunk_step_s: Array | None = None
    chunk_fraction: Array | None = None

    def part(self, lo: int, hi: int, n: int) -> PoolStep:
        """Rows ``lo:hi`` of a step priced for ``n`` candidates, as a step of their own: each (n, ...) array cut
        to (hi - lo, ...) (a copy), everything else (counts, constants, broadcast (1,) arrays) kept.  The
        per-layer breakdown is cut when first read (:class:`Deferred`): most parts are read for their step
        times alone (the search's listed layouts, the bands' samples)."""
        layers = self.layers
        return replace(self, **{f.name: _part(getattr(self, f.name), lo, hi, n) for f in fields(self)
                                if f.name != "layers"},
                       layers=Deferred(lambda: {k: _part(v, lo, hi, n) for k, v in layers.items()}))

    def row(self, i: int, n: int) -> PoolStep:
        """Row ``i`` of a step priced for ``n`` candidates, as an N = 1 step (:meth:`part`)."""
        return self.part(i, i + 1, n)


def _part(x: Any, lo: int, hi: int, n: int) -> Any:
    if isinstance(x, np.ndarray):
        return x[lo:hi].copy() if x.ndim and x.shape[0] == n else x
    if isinstance(x, Deferred):
        return Deferred(lambda: {k: _part(v, lo, hi, n) for k, v in x.items()})
    if isinstance(x, dict):
        return {k: _part(v, lo, hi, n) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_part(v, lo, hi, n) for v in x)
    if isinstance(x, Cost):
        return Cost(*(_part(getattr(x, f.name), lo, hi, n) for f in fields(x)))
    if isinstance(x, LayerCost):
        return LayerCost(ops=_part(x.ops, lo, hi, n), comm=_part(x.comm, lo, hi, n),
                         load_ratio=_part(x.load_ratio, lo, hi, n),
                         load_ratio_hottest=_part(x.load_ratio_hottest, lo, hi, n), pairs=_part(x.pairs, lo, hi, n))
    return x
