"""Rendering: rich tables and JSON for hardware profiles and model cards.

The only place with human units (TB/s, TFLOP/s, ms); everything upstream is SI.  Only this
module and ``cli.py`` import rich.  JSON output has sorted keys, no timestamps and no absolute
paths (a file is named by its base name only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from planner.spec.hardware import HardwareSpec
from planner.spec.model import ModelSpec
from planner.units import GIGA, TERA, fmt_bytes, fmt_count, fmt_rate, fmt_seconds

_META = ("source", "kind", "calibrated_from")
_NONE = "-"


# --------------------------------------------------------------------------- output


def console() -> Console:
    """Console for stdout; 150 columns when not a terminal (logs, pipes) unless COLUMNS is set."""
    out = Console(highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(highlight=False, width=150)
    return out


def dumps(payload: dict[str, Any]) -> str:
    """Machine output: JSON with sorted keys and a trailing newline."""
    return json.dumps(payload, sort_keys=True, indent=2) + "\n"


def _cell(value: object) -> Text:
    """A table cell as plain text (never parsed as rich markup: sources contain brackets)."""
    return Text(str(value))


# --------------------------------------------------------------------------- values


def fmt_field(key: str, value: Any) -> str:
    """Human form of one data-file value, chosen by the SI suffix of its field name."""
    if value is None:
        return _NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or _NONE
    if not isinstance(value, int | float):
        return str(value)
    if key.endswith("_flops_per_s"):
        return fmt_rate(value, "FLOP")
    if key.endswith("_bytes_per_s"):
        return fmt_rate(value, "B")
    if key.endswith("_bytes"):
        return fmt_bytes(value)
    if key.endswith("_s"):
        return fmt_seconds(value)
    if key.startswith("reported_"):
        return fmt_count(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _sections(label: str, data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Walk a dumped file depth-first: (section label, section dict)."""
    yield label, data
    for key, value in data.items():
        sub = f"{label}.{key}" if label else key
        if isinstance(value, dict):
            yield from _sections(sub, value)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                yield from _sections(f"{sub}[{i}]", item)


def _is_scalar_field(section: dict[str, Any], key: str, value: Any) -> bool:
    """A row of its own: not a sub-section and not provenance (a sourced section's kind)."""
    if (key in _META and "source" in section) or isinstance(value, dict):
        return False
    return not (isinstance(value, list) and value and isinstance(value[0], dict))


def _kind_text(section: dict[str, Any]) -> str:
    kind = section.get("kind")
    if not kind:
        return _NONE
    rows = section.get("calibrated_from") or []
    return f"{kind} from {', '.join(rows)}" if rows else str(kind)


def fields_table(title: str, dumped: dict[str, Any], top_label: str) -> Table:
    """Every field of a dumped data file, one row each, in human units."""
    table = Table(title=title, title_justify="left")
    for column in ("section", "field", "value"):
        table.add_column(column, overflow="fold")
    for label, section in _sections("", dumped):
        rows = [(k, v) for k, v in section.items() if _is_scalar_field(section, k, v)]
        for i, (key, value) in enumerate(rows):
            table.add_row(_cell(label or top_label if i == 0 else ""), _cell(key),
                          _cell(fmt_field(key, value)), end_section=i == len(rows) - 1)
    return table


def sources_table(dumped: dict[str, Any], top_label: str) -> Table:
    """Provenance of each sourced section: kind (spec/measured/assumed/calibrated) and source."""
    table = Table(title="Sources", title_justify="left")
    table.add_column("section", overflow="fold")
    table.add_column("kind", overflow="fold")
    table.add_column("source", overflow="fold", ratio=1)
    for label, section in _sections("", dumped):
        if "source" in section:
            table.add_row(_cell(label or top_label), _cell(_kind_text(section)),
                          _cell(section["source"]))
    return table


def _file_tables(title: str, dumped: dict[str, Any], top_label: str) -> list[Table]:
    return [fields_table(title, dumped, top_label), sources_table(dumped, top_label)]


# --------------------------------------------------------------------------- profiles


def _num_chips(spec: HardwareSpec) -> int | float:
    chips = spec.num_dies / spec.dies_per_chip
    return int(chips) if chips.is_integer() else chips


