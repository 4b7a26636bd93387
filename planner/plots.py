"""Pictures: the plan's Pareto front, the evaluate per-layer breakdown and load curve, the sensitivity
tornado, as PNG or SVG bytes (the CLI writes them through :mod:`planner.outputs`).

A renderer like ``report.py`` (it converts seconds to ms for the axes) and the only module that
imports matplotlib, lazily inside functions: matplotlib is the optional ``plot`` extra, so the
core and the test suite run without it.  Inputs are the report documents
(:class:`~planner.documents.plan.PlanReport`, :class:`~planner.documents.evaluate.EvaluateReport`);
nothing is recomputed here.

Output is deterministic: the Agg canvas (no pyplot, no GUI backend), a fixed figure size and
DPI, and for SVG a fixed ``svg.hashsalt`` and no date, so two runs with the same matplotlib
give identical bytes.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.errors import MissingExtraError, PlannerError
from planner.units import MILLI

if TYPE_CHECKING:
    from planner.documents.decide import SensitivityReport
    from planner.documents.evaluate import DecodeMetrics, EvaluateReport, LayerCost, LoadPointDoc, PrefillMetrics
    from planner.documents.plan import PlanEntry, PlanReport

FORMATS = (".png", ".svg")
DPI = 120
INSTALL_HINT = "pip install 'superpod-planner[plot]'"
_RC = {"svg.hashsalt": "superpod-planner", "svg.fonttype": "path", "font.size": 9.0,
       "axes.titlesize": 10.0, "legend.fontsize": 8.0}
_MODE_STYLE = {"collocated": ("o", "tab:blue"), "pd": ("s", "tab:orange"), "transformerless": ("^", "tab:green")}
_COMM_COLORS = ("0.25", "0.45", "0.65", "0.8")


# --------------------------------------------------------------------------- plumbing


def check_target(path: Path, flag: str = "--plot") -> None:
    """Fail early (before any search) on a suffix we cannot write or a missing matplotlib.

    ``flag`` names the option in the error line (``--plot`` or ``--plot-load``).
    """
    if path.suffix.lower() not in FORMATS:
        raise PlannerError(f"unsupported plot format {path.suffix or '(no suffix)'!r}", where=flag,
                           fix="name the file *.png or *.svg")
    _matplotlib()


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError("--plot needs matplotlib, which is not installed",
                                fix=INSTALL_HINT) from None
    return matplotlib


def _figure(width_in: float, height_in: float) -> Any:
    """A figure on the Agg canvas (never pyplot: no global state, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _encoded(fig: Any, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=DPI, metadata={"Date": None} if fmt == "svg" else {})
    return buffer.getvalue()


def _draw(path: Path, draw: Any, doc: Any, size_in: tuple[float, float]) -> bytes:
    """The image for ``path`` (its suffix picks PNG or SVG); the CLI writes it (planner.outputs)."""
    check_target(path)
    matplotlib = _matplotlib()
    with matplotlib.rc_context(_RC):
        fig = _figure(*size_in)
        draw(fig, doc)
        return _encoded(fig, path.suffix.lower().lstrip("."))


# --------------------------------------------------------------------------- plan: Pareto front


def short_summary(entry: PlanEntry) -> str:
    """``pd, 672 dies: P 4x72 + D 2x192`` (instances x dies per pool)."""
    lay = entry.layout
    d = lay.decode
    if lay.mode == "transformerless":
        dec = f"D {d.instances}x[{d.attention_dies} attn + {d.expert_dies} exp]"
    else:
        dec = f"D {d.instances}x{d.dies} tp{d.tp} ep{d.ep}"
    p = lay.prefill
    pre = f"P {p.instances}x{p.dies} + " if p else ""
    return f"{entry.mode.value}, {entry.dies} dies: {pre}{dec}"


def _xy(entries: list[PlanEntry]) -> tuple[list[float], list[float]]:
    return [e.tpot_s / MILLI for e in entries], [e.output_tokens_per_s_per_die for e in entries]


def _plan_points(ax: Any, doc: PlanReport) -> None:
    """Every ranked layout faint, the front emphasised, one marker per mode."""
    modes = [m for m in _MODE_STYLE if any(e.mode == m for e in doc.layouts)]
    for mode in modes:
        marker, color = _MODE_STYLE[mode]
        x, y = _xy([e for e in doc.layouts if e.mode == mode])
        ax.scatter(x, y, marker=marker, color=color, alpha=0.35, s=18, linewidths=0, zorder=2)
        x, y = _xy([e for e in doc.pareto if e.mode == mode])
        ax.scatter(x, y, marker=marker, color=color, s=48, edgecolors="black", linewidths=0.6, zorder=4,
                   label=f"{mode} (front)")
    ax.scatter([], [], marker="o", color="0.5", alpha=0.35, s=18, linewidths=0, label="faint: other ranked layouts")
    x, y = _xy(sorted(doc.pareto, key=lambda e: e.tpot_s))
    ax.step(x, y, where="post", color="0.2", linewidth=1.0, zorder=3, label="Pareto front")


def _plan_annotations(ax: Any, doc: PlanReport) -> None:
    slo_ms = doc.scenario.slo.tpot_s / MILLI
    ax.axvline(slo_ms, color="tab:red", linestyle="--", linewidth=1.0, zorder=1, label=f"TPOT SLO {slo_ms:g} ms")
    best = doc.layouts[0]
    x, y = best.tpot_s / MILLI, best.output_tokens_per_s_per_die
    text = f"rank 1: {short_summary(best)}\n{y:.1f} tok/s/die at TPOT {x:.1f} ms"
    ax.annotate(text, xy=(x, y), xytext=(0.97, 0.05), textcoords="axes fraction", ha="right", va="bottom",
                fontsize=8, bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.6"},
                arrowprops={"arrowstyle": "->", "color": "0.3", "linewidth": 0.8}, zorder=5)


def _plan_figure(fig: Any, doc: PlanReport) -> None:
    s = doc.scenario
    ax = fig.add_subplot()
    _plan_points(ax, doc)
    _plan_annotations(ax, doc)
    ax.set_xlim(0.0, max([s.slo.tpot_s / MILLI, *_xy(doc.layouts)[0]]) * 1.08)
    ax.set_ylim(0.0, max(_xy(doc.layouts)[1]) * 1.12)
    ax.set_xlabel("TPOT, mean time per output token after the first (ms)")
    ax.set_ylabel("goodput per die (output tokens/s per die)")
    ax.set_title(f"{s.model} on {s.hardware}, budget {doc.budget_dies} dies; "
                 f"{s.workload.input_tokens} in / {s.workload.output_tokens} out; "
                 f"{len(doc.layouts)} ranked layouts")
    ax.grid(True, linewidth=0.4, alpha=0.5)
    ax.legend(loc="upper left")


def plan_image(doc: PlanReport, path: Path) -> bytes:
    """Pareto front of a plan report (pass every ranked layout for the faint points)."""
    if not doc.layouts:
        raise PlannerError("no ranked layout to plot", where="--plot")
    return _draw(path, _plan_figure, doc, (8.0, 5.0))


# --------------------------------------------------------------------------- evaluate: breakdown


def _segments(layer: LayerCost) -> list[tuple[str, float, bool]]:
    """(name, ms, is_collective) per unit, then per collective, per micro-batch."""
    ops = [(op, v.time_s / MILLI, False) for op, v in layer.ops.items()]
    return ops + [(op, t / MILLI, True) for op, t in layer.communication.items()]


def _pools(doc: EvaluateReport) -> dict[str, PrefillMetrics | DecodeMetrics]:
    """The report's pools by name (collocated layouts have no prefill pool)."""
    return {name: m for name, m in (("prefill", doc.prefill), ("decode", doc.decode)) if m is not None}


def _styles(pools: dict[str, PrefillMetrics | DecodeMetrics]) -> dict[str, dict[str, Any]]:
    """One colour per unit name across both pools; collectives grey and hatched."""
    from matplotlib import colormaps

    palette = [c for i, c in enumerate(colormaps["tab20"].colors) if i not in (14, 15)]  # greys: collectives
    palette += list(colormaps["tab20b"].colors)
    names = {(n, c) for pool in pools.values() for layer in pool.breakdown.layers.values()
             for n, _, c in _segments(layer)}
    units = sorted(n for n, c in names if not c)
    comms = sorted(n for n, c in names if c)
    styles = {n: {"color": palette[i % len(palette)]} for i, n in enumerate(units)}
    styles.update({n: {"color": _COMM_COLORS[i % len(_COMM_COLORS)], "hatch": "///", "edgecolor": "white"}
                   for i, n in enumerate(comms)})
    return styles


def _pool_axes(ax: Any, pool: str, data: PrefillMetrics | DecodeMetrics, styles: dict[str, dict[str, Any]]) -> None:
    layers = data.breakdown.layers
    for row, layer in enumerate(layers.values()):
        left = 0.0
        for op, ms, _ in _segments(layer):
            ax.barh(row, ms, left=left, height=0.6, label=op, linewidth=0.3, **styles[op])
            left += ms
        ax.text(left, row, f"  {left:.2f} ms (layer {layer.layer_s / MILLI:.2f} ms)", va="center", fontsize=8)
    ax.set_yticks(range(len(layers)), [f"{name} x{layer.count}" for name, layer in layers.items()])
    pad = max(0.0, (3 - len(layers)) / 2)  # a lone layer class keeps a bar of normal thickness
    ax.set_ylim(len(layers) - 0.5 + pad, -0.5 - pad)
    ax.set_xlim(0.0, ax.get_xlim()[1] * 1.3)
    ax.set_title(f"{pool}: step {data.step_s / MILLI:.2f} ms", loc="left")
    ax.set_xlabel("ms per layer and micro-batch")
    ax.grid(True, axis="x", linewidth=0.4, alpha=0.5)


def _evaluate_figure(fig: Any, doc: EvaluateReport) -> None:
    pools = _pools(doc)
    styles = _styles(pools)
    axes = fig.subplots(len(pools), 1, squeeze=False)[:, 0]
    for ax, (pool, data) in zip(axes, pools.items(), strict=True):
        _pool_axes(ax, pool, data, styles)
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    order = sorted(handles, key=lambda n: ("hatch" in styles[n], n))
    fig.legend([handles[n] for n in order], order, loc="outside right center", title="unit / collective")
    s = doc.scenario
    fig.suptitle(f"{doc.layout.mode} layout: {s.model} on {s.hardware}, {doc.dies} dies: "
                 f"time per layer class and pool", fontsize=10)
    fig.supxlabel("bars: units and (hatched) collectives of one layer for one micro-batch; text: their sum, "
                  "then the layer time over all micro-batches with overlap", fontsize=8)


def breakdown_image(doc: EvaluateReport, path: Path) -> bytes:
    """Stacked per-layer bars of an evaluate report, one panel per pool."""
    return _draw(path, _evaluate_figure, doc, (10.0, 6.0))


# --------------------------------------------------------------------------- load curve

_PCT_STYLE = {50.0: "-", 90.0: "--", 99.0: ":"}


def _curve(points: list[LoadPointDoc], pick: Any) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for p in points:
        value = pick(p)
        if value is not None:
            xs.append(p.rate_requests_per_s)
            ys.append(value / MILLI)
    return xs, ys


def _load_axes(ax: Any, points: list[LoadPointDoc], doc: EvaluateReport, ttft: bool) -> None:
    slo = doc.scenario.slo
    rows = points[0].ttft if ttft else points[0].tpot
    for i, row in enumerate(rows):
        pct = row.percentile
        if ttft:
            xs, ys = _curve(points, lambda p, i=i: p.ttft[i].total_s)
        else:
            xs, ys = _curve(points, lambda p, i=i: p.tpot[i].value_s)
        ax.plot(xs, ys, _PCT_STYLE.get(pct, "-."), color="tab:blue" if ttft else "tab:orange", label=f"p{pct:g}")
    limit = slo.ttft_s if ttft else slo.tpot_s
    which = f"p{slo.ttft_percentile:g}" if ttft else (f"p{slo.tpot_percentile:g}" if slo.tpot_percentile else "mean")
    ax.axhline(limit / MILLI, color="tab:red", linewidth=0.8, label=f"SLO ({which})")
    g = doc.goodput.goodput_requests_per_s
    if g:
        ax.axvline(g, color="0.3", linewidth=0.8, linestyle="-.", label=f"goodput {g:.1f} req/s")
    if ttft:  # waiting explodes near saturation: keep the SLO region readable
        ax.set_ylim(0.0, 3.0 * limit / MILLI)
    ax.set_ylabel("TTFT (ms)" if ttft else "TPOT (ms)")
    ax.grid(True, linewidth=0.4, alpha=0.5)
    ax.legend(loc="upper left")


def _load_figure(fig: Any, doc: EvaluateReport) -> None:
    points = doc.load_curve or []
    top, bottom = fig.subplots(2, 1, sharex=True)
    _load_axes(top, points, doc, ttft=True)
    _load_axes(bottom, points, doc, ttft=False)
    bottom.set_xlabel("arrival rate (requests/s)")
    s = doc.scenario
    fig.suptitle(f"{doc.layout.mode} layout: {s.model} on {s.hardware}, {doc.dies} dies: latency against load, "
                 f"up to saturation", fontsize=10)


def load_image(doc: EvaluateReport, path: Path) -> bytes:
    """TTFT and TPOT percentiles against the arrival rate (an evaluate report with its ``load_curve``)."""
    if not doc.load_curve:
        raise PlannerError("the report has no load curve", where="--plot-load", fix="run evaluate with --plot-load")
    return _draw(path, _load_figure, doc, (8.0, 6.5))


# --------------------------------------------------------------------------- sensitivity: tornado


def _tornado_figure(fig: Any, doc: SensitivityReport) -> None:
    rows = [r for r in doc.inputs if r.applies][::-1]  # the input that decides at the top
    ax = fig.subplots()
    y = list(range(len(rows)))
    d = doc.delta_frac
    ax.barh([v - 0.2 for v in y], [100 * r.low_change_frac for r in rows], height=0.4, color="tab:blue",
            label=f"input -{d:.0%}")
    ax.barh([v + 0.2 for v in y], [100 * r.high_change_frac for r in rows], height=0.4, color="tab:orange",
            label=f"input +{d:.0%}")
    ax.set_yticks(y, [r.input for r in rows])
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    ax.set_xlabel(f"change of goodput per die (%) from {doc.output_tokens_per_s_per_die:.1f} output tok/s/die")
    ax.grid(True, axis="x", linewidth=0.4, alpha=0.5)
    ax.legend(loc="lower right")
    s = doc.scenario
    fig.suptitle(f"{s.model} on {s.hardware}: {doc.layout_source} ({doc.layout.mode}, {doc.dies} dies), each input "
                 f"moved alone; decides: {doc.decides or 'none'}", fontsize=10)


def tornado_image(doc: SensitivityReport, path: Path) -> bytes:
    """The sensitivity tornado: goodput-per-die change at -delta and +delta per input, largest first."""
    return _draw(path, _tornado_figure, doc, (8.0, 0.35 * len(doc.inputs) + 1.6))
