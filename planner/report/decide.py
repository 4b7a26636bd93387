"""Tables for planner/decide: bands next to the point estimates, failure what-ifs, cost, sensitivity."""

from __future__ import annotations

from dataclasses import dataclass

from rich import box
from rich.table import Table

from planner.documents.decide import BandRange, CostDoc, EntryBands, FailureDoc, SensitivityReport, UncertaintyDoc
from planner.report.base import _NONE, _cell
from planner.units import MICRO, MILLI, fmt_seconds

_KIND_ORDER = ("dies", "node", "pod")


def _table(title: str) -> Table:
    """A table in the plan table's style: a rule under the header, no outer box (reads at 80 columns)."""
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))


def _sig(value: float | None) -> str:
    """Three significant digits (integers from 100 up); an infinite value (null) reads ``inf``."""
    if value is None:
        return "inf"
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:#.3g}".rstrip(".")


def _with_band(point: float | None, band: BandRange) -> str:
    """``331.3 (252-368)``: the point with one decimal, the band with three significant digits."""
    return f"{'inf' if point is None else f'{point:.1f}'} ({_sig(band.low)}-{_sig(band.high)})"


def _with_band_s(point: float | None, band: BandRange) -> str:
    """``43.27 ms (34.0-49.3)``: the point as every table shows seconds, the band in its unit (us, ms or s)."""
    if point is None:
        return f"inf ({_sig(band.low)}-{_sig(band.high)} s)"
    text = fmt_seconds(point)
    unit = text.split()[-1]
    scale = {"us": MICRO, "ms": MILLI}.get(unit, 1.0)  # the unit fmt_seconds chose
    low = None if band.low is None else band.low / scale
    high = None if band.high is None else band.high / scale
    return f"{text} ({_sig(low)}-{_sig(high)})"


def ranking_text(rank_by: str, tolerate: str | None) -> str:
    """How a plan is ranked: by goodput per die or by cost, of what survives the worst failure if asked."""
    if rank_by == "cost":
        what = "$ per million output tokens"
        return f"ranked by {what} at the goodput that survives one {tolerate} failure" if tolerate else \
            f"ranked by {what}"
    return f"ranked by goodput per die that survives one {tolerate} failure" if tolerate else \
        "ranked by goodput per die"


def uncertainty_caption(u: UncertaintyDoc, skipped: int = 0) -> str:
    own = [s for s in u.spreads if not s.pooled]
    system = "every platform's" if u.system_pooled else f"{u.profile}'s"
    text = (f"p10-p90 over {u.samples} samples (seed {u.seed}): {len(own)} of {len(u.spreads)} efficiencies carry "
            f"their own calibration residuals, the rest the pooled sigma {u.pooled_sigma:.3f}; a common factor "
            f"sigma {u.system_sigma:.3f} from {system} {u.system_rows} system rows. The point estimates sit "
            f"{u.system_bias_frac:+.0%} (geometric mean) above those published systems; the band leaves that "
            "out. TTFT and TPOT at the point goodput. tied: the tok/s/die band overlaps rank 1's; >=#1: share "
            "of samples with at least rank 1's tok/s/die (same samples for every layout).")
    return text + (f" {skipped} listed layout(s) not banded." if skipped else "")


def bands_table(entries: list, u: UncertaintyDoc | None) -> Table | None:
    """Point estimate and p10-p90 band of tok/s/die, TTFT and TPOT per listed layout, with ties to rank 1."""
    rows = [e for e in entries if e.bands is not None]
    if not rows or u is None:
        return None
    table = _table("uncertainty: point (p10-p90) from the spread of the fitted efficiencies")
    for col in ("#", "tok/s/die", "TTFT", "TPOT", "tied", ">=#1"):
        table.add_column(col, justify="right" if col in ("#", ">=#1") else "left",
                         no_wrap=col in ("#", "tied", ">=#1"))
    for e in rows:
        b: EntryBands = e.bands
        tied = _NONE if b.tied_with_rank1 is None else ("yes" if b.tied_with_rank1 else "no")
        beats = _NONE if b.beats_rank1_frac is None else f"{b.beats_rank1_frac:.0%}"
        table.add_row(str(e.rank), _with_band(e.output_tokens_per_s_per_die, b.output_tokens_per_s_per_die),
                      _with_band_s(e.ttft_s, b.ttft_s), _with_band_s(e.tpot_s, b.tpot_s), tied, beats)
    table.caption_justify = "left"
    table.caption = uncertainty_caption(u, len(entries) - len(rows))
    return table


def _failure_cell(f: FailureDoc) -> str:
    lost = []
    if f.lost_prefill_instances:
        lost.append(f"-{f.lost_prefill_instances}P")
    if f.lost_decode_instances:
        lost.append(f"-{f.lost_decode_instances}D")
    return f"{f.surviving_frac:.0%} ({' '.join(lost) or 'none'})"