def profiles_table(specs: Sequence[HardwareSpec]) -> Table:
    """One row per hardware profile: the headline per-die numbers (units in the headers)."""
    table = Table(title="Hardware profiles (per die unless stated)", title_justify="left")
    for column in ("name", "chip", "dies", "dies/chip", "dtypes", "bf16 TFLOP/s", "HBM GB",
                   "HBM TB/s", "fabrics (dies)"):
        table.add_column(column, overflow="fold")
    for spec in specs:
        f = spec.file
        bf16 = f.peak.bf16_flops_per_s
        table.add_row(*map(_cell, (
            spec.name, f.chip, spec.num_dies, spec.dies_per_chip,
            " ".join(d.value for d in spec.supported_dtypes),
            f"{bf16 / TERA:.1f}" if bf16 else _NONE, f"{spec.hbm_bytes / GIGA:.0f}",
            f"{spec.hbm_bandwidth_bytes_per_s / TERA:.2f}",
            ", ".join(f"{fab.name} {fab.dies}" for fab in f.fabrics))))
    return table


def profile_tables(spec: HardwareSpec) -> list[Table]:
    """All fields of one profile in human units, then the source of each section."""
    dumped = spec.file.model_dump(mode="json")
    return _file_tables(f"Hardware profile {spec.name} ({spec.path.name}); per die",
                        dumped, "profile")


def profile_json(spec: HardwareSpec) -> dict[str, Any]:
    """The validated profile plus derived values, for ``--json``."""
    return {
        "kind": "hardware_profile",
        "file_name": spec.path.name,
        "file": spec.file.model_dump(mode="json"),
        "derived": {
            "supported_dtypes": [d.value for d in spec.supported_dtypes],
            "num_chips": _num_chips(spec),
        },
    }


# --------------------------------------------------------------------------- models


def _experts_text(spec: ModelSpec) -> str:
    ffn = spec.file.ffn
    if not spec.is_moe:
        return "dense"
    shared = f" + {ffn.num_shared_experts} shared" if ffn.num_shared_experts else ""
    return f"{ffn.top_k} of {ffn.num_routed_experts}{shared}"


def models_table(specs: Sequence[ModelSpec]) -> Table:
    """One row per model card: shape and derived parameter counts."""
    table = Table(title="Model cards (parameters derived from the card)", title_justify="left")
    for column in ("name", "model", "layers", "hidden", "attention", "experts", "total",
                   "active", "dtype"):
        table.add_column(column, overflow="fold", no_wrap=column not in ("model", "experts"))
    for spec in specs:
        f, counts = spec.file, spec.param_counts()
        table.add_row(*map(_cell, (
            spec.name, f.display_name, spec.num_layers, spec.hidden,
            f"{f.attention.kind.value} {f.attention.num_heads}/{f.attention.num_kv_heads}",
            _experts_text(spec), fmt_count(counts.total), fmt_count(counts.active),
            f.native_dtype)))
    return table


def model_tables(spec: ModelSpec) -> list[Table]:
    """All fields of one model card, the sources, and derived vs reported parameters."""
    dumped = spec.file.model_dump(mode="json")
    tables = _file_tables(f"Model card {spec.name} ({spec.path.name})", dumped, "model")
    return [*tables, params_table(spec)]


def _params_derived(spec: ModelSpec) -> dict[str, Any]:
    counts, reported = spec.param_counts(), spec.file.params
    return {
        "params": {"total": counts.total, "active": counts.active, "mtp": counts.mtp,
                   "embedding": counts.embedding, "lm_head": counts.lm_head},
        "reported": {"total": reported.reported_total, "active": reported.reported_active},
        "derived_over_reported": {"total": counts.total / reported.reported_total,
                                  "active": counts.active / reported.reported_active},
    }


def params_table(spec: ModelSpec) -> Table:
    """Derived parameter counts next to the reported ones (MTP is counted apart)."""
    derived = _params_derived(spec)
    table = Table(title=f"Parameters of {spec.name} (derived vs reported)", title_justify="left")
    for column in ("count", "derived", "reported", "derived/reported"):
        table.add_column(column)
    for key in ("total", "active", "mtp", "embedding", "lm_head"):
        reported = derived["reported"].get(key)
        ratio = derived["derived_over_reported"].get(key)
        table.add_row(*map(_cell, (
            key, fmt_count(derived["params"][key]),
            fmt_count(reported) if reported else _NONE,
            f"{ratio:.4f}" if ratio else _NONE)))
    return table


def model_json(spec: ModelSpec) -> dict[str, Any]:
    """The validated card plus derived parameter counts, for ``--json``."""
    return {
        "kind": "model_card",
        "file_name": spec.path.name,
        "file": spec.file.model_dump(mode="json"),
        "derived": _params_derived(spec),
    }


