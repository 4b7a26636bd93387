"""Which input decides a deployment: goodput per die of one layout with each input moved by +-X%.

The layout stays as written (pools, parallelism, batch), as in planner.decide.outcomes: a change
that pushes TPOT at the layout's batch over the SLO runs at the largest batch that meets it.
Each input is moved down and up by ``delta`` (a fraction, default 10%) alone, all others at their
point values; the inputs are ranked by the larger of the two changes (a tornado).  The first is
the input that decides the deployment: the one whose error costs (or buys) the most goodput.

Inputs: dense peaks (every dtype), HBM bandwidth, each fabric's bandwidth, the GEMM, attention
and memory-streaming efficiencies, the fabric efficiencies (all fabrics together, with the rate of
an in-switch all-reduce), the fixed costs (kernel, launch, scheduler gap, communication call costs
and the in-switch all-reduce's start-up: +X% is slower), the expert skew
(both popularity sigmas of measurements/expert_load.toml; ``balance = "eplb"`` or ``"none"``
only), the MTP acceptance (a layout with MTP on), and the input and output lengths.  Fractions
of peak are capped at 1 and the acceptance at 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from planner.decide.outcomes import Values, layout_outcomes
from planner.decide.spreads import level_values
from planner.inputs.expert_load import Policy
from planner.inputs.hardware import HardwareSpec
from planner.inputs.layout import Layout
from planner.inputs.scenario import Scenario

DEFAULT_DELTA = 0.10

Variant = Callable[[Scenario, float], tuple[Scenario, Values]]


@dataclass(frozen=True, slots=True, kw_only=True)
class InputEffect:
    """Goodput per die (output tokens/s/die) with one input at ``1 - delta`` and ``1 + delta`` of its value."""

    name: str
    low_tokens_per_s_per_die: float
    high_tokens_per_s_per_die: float
    applies: bool  # False: the input does not act on this layout (e.g. MTP off, perfect balance)

    def change(self, point: float) -> tuple[float, float]:
        """Relative change of goodput per die at -delta and +delta (0 when the point is 0)."""
        if point <= 0:
            return 0.0, 0.0
        return self.low_tokens_per_s_per_die / point - 1.0, self.high_tokens_per_s_per_die / point - 1.0

    def swing(self, point: float) -> float:
        """The larger absolute change: the tornado's sort key."""
        return max(abs(c) for c in self.change(point))


@dataclass(frozen=True, slots=True, kw_only=True)
class Sensitivity:
    """Every input's effect on one layout, largest swing first; ``decides`` names the first."""

    delta: float
    point_tokens_per_s_per_die: float
    inputs: tuple[InputEffect, ...]

    @property
    def decides(self) -> InputEffect | None:
        return self.inputs[0] if self.inputs and self.inputs[0].swing(self.point_tokens_per_s_per_die) > 0 else None


def _scaled(hw: HardwareSpec, paths: list[str], f: float, cap: bool = False) -> dict[str, float]:
    levels = {p: v for p, v, _ in level_values(hw)}
    out = {}
    for path in paths:
        value = levels[path] if path in levels else _value(hw, path)
        out[path] = min(value * f, 1.0) if cap else value * f
    return out


def _value(hw: HardwareSpec, path: str) -> float:
    head, _, name = path.rpartition(".")
    if head.startswith("fabrics."):
        return float(getattr(hw.fabric_named(head.split(".")[1]), name))
    section = {"peak": hw.peaks, "memory": hw.memory}[head]
    return float(getattr(section, name))


def _hardware(paths: Callable[[HardwareSpec], list[str]], cap: bool = False) -> Variant:
    return lambda sc, f: (sc, _scaled(sc.hardware, paths(sc.hardware), f, cap))


def _by_dtype(hw: HardwareSpec, name: str) -> list[str]:
    """Paths of the per-dtype GEMM ``name`` (max_frac / memory_frac) the profile sets."""
    return [f"efficiency.gemm.by_dtype.{d.value}.{name}" for d, own in hw.gemm_efficiency.by_dtype.items()
            if getattr(own, name) is not None]


def _peaks(hw: HardwareSpec) -> list[str]:
    return [f"peak.{d.value}_flops_per_s" for d in hw.supported_dtypes]


def _fabric_fracs(hw: HardwareSpec) -> list[str]:
    """Each fabric's efficiency and, where it has one, its in-switch reduction's fraction of the link rate."""
    return [*(f"fabrics.{f.name}.efficiency.max_frac" for f in hw.fabrics),
            *(f"fabrics.{f.name}.in_switch_reduction.max_frac" for f in hw.fabrics if f.in_switch_reduction)]


