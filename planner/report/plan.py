"""Tables for ``planner plan``: ranked layouts, best per mode, Pareto view, near misses."""


from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from planner.documents.plan import PlanEntry, PlanReport
from planner.inputs.layout import Layout
from planner.inputs.scenario import ScenarioFile
from planner.modes import MODES
from planner.report.base import _cell
from planner.report.decide import plan_decision_tables, ranking_text
from planner.units import MILLI, fmt_seconds

# --------------------------------------------------------------------------- plan


class Ranked(Protocol):
    """A ranked layout as a report carries it (a plan entry, or the top layout of a check)."""

    @property
    def layout(self) -> Layout: ...
    @property
    def mtp(self) -> bool: ...


def layout_summary(entry: Ranked) -> str:
    """One line per layout: pools, their parallelism and operating points."""
    lay = entry.layout
    d = lay.decode
    mtp = "MTP" if entry.mtp else "no MTP"
    dec = MODES[lay.mode].summary(d.model_dump())
    p = lay.prefill
    pp = f" pp{p.pp}" if p and p.stages > 1 else ""
    pre = f"P {p.instances}x{p.dies} tp{p.tp}{pp} ep{p.ep} {p.batch_tokens // 1024}K m{p.micro_batches} | " if p else ""
    pods = getattr(entry, "pods", 1)
    where = f" | {pods} pods, KV over {entry.kv_fabric}" if pods > 1 and getattr(entry, "kv_fabric", None) else ""
    return f"{pre}{dec} | {mtp}{where}"


def _plan_rows(table: Table, entries: list[PlanEntry], sized: bool) -> None:
    for e in entries:
        head = [f"{e.headroom_frac:+.1%}"] if sized and e.headroom_frac is not None else []
        table.add_row(str(e.rank), e.mode.value, _cell(layout_summary(e)), str(e.dies),
                      f"{e.goodput_requests_per_s:.2f}", *head, f"{e.output_tokens_per_s_per_die:.1f}",
                      f"{e.output_tokens_per_s_per_chip:.1f}", fmt_seconds(e.ttft_s), fmt_seconds(e.tpot_s),
                      _cell(e.binding_constraint))


# Below this console width the ranked tables switch to their narrow form (numbers, then one
# wrapped line per layout): the wide form needs ~150 columns to show layout and binding whole.
WIDE_TABLE_COLUMNS = 140