# --------------------------------------------------------------------------- evaluate


def _ms(value_s: float) -> str:
    return fmt_seconds(value_s)


def _layer_table(pool: str, name: str, layer: dict[str, Any]) -> Table:
    title = (f"{pool}: {name} x{layer['count']}  layer {_ms(layer['layer_s'])}  "
             f"(per micro-batch: compute {_ms(layer['compute_s_per_micro_batch'])}, "
             f"communication {_ms(layer['communication_s_per_micro_batch'])})")
    table = Table(title=title, title_justify="left")
    for col in ("unit / collective", "time", "bound", "work", "traffic"):
        table.add_column(col, justify="left" if col in ("unit / collective", "bound") else "right")
    for op, v in layer["ops"].items():
        table.add_row(_cell(op), _ms(v["time_s"]), v["bound"], f"{v['flops'] / GIGA:.1f} GFLOP",
                      fmt_bytes(v["bytes"]))
    for op, t in layer["communication"].items():
        table.add_row(_cell(op), _ms(t), "fabric", _NONE, _NONE)
    return table


def _memory_table(pool: str, bd: dict[str, Any]) -> Table:
    short = bd.get("memory_shortfall_bytes", 0.0)
    title = f"{pool}: memory per die (usable {fmt_bytes(bd['usable_memory_bytes'])})"
    if short:
        title += f": DOES NOT FIT, {fmt_bytes(short)} over"
    table = Table(title=title, title_justify="left")
    table.add_column("kind")
    table.add_column("bytes", justify="right")
    for kind, value in bd["memory_bytes"].items():
        table.add_row(kind, fmt_bytes(value))
    return table


def _per_step_table(pool: str, bd: dict[str, Any]) -> Table:
    table = Table(title=f"{pool}: once per step", title_justify="left")
    table.add_column("cost")
    table.add_column("time", justify="right")
    for kind, value in bd["per_step"].items():
        table.add_row(kind, _ms(value))
    return table


def _summary_table(doc: dict[str, Any]) -> Table:
    s = doc["scenario"]
    table = Table(title=(f"{doc['layout']['mode']} layout: {s['model']} on {s['hardware']}, {doc['dies']} dies "
                         f"({doc['chips']:g} chips); {s['workload']['input_tokens']} in / "
                         f"{s['workload']['output_tokens']} out; weights {s['precision']['weights']}, "
                         f"activations {s['precision']['activations']}, KV {s['precision']['kv_cache']}"),
                  title_justify="left")
    for col in ("pool", "step", "TPOT", "throughput", "per die", "per chip", "batch (max by memory)", "fits"):
        table.add_column(col, justify="left" if col in ("pool", "fits") else "right")
    p, d = doc["prefill"], doc["decode"]
    if p is not None:
        table.add_row("prefill", _ms(p["step_s"]), _NONE, fmt_rate(p["input_tokens_per_s"], "tok"),
                      fmt_rate(p["input_tokens_per_s_per_die"], "tok"),
                      fmt_rate(p["input_tokens_per_s_per_chip"], "tok"), _NONE, "yes" if p["fits_memory"] else "NO")
    table.add_row("decode", _ms(d["step_s"]), _ms(d["tpot_s"]), fmt_rate(d["output_tokens_per_s"], "tok"),
                  fmt_rate(d["output_tokens_per_s_per_die"], "tok"), fmt_rate(d["output_tokens_per_s_per_chip"], "tok"),
                  f"{d['batch']} ({d['max_batch_by_memory']})", "yes" if d["fits_memory"] else "NO")
    return table


def _goodput_table(doc: dict[str, Any]) -> Table:
    g, slo = doc["goodput"], doc["scenario"]["slo"]
    table = Table(title=(f"goodput under the SLOs (TTFT p{slo['ttft_percentile']:g} <= {slo['ttft_s']:g} s, "
                         f"TPOT <= {slo['tpot_s'] * 1e3:g} ms)"), title_justify="left")
    for col in ("goodput req/s", "out tok/s", "per die", "per chip", "TTFT", "TPOT", "prefill cap req/s",
                "decode cap req/s", "binding"):
        table.add_column(col, justify="left" if col == "binding" else "right")
    table.add_row(f"{g['goodput_requests_per_s']:.2f}", fmt_rate(g["output_tokens_per_s"], "tok"),
                  f"{g['output_tokens_per_s_per_die']:.1f}", f"{g['output_tokens_per_s_per_chip']:.1f}",
                  fmt_seconds(g["ttft_s"]) if g["ttft_s"] is not None else "inf", fmt_seconds(g["tpot_s"]),
                  f"{g['prefill_capacity_requests_per_s']:.2f}", f"{g['decode_capacity_requests_per_s']:.2f}",
                  _cell(g["binding_constraint"] + ("" if g["meets_slo"] else " (misses the SLO)")))
    return table