def failures_table(entries: list, tolerate: str | None) -> Table | None:
    """Share of goodput that survives the worst failure of each kind, per listed layout."""
    rows = [e for e in entries if e.failures]
    if not rows:
        return None
    units = {f.kind.value: f.failed_dies for f in rows[0].failures}
    heads = {"dies": f"{units.get('dies', 1)} die(s)", "node": f"node ({units.get('node')} dies)",
             "pod": f"pod ({units.get('pod')} dies)"}
    table = _table("failure what-if: share of goodput kept within the SLOs (instances lost: P prefill, D decode)")
    for col in ("#", "dies", *(heads[k] for k in _KIND_ORDER)):
        table.add_column(col, justify="right")
    best: dict[str, tuple[float, int]] = {}
    for e in rows:
        by_kind = {f.kind.value: f for f in e.failures}
        table.add_row(str(e.rank), str(e.dies), *(_failure_cell(by_kind[k]) if k in by_kind else _NONE
                                                   for k in _KIND_ORDER))
        for k, f in by_kind.items():
            if k not in best or f.surviving_frac > best[k][0] + 1e-12:
                best[k] = (f.surviving_frac, e.rank)
    graceful = "; ".join(f"{heads[k]}: " + (f"rank {best[k][1]} ({best[k][0]:.0%})" if best[k][0] > 0 else "none")
                         for k in _KIND_ORDER if k in best)
    table.caption_justify = "left"
    table.caption = (f"worst case of each kind; headroom: run at no more than the kept share of the goodput. "
                     f"Degrades most gracefully: {graceful}." + (f" Ranked by the {tolerate} column." if tolerate
                                                                  else ""))
    return table


def _usd(value: float | None) -> str:
    return _NONE if value is None else f"{value:.3f}"


def cost_table(entries: list, price: object | None) -> Table | None:
    """Dollars per hour and per million tokens per listed layout at its goodput."""
    rows = [e for e in entries if e.cost is not None]
    if not rows or price is None:
        return None
    pre = getattr(price, "prefill_usd_per_die_hour", None)
    p = price
    title = (f"cost at ${p.usd_per_die_hour:g} per die-hour (${p.usd_per_chip_hour:g} per chip-hour)"  # type: ignore
             + (f", prefill ${pre:g} per die-hour" if pre else "") + f"; price: {p.source}")  # type: ignore[attr-defined]
    table = _table(title)
    for col in ("#", "$/hour", "$/M out tok", "$/M in tok (P)", "$/M out tok (D)"):
        table.add_column(col, justify="right")
    for e in rows:
        c: CostDoc = e.cost
        table.add_row(str(e.rank), f"{c.usd_per_hour:,.2f}", _usd(c.usd_per_million_output_tokens),
                      _usd(c.usd_per_million_input_tokens), _usd(c.usd_per_million_output_tokens_decode_pool))
    table.caption_justify = "left"
    table.caption = ("$/M out tok: every die over the output tokens; (P) and (D) split the cost by pool: prefill "
                     "dies over prompt tokens, decode dies over output tokens.")
    return table


def plan_decision_tables(doc: object) -> list[Table]:
    """The bands, failure and cost tables of a plan report (each only when it was computed)."""
    entries = list(doc.layouts)  # type: ignore[attr-defined]
    tolerate = doc.tolerate_failures.value if doc.tolerate_failures else None  # type: ignore[attr-defined]
    tables = [bands_table(entries, doc.uncertainty), failures_table(entries, tolerate),  # type: ignore[attr-defined]
              cost_table(entries, doc.price)]  # type: ignore[attr-defined]
    return [t for t in tables if t is not None]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Row:
    """An evaluated layout in the shape of a plan entry (the tables above read these attributes)."""

    rank: str
    dies: int
    output_tokens_per_s_per_die: float | None
    ttft_s: float | None
    tpot_s: float | None
    bands: EntryBands | None
    failures: list[FailureDoc] | None
    cost: CostDoc | None


def evaluate_decision_tables(doc: object) -> list[Table]:
    """The bands, failure and cost tables of an evaluate report (each only when it was computed)."""
    g = doc.goodput  # type: ignore[attr-defined]
    row = _Row(rank="-", dies=doc.dies, output_tokens_per_s_per_die=g.output_tokens_per_s_per_die,  # type: ignore
               ttft_s=g.ttft_s, tpot_s=g.tpot_s, bands=doc.bands, failures=doc.failures,  # type: ignore
               cost=doc.cost)  # type: ignore[attr-defined]
    tables = [bands_table([row], doc.uncertainty), failures_table([row], None),  # type: ignore[attr-defined]
              cost_table([row], doc.price)]  # type: ignore[attr-defined]
    return [t for t in tables if t is not None]


# --------------------------------------------------------------------------- sensitivity


def sensitivity_tables(doc: SensitivityReport) -> list[Table]:
    """The tornado as a table: each input's change of goodput per die at -delta and +delta, largest first."""
    d = doc.delta_frac
    title = (f"sensitivity of {doc.layout_source} ({doc.dies} dies, {doc.output_tokens_per_s_per_die:.1f} tok/s/die) "
             f"to each input moved by -{d:.0%} / +{d:.0%}")
    table = _table(title)
    for col in ("input", f"-{d:.0%}", f"+{d:.0%}", "tok/s/die at -/+"):
        table.add_column(col, justify="left" if col == "input" else "right", no_wrap=col != "input")
    for r in doc.inputs:
        if not r.applies:
            table.add_row(_cell(r.input), _NONE, _NONE, "does not apply")
            continue
        table.add_row(_cell(r.input), f"{r.low_change_frac:+.1%}", f"{r.high_change_frac:+.1%}",
                      f"{r.low_output_tokens_per_s_per_die:.1f} / {r.high_output_tokens_per_s_per_die:.1f}")
    top = next((r for r in doc.inputs if r.input == doc.decides), None)
    table.caption_justify = "left"
    table.caption = (f"decides this deployment: {doc.decides} ({top.low_change_frac:+.1%} at -{d:.0%}, "
                     f"{top.high_change_frac:+.1%} at +{d:.0%})" if top else "no input moves the goodput")
    return [table]


__all__ = ["bands_table", "cost_table", "evaluate_decision_tables", "failures_table", "plan_decision_tables",
           "ranking_text", "sensitivity_tables", "uncertainty_caption"]
