"""How far each fitted efficiency of a hardware profile may be off: log-normal spreads from data.

Two sources, both read from the shipped measurements (never set by hand):

Calibration residuals (``measurements/calibration.json``)
    The rows that fit a profile form groups: rows that share a fitted parameter are fitted
    jointly (the DeepGEMM rows fit ``max_frac``, ``m_half_tokens``, ``k_half``, the memory
    efficiency and the kernel cost together).  A group of ``n`` rows fitting ``k`` parameters
    leaves residuals ``r_i = log(predicted_i / measured_i)`` with ``n - k`` degrees of freedom;
    its spread is ``sigma = sqrt(sum r_i^2 / (n - k))``, the model's prediction error for a new
    kernel of that family.  Every level parameter of the group (the fractions of peak and the
    per-call times; not the curve shapes ``m_half_tokens``, ``k_half``, ``decay``) gets it.
    A parameter with no residual degrees of freedom (``kind = "assumed"``, ``"measured"`` or
    ``"spec"``, or one row per parameter, as the CloudMatrix MLA rows) gets the pooled spread of
    every group of every shipped profile that has some: ``sqrt(sum r^2 / sum (n - k))``
    (groups with the same rows counted once).  An assumed value is a guess, not a measurement:
    its true error may be larger than the calibrated kernels' (said in every report).
System-row errors (``measurements/validation.json``)
    The held-out system rows (published serving throughput) are predicted with errors ``e_j``
    (rows marked as known misses left out: their cause is a mechanism the model lacks);
    ``log(1 + e_j)`` has a mean (the roofline's optimism: its point estimates sit above the
    published systems; reported as ``system_bias_frac = exp(mean) - 1``, not put in the band) and a standard
    deviation (ddof 1), the part of the system-level miss that varies from deployment to
    deployment.  That deviation is a common factor on every efficiency of the platform (one
    draw per sample for all of them).  A platform with fewer than two system rows uses the
    rows of every platform.

A sample of parameter ``j`` is ``theta_j * exp(d_j * (sigma_j Z_j + sigma_sys Z_0))`` with
independent standard normals ``Z``, ``d_j = +1`` for a fraction of peak (higher is faster) and
``-1`` for a time (higher is slower); fractions are capped at 1.  Both spreads are symmetric in
log space, so the point estimate is the median of each parameter's samples.

This module is the model (pure); planner.ops.spreads reads the measurements and runs the fits'
residuals through it (``profile_spreads``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from planner.inputs.hardware import HardwareSpec

FASTER, SLOWER = 1, -1  # the effect of a larger value: a fraction of peak vs a time

# The level parameters of a profile: (dotted path, attribute chain on HardwareSpec, effect).
_LEVELS = (
    ("efficiency.gemm.max_frac", ("gemm_efficiency", "max_frac"), FASTER),
    ("efficiency.attention.compute_frac", ("attention_efficiency", "compute_frac"), FASTER),
    ("efficiency.attention.memory_frac", ("attention_efficiency", "memory_frac"), FASTER),
    ("efficiency.memory.frac", ("memory_efficiency", "frac"), FASTER),
    ("overheads.kernel_s", ("overheads", "kernel_s"), SLOWER),
    ("overheads.eager_launch_s", ("overheads", "eager_launch_s"), SLOWER),
    ("overheads.scheduler_gap_s", ("overheads", "scheduler_gap_s"), SLOWER),
    ("collectives.dispatch_s", ("collectives", "dispatch_s"), SLOWER),
    ("collectives.combine_s", ("collectives", "combine_s"), SLOWER),
    ("collectives.p2p_s", ("collectives", "p2p_s"), SLOWER),
    ("collectives.collective_s", ("collectives", "collective_s"), SLOWER),
    ("collectives.low_latency_copy_s", ("collectives", "low_latency_copy_s"), SLOWER),
)

# The fewest system rows of one platform whose standard deviation is used (else every platform's).
MIN_SYSTEM_ROWS = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Spread:
    """One level parameter's calibration spread (log units) and where it comes from."""

    path: str
    value: float
    effect: int            # FASTER or SLOWER
    sigma: float           # log-normal sigma from the calibration residuals
    rows: int              # residual rows behind sigma (0: pooled)
    dof: int               # their degrees of freedom (rows - parameters fitted jointly)
    pooled: bool           # True: no residual degrees of freedom on this profile; the pooled spread


