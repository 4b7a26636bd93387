"""Tables for ``planner evaluate``."""


from __future__ import annotations

from rich.table import Table

from planner.documents.evaluate import Breakdown, EvaluateReport, LayerCost, LoadPointDoc
from planner.inputs.layout import Mode
from planner.report.base import _NONE, _cell
from planner.report.decide import evaluate_decision_tables
from planner.report.plan import slo_text
from planner.units import GIGA, fmt_bytes, fmt_rate, fmt_seconds

# --------------------------------------------------------------------------- evaluate


def _layer_table(pool: str, name: str, layer: LayerCost, discipline: str = "ideal",
                 micro_batches: int | None = None) -> Table:
    serial = micro_batches == 1 and not layer.stage_pairs
    overlap = f"overlap: none, one micro-batch ({discipline} needs two)" if serial else f"overlap: {discipline}"
    title = (f"{pool}: {name} x{layer.count}  layer {fmt_seconds(layer.layer_s)}  "
             f"{overlap}  "
             f"(per micro-batch: compute {fmt_seconds(layer.compute_s_per_micro_batch)}, "
             f"communication {fmt_seconds(layer.communication_s_per_micro_batch)})")
    table = Table(title=title, title_justify="left")
    for col in ("unit / collective", "time", "bound", "work", "traffic"):
        table.add_column(col, justify="left" if col in ("unit / collective", "bound") else "right")
    for op, v in layer.ops.items():
        table.add_row(_cell(op), fmt_seconds(v.time_s), v.bound, f"{v.flops / GIGA:.1f} GFLOP", fmt_bytes(v.bytes))
    for op, t in layer.communication.items():
        table.add_row(_cell(op), fmt_seconds(t), "fabric", _NONE, _NONE)
    for pair, v in layer.stage_pairs.items():  # overlap discipline: stage || its communication, and the waiting
        table.add_row(_cell(f"pair: {pair}"), fmt_seconds(v["stage_s"]), f"comm {fmt_seconds(v['communication_s'])}",
                      f"waiting {fmt_seconds(v['waiting_s'])}", _NONE)
    return table


def _memory_table(pool: str, bd: Breakdown) -> Table:
    short = bd.memory_shortfall_bytes
    title = f"{pool}: memory per die (usable {fmt_bytes(bd.usable_memory_bytes)})"
    if short:
        title += f": DOES NOT FIT, {fmt_bytes(short)} over"
    table = Table(title=title, title_justify="left")
    table.add_column("kind")
    table.add_column("bytes", justify="right")
    for kind, value in bd.memory_bytes.items():
        table.add_row(kind, fmt_bytes(value))
    return table


def _per_step_table(pool: str, bd: Breakdown) -> Table:
    table = Table(title=f"{pool}: once per step", title_justify="left")
    table.add_column("cost")
    table.add_column("time", justify="right")
    for kind, value in bd.per_step.items():
        table.add_row(kind, fmt_seconds(value))
    return table


def _summary_table(doc: EvaluateReport) -> Table:
    s = doc.scenario
    table = Table(title=(f"{doc.layout.mode} layout: {s.model} on {s.hardware}, {doc.dies} dies "
                         f"({doc.chips:g} chips); {s.workload.input_tokens} in / "
                         f"{s.workload.output_tokens} out; weights {s.precision.weights}, "
                         f"activations {s.precision.activations}, KV {s.precision.kv_cache}"),
                  title_justify="left")
    for col in ("pool", "step", "TPOT", "throughput", "per die", "per chip", "batch (max by memory)", "fits"):
        table.add_column(col, justify="left" if col in ("pool", "fits") else "right")
    p, d = doc.prefill, doc.decode
    if p is not None:
        table.add_row("prefill", fmt_seconds(p.step_s), _NONE, fmt_rate(p.input_tokens_per_s, "tok"),
                      fmt_rate(p.input_tokens_per_s_per_die, "tok"),
                      fmt_rate(p.input_tokens_per_s_per_chip, "tok"), _NONE, "yes" if p.fits_memory else "NO")
    if d is not None:
        table.add_row("decode", fmt_seconds(d.step_s), fmt_seconds(d.tpot_s), fmt_rate(d.output_tokens_per_s, "tok"),
                      fmt_rate(d.output_tokens_per_s_per_die, "tok"), fmt_rate(d.output_tokens_per_s_per_chip, "tok"),
                      f"{d.batch} ({d.max_batch_by_memory})", "yes" if d.fits_memory else "NO")
    return table


def _placement_text(doc: EvaluateReport) -> str:
    """Which pods each pool uses, per hardware kind, and the fabric KV crosses."""
    parts = []
    for kind in doc.placement.hardware:
        pools = "; ".join(f"{p.pool} in pod{'s' if len(p.pods) > 1 else ''} {_pod_list(p.pods)}" for p in kind.pools)
        parts.append(f"{kind.hardware}: {kind.pods_used} pod{'s' if kind.pods_used > 1 else ''} of "
                     f"{kind.pod_dies} dies ({pools})")
    kv = f"; KV over {doc.placement.kv_fabric}" if doc.placement.kv_fabric else ""
    return "placement: " + " | ".join(parts) + kv


def _pod_list(pods: list[int]) -> str:
    return f"{pods[0]}-{pods[-1]}" if len(pods) > 2 and pods == list(range(pods[0], pods[-1] + 1)) else \
        ", ".join(map(str, pods))


