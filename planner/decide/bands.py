"""p10-p90 bands of goodput, step times, TTFT and TPOT from the spread of the fitted efficiencies.

``samples`` parameter sets are drawn from the profile's spreads (planner.decide.spreads) with a
seeded ``numpy.random.Generator`` (the same seed gives the same bands); every layout is priced
under the same sets (common random numbers, so two layouts can be compared sample by sample),
all samples of one layout in one vector call per pool (planner.decide.outcomes).

A band is the p10 and p90 of a metric over the samples (``inverted_cdf``: an order statistic, no
interpolation, so an infinite TTFT stays infinite), widened to include the point estimate when
the samples fall on one side of it.  TTFT and TPOT are at the point estimate's goodput: how the
latencies the plan quotes move if the efficiencies are off while the load stays.

A layout is *tied* with rank 1 when their goodput-per-die bands overlap (the issue's rule);
``beats_rank1_frac`` is the share of samples in which its goodput per die is at least rank 1's,
which says more when the two move together (the system-level factor is common to both).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.cost.roofline import Array
from planner.decide.outcomes import Outcomes, outcomes_of
from planner.decide.spreads import Spreads
from planner.evaluate import GoodputPoint, stable_rate
from planner.inputs.layout import Layout
from planner.inputs.scenario import Scenario

DEFAULT_SAMPLES = 64
DEFAULT_SEED = 0
LOW, HIGH = 10.0, 90.0  # percentiles of a band


@dataclass(frozen=True, slots=True, kw_only=True)
class Range:
    """A band: the LOW and HIGH percentiles over the samples (widened to hold the point estimate)."""

    low: float
    high: float

    @property
    def width_frac(self) -> float:
        """(high - low) / the middle of the band; 0 for a zero-width band."""
        mid = (self.high + self.low) / 2
        return float((self.high - self.low) / mid) if mid > 0 and np.isfinite(self.high) else 0.0

    def overlaps(self, other: Range) -> bool:
        return self.low <= other.high and other.low <= self.high


@dataclass(frozen=True, slots=True, kw_only=True)
class LayoutBands:
    """Bands of one layout; ``tied_with_rank1``/``beats_rank1_frac`` are None on rank 1 itself."""

    goodput_requests_per_s: Range
    output_tokens_per_s_per_die: Range
    ttft_s: Range
    tpot_s: Range
    decode_step_s: Range
    prefill_step_s: Range | None
    batch_lowered_frac: float   # share of samples that meet TPOT only below the layout's batch
    tied_with_rank1: bool | None = None
    beats_rank1_frac: float | None = None


def sample_values(spreads: Spreads, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED) -> dict[str, Array]:
    """``samples`` values of every level parameter, (S,) each (planner.decide.spreads, module notes).

    ``theta_j * exp(d_j * (sigma_j Z_j + sigma_sys Z_0))``, fractions capped at 1; Z drawn from
    ``numpy.random.default_rng(seed)``: one column per parameter in profile order, then Z_0.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((samples, len(spreads.params)))
    z0 = rng.standard_normal(samples)
    out = {}
    for j, p in enumerate(spreads.params):
        value = p.value * np.exp(p.effect * (p.sigma * z[:, j] + spreads.system_sigma * z0))
        out[p.path] = np.minimum(value, 1.0) if p.path.endswith("frac") else value
    return out


def band(samples: Array, point: float | None) -> Range:
    """LOW-HIGH percentiles of ``samples`` (order statistics), widened to include ``point`` (None: infinite)."""
    lo, hi = np.quantile(np.asarray(samples, dtype=float), [LOW / 100, HIGH / 100], method="inverted_cdf")
    at = np.inf if point is None else point
    return Range(low=float(min(lo, at)), high=float(max(hi, at)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Priced:
    """A layout to band: the scenario it is priced under (a planned layout's own [scenario]) and its
    point estimate (planner.evaluate.layout_goodput)."""

    layout: Layout
    scenario: Scenario
    point: GoodputPoint


def _rate(it: Priced) -> float:
    """The rate the point's TTFT and TPOT were priced at (a hair inside a binding decode capacity)."""
    return stable_rate(it.point.goodput_requests_per_s, it.point.decode_capacity_requests_per_s)


def _bands(it: Priced, out: Outcomes) -> tuple[LayoutBands, Array]:
    """The bands of one layout and its goodput per die in each sample, (S,), from its outcomes at :func:`_rate`.

    ``values`` held the point's parameters first, then the samples: one vector call priced both,
    and the point's step times come from the first column.
    """
    point, layout = it.point, it.layout
    per_die = out.goodput_requests_per_s[1:] * it.scenario.workload.output_tokens / layout.dies
    pre = out.prefill_step_s
    bands = LayoutBands(
        goodput_requests_per_s=band(out.goodput_requests_per_s[1:], point.goodput_requests_per_s),
        output_tokens_per_s_per_die=band(per_die, point.output_tokens_per_s_per_die),
        ttft_s=band(out.ttft_s[1:], point.ttft_s), tpot_s=band(out.tpot_s[1:], point.tpot_s),
        decode_step_s=band(out.decode_step_s[1:], float(out.decode_step_s[0])),
        prefill_step_s=None if np.isnan(pre[0]) else band(pre[1:], float(pre[0])),
        batch_lowered_frac=float(np.mean(out.decode_batch[1:] < layout.decode.batch)))
    return bands, per_die


def layout_bands(items: list[Priced], spreads: Spreads, samples: int = DEFAULT_SAMPLES,
                 seed: int = DEFAULT_SEED) -> list[LayoutBands]:
    """Bands of each layout under the same ``samples`` parameter sets; ties against ``items[0]`` (rank 1).

    Deterministic: the parameter sets depend only on ``spreads``, ``samples`` and ``seed``.
    """
    drawn = sample_values(spreads, samples, seed)
    values = {p.path: np.concatenate([[p.value], drawn[p.path]]) for p in spreads.params}  # the point first
    # every layout under the same samples at once: shared pools priced once, curves and goodputs together
    outs = outcomes_of([(it.layout, it.scenario, _rate(it)) for it in items], values)
    priced = [_bands(it, out) for it, out in zip(items, outs, strict=True)]
    if not priced:
        return []
    first_band, first = priced[0][0].output_tokens_per_s_per_die, priced[0][1]
    out = [priced[0][0]]
    for b, per_die in priced[1:]:
        out.append(replace(b, tied_with_rank1=b.output_tokens_per_s_per_die.overlaps(first_band),
                           beats_rank1_frac=float(np.mean(per_die >= first * (1 - 1e-12)))))
    return out
