"""Tables and JSON for hardware profiles and model cards."""


from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from planner.inputs.hardware import HardwareSpec
from planner.inputs.model import ModelSpec, params_report
from planner.report.base import _NONE, _cell, _file_tables
from planner.units import GIGA, TERA, fmt_count

# --------------------------------------------------------------------------- profiles


def profiles_table(specs: Sequence[HardwareSpec]) -> Table:
    """One row per hardware profile: the headline per-die numbers (units in the headers)."""
    table = Table(title="Hardware profiles (per die unless stated)", title_justify="left")
    for column in ("name", "chip", "dies", "dies/chip", "dtypes", "bf16 TFLOP/s", "HBM GB",
                   "HBM TB/s", "fabrics (dies)"):
        table.add_column(column, overflow="fold")
    for spec in specs:
        bf16 = spec.peaks.bf16_flops_per_s
        table.add_row(*map(_cell, (
            spec.name, spec.chip, spec.num_dies, spec.dies_per_chip,
            " ".join(d.value for d in spec.supported_dtypes),
            f"{bf16 / TERA:.1f}" if bf16 else _NONE, f"{spec.hbm_bytes / GIGA:.0f}",
            f"{spec.hbm_bandwidth_bytes_per_s / TERA:.2f}",
            ", ".join(f"{fab.name} {fab.dies}" for fab in spec.fabrics))))
    return table


def profile_tables(spec: HardwareSpec) -> list[Table]:
    """All fields of one profile in human units, then the source of each section."""
    dumped = spec.document()
    return _file_tables(f"Hardware profile {spec.name} ({spec.path.name}); per die",
                        dumped, "profile")


def profile_json(spec: HardwareSpec) -> dict[str, Any]:
    """The validated profile plus derived values, for ``--json``."""
    return {
        "kind": "hardware_profile",
        "file_name": spec.path.name,
        "file": spec.document(),
        "derived": {
            "supported_dtypes": [d.value for d in spec.supported_dtypes],
            "num_chips": spec.num_chips,
        },
    }


# --------------------------------------------------------------------------- models


def _experts_text(spec: ModelSpec) -> str:
    ffn = spec.ffn
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
        a, counts = spec.attention, spec.param_counts()
        table.add_row(*map(_cell, (
            spec.name, spec.display_name, spec.num_layers, spec.hidden,
            f"{a.kind} {a.num_heads}/{a.num_kv_heads}",
            _experts_text(spec), fmt_count(counts.total), fmt_count(counts.active),
            spec.native_dtype)))
    return table


def model_tables(spec: ModelSpec) -> list[Table]:
    """All fields of one model card, the sources, and derived vs reported parameters."""
    dumped = spec.document()
    tables = _file_tables(f"Model card {spec.name} ({spec.path.name})", dumped, "model")
    return [*tables, params_table(spec)]


def _params_derived(spec: ModelSpec) -> dict[str, Any]:
    return params_report(spec)


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
        "file": spec.document(),
        "derived": _params_derived(spec),
    }
