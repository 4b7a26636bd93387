"""SI constants, the dtype enum, and the formatters used only at the edges (CLI, tables)."""

from __future__ import annotations

from enum import StrEnum

KILO = 1e3
MEGA = 1e6
GIGA = 1e9
TERA = 1e12
PETA = 1e15
MILLI = 1e-3
MICRO = 1e-6


class Dtype(StrEnum):
    """Numeric formats for weights, activations and KV cache."""

    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"
    FP4 = "fp4"

    @property
    def bytes_per_element(self) -> float:
        """Storage bytes per element (fp4 packs two elements per byte: 0.5)."""
        return _BYTES_PER_ELEMENT[self]


_BYTES_PER_ELEMENT = {
    Dtype.BF16: 2.0,
    Dtype.FP16: 2.0,
    Dtype.FP8: 1.0,
    Dtype.INT8: 1.0,
    Dtype.FP4: 0.5,
}


def fmt_seconds(value_s: float) -> str:
    """Human-readable duration (us / ms / s)."""
    if value_s != value_s or abs(value_s) == float("inf"):
        return "inf"
    if abs(value_s) >= 1e4:
        return f"{value_s:.3g} s"  # a pathological input (see the plausible ranges): keep it short
    if abs(value_s) < 1e-3:
        return f"{value_s / MICRO:.1f} us"
    if abs(value_s) < 1.0:
        return f"{value_s / MILLI:.2f} ms"
    return f"{value_s:.3f} s"


def fmt_bytes(value_bytes: float) -> str:
    """Human-readable decimal bytes (GB = 1e9)."""
    for unit, scale in (("TB", TERA), ("GB", GIGA), ("MB", MEGA), ("KB", KILO)):
        if abs(value_bytes) >= scale:
            return f"{value_bytes / scale:.2f} {unit}"
    return f"{value_bytes:.0f} B"


def fmt_rate(value_per_s: float, unit: str = "") -> str:
    """Human-readable rate with a k/M/G prefix."""
    for prefix, scale in (("T", TERA), ("G", GIGA), ("M", MEGA), ("k", KILO)):
        if abs(value_per_s) >= scale:
            return f"{value_per_s / scale:.2f} {prefix}{unit}/s"
    return f"{value_per_s:.2f} {unit}/s"


def fmt_count(value: float) -> str:
    """Large counts as 671.0B / 1.03T."""
    for prefix, scale in (("T", TERA), ("B", GIGA), ("M", MEGA), ("k", KILO)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{prefix}"
    return f"{value:.0f}"