class _ByWidth:
    """A table that renders wide when the console has room, else in its narrow form (80 columns)."""

    def __init__(self, wide: Table, narrow: Callable[[], RenderableType]):
        self.wide, self.narrow = wide, narrow

    def __getattr__(self, name: str) -> Any:  # title, caption, rows: as the wide table's
        return getattr(self.wide, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("wide", "narrow"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.wide, name, value)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.wide if options.max_width >= WIDE_TABLE_COLUMNS else self.narrow()


def _narrow_plan_table(title: str, entries: list[PlanEntry], sized: bool, caption: str | None) -> Group:
    """The numbers in a borderless table, then per layout one wrapped line: its summary and what binds."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    cols = ("#", "mode", "dies", "req/s", *(("head-\nroom",) if sized else ()), "tok/s\nper die",
            "tok/s\nper chip", "TTFT", "TPOT")
    for col in cols:
        table.add_column(col, justify="left" if col == "mode" else "right", no_wrap=col != "mode")
    for e in entries:
        head = [f"{e.headroom_frac:+.1%}"] if sized and e.headroom_frac is not None else []
        table.add_row(str(e.rank), e.mode.value, str(e.dies), f"{e.goodput_requests_per_s:.2f}", *head,
                      f"{e.output_tokens_per_s_per_die:.1f}", f"{e.output_tokens_per_s_per_chip:.1f}",
                      fmt_seconds(e.ttft_s), fmt_seconds(e.tpot_s))
    lines = Table.grid(padding=(0, 1))
    lines.add_column(justify="right", no_wrap=True)
    lines.add_column(overflow="fold")
    for e in entries:
        lines.add_row(f"{e.rank}", _cell(f"{layout_summary(e)}; binding: {e.binding_constraint}"))
    return Group(table, lines, *([Text(f"\n{caption}", style="table.caption")] if caption else []))


def _plan_table(title: str, entries: list[PlanEntry], sized: bool = False) -> Table:
    wide = _wide_plan_table(title, entries, sized)
    return _ByWidth(wide, lambda: _narrow_plan_table(title, entries, sized, wide.caption))  # type: ignore[return-value]


def _wide_plan_table(title: str, entries: list[PlanEntry], sized: bool = False) -> Table:
    table = Table(title=title, title_justify="left")
    cols = ("#", "mode", "layout", "dies", "req/s", *(("headroom",) if sized else ()), "tok/s/die", "tok/s/chip",
            "TTFT", "TPOT", "binding")
    for col in cols:
        text = col in ("layout", "binding")
        table.add_column(col, justify="left" if text or col == "mode" else "right", no_wrap=not text,
                         ratio=3 if col == "layout" else None)
    _plan_rows(table, entries, sized)
    return table


def slo_text(slo: object) -> str:
    """``TTFT p90 <= 2 s, TPOT <= 50 ms`` (``TPOT p99 <= ...`` when the TPOT SLO is on a percentile)."""
    tpot_p = getattr(slo, "tpot_percentile", None)
    tpot = f"TPOT p{tpot_p:g}" if tpot_p is not None else "TPOT"
    return (f"TTFT p{slo.ttft_percentile:g} <= {slo.ttft_s:g} s, "  # type: ignore[attr-defined]
            f"{tpot} <= {slo.tpot_s / MILLI:g} ms")  # type: ignore[attr-defined]


def precision_text(s: ScenarioFile) -> str:
    """``weights int8, activations int8, KV cache bf16; MTP 1 draft at 0.7; experts skewed``."""
    p, m = s.precision, s.mtp
    mtp = f"MTP {m.draft_tokens} draft{'s' if m.draft_tokens > 1 else ''} at {m.acceptance:g}" \
        if m.acceptance > 0 and m.draft_tokens > 0 else "no MTP"
    return (f"weights {p.weights.value}, activations {p.activations.value}, KV cache {p.kv_cache.value}; {mtp}; "
            f"experts {s.experts.balance.value}")


def assumed_text(assumed: list[str]) -> str:
    """``; assumed (defaults, not given): workload.input_tokens, ...`` or nothing."""
    if not assumed:
        return ""
    every = set(assumed) >= {"model", "hardware", "dies"} and len(assumed) > 10
    names = "the built-in default scenario, every field" if every else ", ".join(assumed)
    return f"; assumed (defaults, not given): {names}"


def limits_text(doc: PlanReport) -> str:
    """What the search was held to: ``--max-pp`` and the pins (``--tp``, ``--pp``, ``--max-batch``)."""
    parts = [] if doc.max_pp is None else [f"at most {doc.max_pp} pipeline stage{'s' if doc.max_pp > 1 else ''}"]
    p = doc.pinned
    if p is not None and p.tp is not None:
        parts.append(f"TP {p.tp}")
    if p is not None and p.pp is not None:
        parts.append(f"{p.pp} pipeline stage{'s' if p.pp > 1 else ''}")
    if p is not None and p.max_batch is not None:
        parts.append(f"at most {p.max_batch} sequences per decode die")
    return f"; searched with {', '.join(parts)}" if parts else ""


def plan_tables(doc: PlanReport) -> list[Table]:
    """Rich tables for ``planner plan``: top layouts, best per mode, search summary."""
    s, search = doc.scenario, doc.search
    slo = s.slo
    target = doc.target_rate_requests_per_s
    ranking = (f"sized for {target:g} req/s ({target * s.workload.output_tokens:,.0f} output tok/s): fewest dies "
               f"first, headroom = goodput / target - 1" if target is not None else
               ranking_text(doc.rank_by, doc.tolerate_failures.value if doc.tolerate_failures else None))
    budget = f"at most {doc.budget_dies} dies" if target is not None else f"{doc.budget_dies} dies"
    if doc.pod_dies:
        budget += f" in {doc.pods} pod{'s' if doc.pods > 1 else ''} of {doc.pod_dies}"
    if s.prefill_hardware:
        budget += f" (decode); prefill on {s.prefill_hardware}, {s.prefill_pods or 1} pod(s)"
    title = (f"{s.model} on {s.hardware}, {budget}; {s.workload.input_tokens} in / "
             f"{s.workload.output_tokens} out; {slo_text(slo)}; {precision_text(s)}; {ranking}"
             + limits_text(doc) + assumed_text(doc.assumed_defaults))
    top_table = _plan_table(title, doc.layouts, sized=target is not None)
    top_table.caption = doc.note
    tables = [top_table, *plan_decision_tables(doc),
              _plan_table("best layout per mode", list(doc.best_per_mode.values()), sized=target is not None)]
    tables.append(pareto_table(doc))
    summary = Table(title="search", title_justify="left")
    summary.add_column("item")
    summary.add_column("count", justify="right")
    summary.add_row("candidates evaluated", f"{search.candidates_evaluated:,}")
    summary.add_row("feasible (pool candidates meeting memory and TPOT)", f"{search.feasible:,}")
    for reason, count in search.rejected_by_reason.items():
        summary.add_row(f"rejected: {reason}", f"{count:,}")
    tables.append(summary)
    return tables


def near_miss_table(doc: PlanReport) -> Table:
    table = Table(title="no layout meets the SLOs; nearest misses", title_justify="left")
    for col in ("mode", "pool", "best achievable", "meets that SLO", "layout"):
        table.add_column(col)
    for m in doc.near_misses:
        decode = m.best_tpot_s is not None
        best = f"TPOT {fmt_seconds(m.best_tpot_s)}" if decode else f"TTFT {fmt_seconds(m.best_ttft_s)} (zero load)"
        meets = m.meets_tpot_slo if decode else m.meets_ttft_slo
        table.add_row(m.mode, m.pool, best, "yes" if meets else "no", _cell(json.dumps(m.layout)))
    return table


_BAR_WIDTH = 24
# planner.search.plan's rules for the front shown (PARETO_FLOOR_FRAC, PARETO_*_MARGIN)
_DROPPED = {"below_floor": "below 25% of the best goodput per die",
            "dominated_by_wide_margin": "dominated by a wide margin (2x the goodput within 5% of the TPOT)"}
_EIGHTHS = " ▏▎▍▌▋▊▉"
_PARETO_ROWS = 10


def _bar(value: float, top: float, width: int = _BAR_WIDTH) -> str:
    """A horizontal bar of ``value / top`` of ``width`` cells, in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, value / top)) * width * 8) if top > 0 else 0
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