def _fixed_costs(hw: HardwareSpec) -> list[str]:
    return ["overheads.kernel_s", "overheads.eager_launch_s", "overheads.scheduler_gap_s", "collectives.dispatch_s",
            "collectives.combine_s", "collectives.p2p_s", "collectives.collective_s", "collectives.low_latency_copy_s",
            *(f"fabrics.{f.name}.in_switch_reduction.latency_s" for f in hw.fabrics if f.in_switch_reduction)]


def _skew(sc: Scenario, f: float) -> tuple[Scenario, Values]:
    def scaled(load):  # a new ExpertLoad (its tables are cached per instance)
        p = dataclasses.replace(load.params, skew_mild_sigma=load.params.skew_mild_sigma * f,
                                skew_hot_sigma=load.params.skew_hot_sigma * f)
        return dataclasses.replace(load, params=p, _tables={})

    e = sc.experts
    experts = dataclasses.replace(e, prefill=scaled(e.prefill), decode=scaled(e.decode))
    return dataclasses.replace(sc, experts=experts), {}


def _workload(key: str, least: int) -> Variant:
    def variant(sc: Scenario, f: float) -> tuple[Scenario, Values]:
        w = sc.workload
        value = max(least, round(getattr(w, key) * f))
        longest = {}  # every prompt scales, the longest too (its distance from the mean in SDs is kept)
        if key == "input_tokens" and w.input_max_tokens is not None:
            longest = {"input_max_tokens": max(value, round(w.input_max_tokens * f))}
        return dataclasses.replace(sc, workload=dataclasses.replace(w, **{key: value}, **longest)), {}
    return variant


def _mtp(sc: Scenario, f: float) -> tuple[Scenario, Values]:
    return dataclasses.replace(sc, mtp=dataclasses.replace(sc.mtp, acceptance=min(1.0, sc.mtp.acceptance * f))), {}


def inputs(scenario: Scenario) -> list[tuple[str, Variant, bool]]:
    """(name, variant, applies) of every input, in a fixed order (the tie-break of the ranking)."""
    hw = scenario.hardware
    skew_applies = scenario.experts.balance in (Policy.EPLB, Policy.NONE) and scenario.model.is_moe
    out: list[tuple[str, Variant, bool]] = [
        ("peak FLOP/s", _hardware(_peaks), True),
        ("HBM bandwidth", _hardware(lambda h: ["memory.hbm_bandwidth_bytes_per_s"]), True)]
    out += [(f"{f.name} bandwidth", _hardware(lambda h, n=f.name: [f"fabrics.{n}.bandwidth_bytes_per_s"]), True)
            for f in hw.fabrics]
    out += [
        ("GEMM efficiency", _hardware(lambda h: ["efficiency.gemm.max_frac", *_by_dtype(h, "max_frac")], cap=True),
         True),
        ("attention efficiency", _hardware(lambda h: ["efficiency.attention.compute_frac",
                                                      "efficiency.attention.memory_frac"], cap=True), True),
        ("memory-streaming efficiency", _hardware(lambda h: ["efficiency.memory.frac", *_by_dtype(h, "memory_frac")],
                                                  cap=True), True),
        ("fabric efficiencies", _hardware(_fabric_fracs, cap=True), True),
        ("fixed costs (kernels, scheduler, calls)", _hardware(_fixed_costs), True),
        ("expert skew", _skew, skew_applies),
        ("MTP acceptance", _mtp, scenario.mtp_draft_tokens > 0),
        ("input length", _workload("input_tokens", 1), True),
        ("output length", _workload("output_tokens", 2), True)]
    return out


def _per_die(layout: Layout, scenario: Scenario, values: Values) -> float:
    rate = float(layout_outcomes(layout, scenario, values).goodput_requests_per_s[0])
    return rate * scenario.workload.output_tokens / layout.dies


def sensitivity(layout: Layout, scenario: Scenario, delta: float = DEFAULT_DELTA) -> Sensitivity:
    """Goodput per die of ``layout`` with each input at ``1 -+ delta`` of its value, largest swing first.

    ``scenario`` is the one the layout is priced under (a planned layout's own [scenario]).
    """
    point = _per_die(layout, scenario, {})
    effects = []
    for name, variant, applies in inputs(scenario):
        if not applies:
            effects.append(InputEffect(name=name, low_tokens_per_s_per_die=point, high_tokens_per_s_per_die=point,
                                       applies=False))
            continue
        low, high = (_per_die(layout, *variant(scenario, 1.0 + s * delta)) for s in (-1, 1))
        effects.append(InputEffect(name=name, low_tokens_per_s_per_die=low, high_tokens_per_s_per_die=high,
                                   applies=True))
    order = sorted(range(len(effects)), key=lambda i: (-round(effects[i].swing(point), 12), i))
    return Sensitivity(delta=delta, point_tokens_per_s_per_die=point, inputs=tuple(effects[i] for i in order))