def evaluate_tables(doc: dict[str, Any]) -> list[Table]:
    """Rich tables for ``planner evaluate``: summary, goodput, then per pool the per-layer breakdown."""
    summary = _summary_table(doc)
    summary.caption = doc.get("note")
    tables: list[Table] = [summary, _goodput_table(doc)]
    for pool in ("prefill", "decode"):
        if doc[pool] is None:
            continue
        bd = doc[pool]["breakdown"]
        tables.extend(_layer_table(pool, name, layer) for name, layer in bd["layers"].items())
        tables.append(_per_step_table(pool, bd))
        tables.append(_memory_table(pool, bd))
    return tables


# --------------------------------------------------------------------------- plan


def layout_summary(entry: dict[str, Any]) -> str:
    """One line per layout: pools, their parallelism and operating points."""
    lay = entry["layout"]
    d = lay["decode"]
    mtp = "MTP" if entry.get("mtp") else "no MTP"
    if lay["mode"] == "transformerless":
        dec = (f"D {d['instances']}x[{d['attention_dies']} attn ({d['domains']} dom) + {d['expert_dies']} exp] "
               f"b{d['batch']} m{d['micro_batches']} R{d['redundant_experts']}")
    else:
        dec = (f"D {d['instances']}x{d['dies']} tp{d['tp']} ep{d['ep']} b{d['batch']} m{d['micro_batches']} "
               f"R{d['redundant_experts']}")
        if lay["mode"] == "collocated":
            dec += f" chunk{d['prefill_chunk_tokens']}"
    p = lay.get("prefill")
    pre = (f"P {p['instances']}x{p['dies']} tp{p['tp']} ep{p['ep']} {p['batch_tokens'] // 1024}K m{p['micro_batches']}"
           f" | " if p else "")
    return f"{pre}{dec} | {mtp}"


def _plan_rows(table: Table, entries: list[dict[str, Any]]) -> None:
    for e in entries:
        table.add_row(str(e["rank"]), e["mode"], _cell(layout_summary(e)), str(e["dies"]),
                      f"{e['goodput_requests_per_s']:.2f}", f"{e['output_tokens_per_s_per_die']:.1f}",
                      f"{e['output_tokens_per_s_per_chip']:.1f}", fmt_seconds(e["ttft_s"]), fmt_seconds(e["tpot_s"]),
                      _cell(e["binding_constraint"]))