def _goodput_table(doc: EvaluateReport) -> Table:
    g, slo = doc.goodput, doc.scenario.slo
    table = Table(title=f"goodput under the SLOs ({slo_text(slo)})", title_justify="left")
    for col in ("goodput req/s", "out tok/s", "per die", "per chip", "TTFT", "TPOT", "prefill cap req/s",
                "decode cap req/s", "binding"):
        table.add_column(col, justify="left" if col == "binding" else "right")
    # a pd/transformerless pool priced alone; a collocated instance has no prefill pool but its own TTFT
    alone = doc.layout.mode != Mode.COLLOCATED and (doc.prefill is None or doc.decode is None)

    def cap(value: float | None) -> str:
        return "elsewhere" if value is None else f"{value:.2f}"

    ttft = ("elsewhere" if doc.prefill is None and alone else _seconds(g.ttft_s))
    table.add_row(f"{g.goodput_requests_per_s:.2f}", fmt_rate(g.output_tokens_per_s, "tok"),
                  f"{g.output_tokens_per_s_per_die:.1f}", f"{g.output_tokens_per_s_per_chip:.1f}",
                  ttft, "elsewhere" if g.tpot_s is None else fmt_seconds(g.tpot_s),
                  cap(g.prefill_capacity_requests_per_s), cap(g.decode_capacity_requests_per_s),
                  _cell(g.binding_constraint + ("" if g.meets_slo else " (misses the SLO)")))
    return table


def _expert_load_table(doc: EvaluateReport) -> Table | None:
    """Per pool and MoE layer class: the busiest expert die / mean and the waits it causes; per pool, what
    expert and DP-rank imbalance cost a step (the step against the same step perfectly balanced)."""
    pools = [(pool, m.expert_load) for pool, m in (("prefill", doc.prefill), ("decode", doc.decode)) if m is not None]
    if not any(load.layer_classes for _, load in pools):
        return None
    table = Table(title="expert load: busiest expert die / mean, the waits it causes per layer and micro-batch, "
                        "and what imbalance costs a step (experts / DP ranks)", title_justify="left")
    for col in ("pool", "policy", "layer class", "busiest / mean", "hottest layer", "combine wait", "dispatch wait",
                "cost per step"):
        table.add_column(col, justify="left" if col in ("pool", "policy", "layer class") else "right")
    for pool, load in pools:
        policy = load.policy + (f" every {load.rebalance_period_s:g} s" if load.policy == "eplb" else "")
        policy += ", measured matrix" if load.skew == "measured" else ""
        cost = f"{fmt_seconds(load.expert_imbalance_cost_s)} / {fmt_seconds(load.dp_imbalance_cost_s)}"
        for name, c in load.layer_classes.items():
            table.add_row(pool, policy, f"{name} x{c.layers}", f"{c.busiest_over_mean:.3f}",
                          f"{c.busiest_over_mean_hottest_layer:.3f}", fmt_seconds(c.combine_wait_s),
                          fmt_seconds(c.dispatch_wait_s), cost)
    return table


def _seconds(value: float | None) -> str:
    return "inf" if value is None else fmt_seconds(value)


def load_table(title: str, point: LoadPointDoc) -> Table:
    """TTFT by part at each percentile, then TPOT percentiles, the decode batch and the SLO verdicts."""
    verdict = (f"TTFT SLO {'met' if point.meets_ttft_slo else 'MISSED'}, "
               f"TPOT SLO {'met' if point.meets_tpot_slo else 'MISSED'}")
    if point.saturated_pool:
        cap = (point.prefill_saturation_requests_per_s if point.saturated_pool == "prefill"
               else point.decode_saturation_requests_per_s)
        verdict += f"; the {point.saturated_pool} pool saturates at {cap:.2f} req/s"
    table = Table(title=(f"{title}: {point.rate_requests_per_s:.2f} req/s, decode batch "
                         f"{point.decode_batch_per_die:.1f} per die; {verdict}"), title_justify="left")
    for col in ("", "queueing", "prefill", "step boundaries", "KV transfer", "first decode step", "TTFT", "TPOT"):
        table.add_column(col, justify="left" if not col else "right")
    tpot = {q.percentile: q.value_s for q in point.tpot}
    for t in point.ttft:
        table.add_row(f"p{t.percentile:g}", _seconds(t.queueing_s), _seconds(t.prefill_s),
                      _seconds(t.step_boundary_s), _seconds(t.kv_transfer_s),
                      _seconds(t.first_decode_step_s), _seconds(t.total_s),
                      _seconds(tpot[t.percentile]) if t.percentile in tpot else _NONE)
    for p in sorted(set(tpot) - {t.percentile for t in point.ttft}):
        table.add_row(f"p{p:g}", *([_NONE] * 6), _seconds(tpot[p]))
    table.add_row("mean", *([_NONE] * 6), _seconds(point.tpot_mean_s))
    return table


def evaluate_tables(doc: EvaluateReport) -> list[Table]:
    """Rich tables for ``planner evaluate``: summary, goodput, latency at goodput (and at --rate), breakdown."""
    summary = _summary_table(doc)
    summary.caption = f"{_placement_text(doc)}\n{doc.note}"
    tables: list[Table] = [summary, _goodput_table(doc), *evaluate_decision_tables(doc)]
    load = _expert_load_table(doc)
    if load is not None:
        tables.append(load)
    if doc.at_goodput is not None:
        tables.append(load_table("at the goodput", doc.at_goodput))
    if doc.at_rate is not None:
        tables.append(load_table("at --rate", doc.at_rate))
    for pool, metrics in (("prefill", doc.prefill), ("decode", doc.decode)):
        if metrics is None:
            continue
        bd = metrics.breakdown
        tables.extend(_layer_table(pool, name, layer, bd.overlap_discipline, bd.micro_batches)
                      for name, layer in bd.layers.items())
        tables.append(_per_step_table(pool, bd))
        tables.append(_memory_table(pool, bd))
    return tables
