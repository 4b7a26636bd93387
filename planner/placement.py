"""Where a layout's instances sit: pods (scale-up domains) filled first-fit, largest instances first.

An instance sits inside one pod when it fits in one; a larger one spans whole pods of its own
(its all-to-all then runs on the fabric joining pods: planner.inputs.hardware.HardwareSpec.fabric_for
picks it from the instance's size).  Prefill instances are placed before decode instances in the
same pod order, so a layout that fits in one pod has both pools in it and hands KV over the pod's
fabric; a layout spread over several pods hands KV across pods for some requests, which the model
charges to all of them (conservative).  Equivalently: both pools share one pod exactly when the
layout's dies fit in one pod, the rule the search uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.errors import LayoutError


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolPlacement:
    """The pods one pool's instances use (0-based, in order), and the dies it takes in each."""

    pool: str
    pods: tuple[int, ...]
    dies_per_pod: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    pod_dies: int
    pods_used: int
    pools: tuple[PoolPlacement, ...]

    @property
    def same_pod(self) -> bool:
        """Every pool in one and the same pod (KV never crosses pods)."""
        return self.pods_used == 1


def place(pools: list[tuple[str, int, int]], pod_dies: int) -> Placement:
    """Place ``(pool, instances, dies per instance)`` into pods of ``pod_dies`` dies, first fit.

    Instances larger than a pod take ``ceil(dies / pod_dies)`` fresh pods each.  Python loops run
    over the layout's instances (one layout, a few hundred at most), never over candidates.
    """
    free: list[int] = []
    used: dict[str, dict[int, int]] = {}
    for pool, instances, dies in pools:
        where = used.setdefault(pool, {})
        for _ in range(instances):
            if dies > pod_dies:
                first, count = len(free), -(-dies // pod_dies)
                free.extend([0] * count)
                for k in range(count):
                    where[first + k] = where.get(first + k, 0) + min(pod_dies, dies - k * pod_dies)
                continue
            slot = next((i for i, f in enumerate(free) if f >= dies), None)
            if slot is None:
                free.append(pod_dies)
                slot = len(free) - 1
            free[slot] -= dies
            where[slot] = where.get(slot, 0) + dies
    placed = tuple(PoolPlacement(pool=p, pods=tuple(sorted(w)), dies_per_pod=tuple(w[k] for k in sorted(w)))
                   for p, w in used.items())
    return Placement(pod_dies=pod_dies, pods_used=len(free), pools=placed)


def check_pods(placement: Placement, pods: int, hardware: str, where: str, key: str = "pods") -> None:
    """A layout needing more pods than the scenario has is refused, saying how many to ask for."""
    if placement.pods_used > pods:
        need, flag = placement.pods_used, "--" + key.replace("_", "-")
        raise LayoutError(f"needs {need} pods of {hardware} ({placement.pod_dies} dies each) but the scenario has "
                          f"{key} = {pods}", where=where, fix=f"set {key} = {need} in [scenario] or pass {flag} {need}")