def _pareto_rows(front: list[PlanEntry], limit: int = _PARETO_ROWS) -> list[PlanEntry]:
    """At most ``limit`` front points, evenly spread by TPOT, always keeping both ends and rank 1."""
    n = len(front)
    if n <= limit:
        return front
    keep = {round(i * (n - 1) / (limit - 1)) for i in range(limit)}
    for best in (i for i, e in enumerate(front) if e.rank == 1 and i not in keep):
        keep.remove(min(keep - {0, n - 1}, key=lambda i: abs(i - best)))
        keep.add(best)
    return [front[i] for i in sorted(keep)]


def pareto_table(doc: PlanReport) -> Table:
    """Terminal view of the Pareto front: one line per point, TPOT up, goodput per die as a bar."""
    front = sorted(doc.pareto, key=lambda e: e.tpot_s)
    rows = _pareto_rows(front)
    shown = f"{len(rows)} of {len(front)} points" if len(rows) < len(front) else f"{len(front)} points"
    left_out = ", ".join(f"{n} {_DROPPED[k]}" for k, n in doc.pareto_dropped.items() if n)
    table = Table(title=f"Pareto front ({shown}): goodput per die vs TPOT", title_justify="left", box=None,
                  padding=(0, 1), caption=f"left out of the front: {left_out}" if left_out else None,
                  caption_justify="left")
    for col in ("TPOT", "out tok/s/die", "", "mode", "dies", "#"):
        table.add_column(col, justify="left" if col in ("", "mode") else "right", no_wrap=True)
    top = max((e.output_tokens_per_s_per_die for e in front), default=0.0)
    for e in rows:
        table.add_row(fmt_seconds(e.tpot_s), f"{e.output_tokens_per_s_per_die:.1f}",
                      _bar(e.output_tokens_per_s_per_die, top), e.mode.value, str(e.dies), str(e.rank))
    return table
