"""Rendering basics: console, data-file field tables (human units live in planner/report/)."""


from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from planner.units import fmt_bytes, fmt_count, fmt_rate, fmt_seconds

_META = ("source", "kind", "calibrated_from")
_NONE = "-"


# --------------------------------------------------------------------------- output


def console() -> Console:
    """Console for stdout; 150 columns when not a terminal (logs, pipes) unless COLUMNS is set."""
    out = Console(highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(highlight=False, width=150)
    return out


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