@dataclass(frozen=True, slots=True, kw_only=True)
class Spreads:
    """Every level parameter's spread on one profile, and the platform's system-level spread."""

    profile: str
    params: tuple[Spread, ...]
    pooled_sigma: float
    system_sigma: float    # std of log(1 + error) of the system rows (a common factor)
    system_bias_frac: float  # exp(mean of the same) - 1: the point estimates' optimism (not in the band)
    system_rows: int
    system_pooled: bool    # True: fewer than MIN_SYSTEM_ROWS on this platform; every platform's rows

    @property
    def zero(self) -> bool:
        """No spread at all: every band collapses onto its point estimate."""
        return self.system_sigma == 0 and all(p.sigma == 0 for p in self.params)


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    """Calibration rows fitted jointly on one profile: their residuals (log) and the parameters."""

    rows: tuple[str, ...]
    params: frozenset[str]
    residuals: tuple[float, ...]

    @property
    def dof(self) -> int:
        return len(self.residuals) - len(self.params)

    @property
    def sum_sq(self) -> float:
        return float(sum(r * r for r in self.residuals))


def level_values(hw: HardwareSpec) -> list[tuple[str, float, int]]:
    """(path, value, effect) of every level parameter of ``hw``: efficiencies (with the per-dtype GEMM
    ones the profile has), overheads, call costs, each fabric's ``max_frac``, and the in-switch
    reduction's ``max_frac`` and ``latency_s`` where a fabric has one."""
    out = []
    for path, (section, name), effect in _LEVELS:
        out.append((path, float(getattr(getattr(hw, section), name)), effect))
    for dtype, own in hw.gemm_efficiency.by_dtype.items():  # [efficiency.gemm.by_dtype.<dtype>]
        out += [(f"efficiency.gemm.by_dtype.{dtype.value}.{name}", float(value), FASTER)
                for name in ("max_frac", "memory_frac") if (value := getattr(own, name)) is not None]
    for fabric in hw.fabrics:
        out.append((f"fabrics.{fabric.name}.efficiency.max_frac", float(fabric.efficiency.max_frac), FASTER))
        if (isr := fabric.in_switch_reduction) is not None:  # [fabrics.in_switch_reduction]: its rate and start-up
            out += [(f"fabrics.{fabric.name}.in_switch_reduction.max_frac", float(isr.max_frac), FASTER),
                    (f"fabrics.{fabric.name}.in_switch_reduction.latency_s", float(isr.latency_s), SLOWER)]
    return out


def components(rows: list[tuple[str, list[str], float | None]]) -> list[Group]:
    """Group rows that share a fitted parameter (union-find over parameters)."""
    parent: dict[str, str] = {}

    def root(p: str) -> str:
        while parent.setdefault(p, p) != p:
            p = parent[p]
        return p

    for _key, params, _r in rows:
        for p in params[1:]:
            parent[root(p)] = root(params[0])
    groups: dict[str, tuple[list[str], set[str], list[float]]] = {}
    for key, params, r in rows:
        keys, names, res = groups.setdefault(root(params[0]), ([], set(), []))
        keys.append(key)
        names.update(params)
        if r is not None:
            res.append(r)
    return [Group(rows=tuple(k), params=frozenset(n), residuals=tuple(r)) for k, n, r in groups.values()]


def pooled_sigma(groups: Iterable[Group]) -> float:
    """``sqrt(sum r^2 / sum dof)`` over groups with residual degrees of freedom, each row set once."""
    seen: set[tuple[str, ...]] = set()
    num = den = 0.0
    for g in groups:
        if g.dof <= 0 or g.rows in seen:
            continue
        seen.add(g.rows)
        num, den = num + g.sum_sq, den + g.dof
    return math.sqrt(num / den) if den > 0 else 0.0


def build_spreads(hw: HardwareSpec, groups: Iterable[Group], all_groups: Iterable[Group],
                  system_errors: Iterable[tuple[str, float]]) -> Spreads:
    """The spreads of ``hw`` from its calibration groups, every profile's groups (for the pooled
    spread) and every system row's ``(profile, log error)`` (see the module notes)."""
    pooled = pooled_sigma(all_groups)
    by_param = {p: g for g in groups for p in g.params}
    params = []
    for path, value, effect in level_values(hw):
        g = by_param.get(path)
        own = g is not None and g.dof > 0
        params.append(Spread(path=path, value=value, effect=effect,
                             sigma=math.sqrt(g.sum_sq / g.dof) if own else pooled,  # type: ignore[union-attr]
                             rows=len(g.residuals) if own else 0, dof=g.dof if own else 0,  # type: ignore[union-attr]
                             pooled=not own))
    errors = list(system_errors)
    own_rows = [e for name, e in errors if name == hw.name]
    use = own_rows if len(own_rows) >= MIN_SYSTEM_ROWS else [e for _, e in errors]
    sigma = float(np.std(use, ddof=1)) if len(use) >= 2 else 0.0
    return Spreads(profile=hw.name, params=tuple(params), pooled_sigma=pooled, system_sigma=sigma,
                   system_bias_frac=math.expm1(float(np.mean(use))) if use else 0.0, system_rows=len(use),
                   system_pooled=len(own_rows) < MIN_SYSTEM_ROWS)


def zero_spreads(hw: HardwareSpec) -> Spreads:
    """Spreads of a profile with no residual spread at all (every band is its point estimate)."""
    return build_spreads(hw, (), (), ())