def _plan_table(title: str, entries: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("#", "mode", "layout", "dies", "req/s", "tok/s/die", "tok/s/chip", "TTFT", "TPOT", "binding"):
        text = col in ("layout", "binding")
        table.add_column(col, justify="left" if text or col == "mode" else "right", no_wrap=not text,
                         ratio=3 if col == "layout" else None)
    _plan_rows(table, entries)
    return table


def plan_tables(doc: dict[str, Any]) -> list[Table]:
    """Rich tables for ``planner plan``: top layouts, best per mode, search summary."""
    s, search = doc["scenario"], doc["search"]
    slo = s["slo"]
    title = (f"{s['model']} on {s['hardware']}, {doc['budget_dies']} dies; {s['workload']['input_tokens']} in / "
             f"{s['workload']['output_tokens']} out; TTFT p{slo['ttft_percentile']:g} <= {slo['ttft_s']:g} s, "
             f"TPOT <= {slo['tpot_s'] * 1e3:g} ms; ranked by goodput per die")
    top_table = _plan_table(title, doc["layouts"])
    top_table.caption = doc.get("note")
    tables = [top_table,
              _plan_table("best layout per mode", list(doc["best_per_mode"].values()))]
    tables.append(pareto_table(doc))
    summary = Table(title="search", title_justify="left")
    summary.add_column("item")
    summary.add_column("count", justify="right")
    summary.add_row("candidates evaluated", f"{search['candidates_evaluated']:,}")
    summary.add_row("feasible (pool candidates meeting memory and TPOT)", f"{search['feasible']:,}")
    for reason, count in search["rejected_by_reason"].items():
        summary.add_row(f"rejected: {reason}", f"{count:,}")
    tables.append(summary)
    return tables


def near_miss_table(doc: dict[str, Any]) -> Table:
    table = Table(title="no layout meets the SLOs; nearest misses", title_justify="left")
    for col in ("mode", "pool", "best achievable", "meets that SLO", "layout"):
        table.add_column(col)
    for m in doc["near_misses"]:
        best = (f"TPOT {fmt_seconds(m['best_tpot_s'])}" if "best_tpot_s" in m
                else f"TTFT {fmt_seconds(m['best_ttft_s'])} (zero load)")
        meets = m.get("meets_tpot_slo", m.get("meets_ttft_slo"))
        table.add_row(m["mode"], m["pool"], best, "yes" if meets else "no", _cell(json.dumps(m["layout"])))
    return table


_BAR_WIDTH = 24
_EIGHTHS = " ▏▎▍▌▋▊▉"
_PARETO_ROWS = 10


def _bar(value: float, top: float, width: int = _BAR_WIDTH) -> str:
    """A horizontal bar of ``value / top`` of ``width`` cells, in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, value / top)) * width * 8) if top > 0 else 0
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


def _pareto_rows(front: list[dict[str, Any]], limit: int = _PARETO_ROWS) -> list[dict[str, Any]]:
    """At most ``limit`` front points, evenly spread by TPOT, always keeping both ends and rank 1."""
    n = len(front)
    if n <= limit:
        return front
    keep = {round(i * (n - 1) / (limit - 1)) for i in range(limit)}
    for best in (i for i, e in enumerate(front) if e["rank"] == 1 and i not in keep):
        keep.remove(min(keep - {0, n - 1}, key=lambda i: abs(i - best)))
        keep.add(best)
    return [front[i] for i in sorted(keep)]


def pareto_table(doc: dict[str, Any]) -> Table:
    """Terminal view of the Pareto front: one line per point, TPOT up, goodput per die as a bar."""
    front = sorted(doc["pareto"], key=lambda e: e["tpot_s"])
    rows = _pareto_rows(front)
    shown = f"{len(rows)} of {len(front)} points" if len(rows) < len(front) else f"{len(front)} points"
    table = Table(title=f"Pareto front ({shown}): goodput per die vs TPOT", title_justify="left", box=None,
                  padding=(0, 1))
    for col in ("TPOT", "out tok/s/die", "", "mode", "dies", "#"):
        table.add_column(col, justify="left" if col in ("", "mode") else "right", no_wrap=True)
    top = max((e["output_tokens_per_s_per_die"] for e in front), default=0.0)
    for e in rows:
        table.add_row(fmt_seconds(e["tpot_s"]), f"{e['output_tokens_per_s_per_die']:.1f}",
                      _bar(e["output_tokens_per_s_per_die"], top), e["mode"], str(e["dies"]), str(e["rank"]))
    return table


# --------------------------------------------------------------------------- check

_CHECK_LABELS = {
    "goodput_requests_per_s_per_die": "goodput per die (req/s/die; ranking key)",
    "goodput_requests_per_s": "goodput (req/s)",
    "ttft_s": "TTFT at the goodput",
    "tpot_s": "TPOT",
    "output_tokens_per_s_per_die": "output tok/s per die",
    "output_tokens_per_s_per_chip": "output tok/s per chip",
}


def _check_value(key: str, value: Any) -> str:
    if value is None:
        return _NONE
    return fmt_seconds(value) if key in ("ttft_s", "tpot_s") else f"{value:,.5g}"


def _pct(frac: float | None) -> str:
    return _NONE if frac is None else f"{frac:+.1%}"


def _check_layout_table(doc: dict[str, Any]) -> Table:
    changed = any(c["item"] == "top_layout" for c in doc["changes"])
    table = Table(title=f"top layout: {'CHANGED' if changed else 'same'}", title_justify="left")
    for col in ("", "mode", "dies", "layout"):
        table.add_column(col, overflow="fold")
    for label, m in (("baseline", doc["baseline_metrics"]), ("now", doc["current_metrics"])):
        if m is None:
            table.add_row(label, _NONE, _NONE, "infeasible: no layout meets the SLOs")
        else:
            table.add_row(label, m["mode"], str(m["dies"]), _cell(layout_summary(m)))
    return table


def _check_metrics_table(doc: dict[str, Any]) -> Table:
    changes = {c["item"]: c for c in doc["changes"]}
    table = Table(title=f"metrics of the top layout (tolerance {doc['tolerance']:.1%} on goodput per die)",
                  title_justify="left")
    for col in ("metric", "baseline", "now", "change", "effect"):
        table.add_column(col, justify="left" if col in ("metric", "effect") else "right")
    base, now = doc["baseline_metrics"] or {}, doc["current_metrics"] or {}
    for key, label in _CHECK_LABELS.items():
        c = changes.get(key, {"relative_change": 0.0, "effect": "same"} if base and now else {})
        table.add_row(label, _check_value(key, base.get(key)), _check_value(key, now.get(key)),
                      _pct(c.get("relative_change")), c.get("effect", _NONE))
    return table


def _check_files_table(doc: dict[str, Any]) -> Table | Text:
    files = doc["data_files_changed"]
    if not files:
        return Text("data files: none changed since the baseline (same SHA-256)")
    table = Table(title="data files changed since the baseline", title_justify="left")
    table.add_column("file (SHA-256 differs)", overflow="fold")
    for name in files:
        table.add_row(_cell(name))
    return table


def _check_verdict(doc: dict[str, Any]) -> Text:
    notes = [f"{c['item']} {c['effect']}" + (f" ({_pct(c['relative_change'])})" if c["relative_change"] else "")
             for c in doc["changes"] if c["effect"] in ("regression", "improvement")]
    head = "REGRESSION" if doc["verdict"] == "regression" else "ok"
    return Text(f"check {doc['baseline']}: {head}" + (f": {'; '.join(notes)}" if notes else ""))


def check_tables(doc: dict[str, Any]) -> list[Table | Text]:
    """Rich output of ``planner check``: top layout, metrics baseline vs now, changed files, verdict."""
    return [_check_layout_table(doc), _check_metrics_table(doc), _check_files_table(doc), _check_verdict(doc)]


# --------------------------------------------------------------------------- validate


def _measured_text(value: float, unit: str) -> str:
    """A measurement in human units: SI units scaled, published units (tokens/s/node) as given."""
    if unit == "s":
        return fmt_seconds(value)
    if unit in ("FLOP/s", "B/s"):
        return fmt_rate(value, unit[:-2])
    return f"{value:,.0f} {unit}"


def _gate_text(row: dict[str, Any]) -> str:
    if row["role"] == "upper_bound":
        return "<= measured"
    return _NONE if row["tolerance"] is None else f"+-{row['tolerance']:.0%}"


def _ok_text(row: dict[str, Any]) -> str:
    if not row["gated"]:
        return "not gated"
    return "yes" if row["within"] else "NO"


def validate_rows_table(doc: dict[str, Any]) -> Table:
    """Every shipped measurement: predicted vs measured, signed error, its gate and verdict."""
    table = Table(title="published measurements: predicted vs measured (error = predicted / measured - 1)",
                  title_justify="left")
    for col in ("row", "file", "role", "hardware", "predicted", "measured", "error", "gate", "ok"):
        table.add_column(col, justify="right" if col in ("predicted", "measured", "error", "gate") else "left",
                         overflow="fold")
    for r in doc["rows"]:
        table.add_row(_cell(r["id"]), r["file"].split("/")[-1], r["role"], r["profile"] or _NONE,
                      _measured_text(r["predicted"], r["unit"]), _measured_text(r["measured"], r["unit"]),
                      f"{r['error']:+.1%}", _gate_text(r), _ok_text(r))
    return table


def validate_summary_table(doc: dict[str, Any]) -> Table:
    """Median and max absolute error, calibration (fitted) rows and held-out rows apart."""
    table = Table(title="median absolute error (bound and gap rows excluded)", title_justify="left")
    for col in ("rows", "count", "median |error|", "max |error|"):
        table.add_column(col, justify="left" if col == "rows" else "right")
    labels = {"calibration": "calibration (fitted on)", "held_out": "held out (check + system rows)"}
    for key, label in labels.items():
        s = doc["summary"][key]
        table.add_row(label, str(s["rows"]), _pct_abs(s["median_abs_error"]), _pct_abs(s["max_abs_error"]))
    return table


def _pct_abs(frac: float | None) -> str:
    return _NONE if frac is None else f"{frac:.1%}"


def validate_tables(doc: dict[str, Any]) -> list[Table | Text]:
    """Rich output of ``planner validate``: every row, the two medians, the rows outside their gate."""
    failing = doc["failing"]
    verdict = (f"validate: {len(failing)} row(s) outside their tolerance: {', '.join(failing)}" if failing
               else "validate: ok, every gated row within its tolerance")
    return [validate_rows_table(doc), validate_summary_table(doc), Text(verdict)]
