"""A small deterministic TOML writer for the planner's own files (cards, layouts).

Strings, ints, floats, bools, lists of scalars and nested tables; key order as given.
``tomllib`` reads the text back to an equal dict.  (No dependency: the structures are simple.)
"""

from __future__ import annotations

import re
from typing import Any

_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t"}
_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


def _toml_string(text: str) -> str:
    """A TOML basic string: escapes backslash, quote and every control character."""
    def esc(ch: str) -> str:
        if ch in _TOML_ESCAPES:
            return _TOML_ESCAPES[ch]
        return f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch
    return '"' + "".join(esc(ch) for ch in text) + '"'


def _toml_value(value: Any) -> str:
    """A scalar or a list of scalars as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest round-tripping form; inf/nan are valid TOML too
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"card_toml cannot write {type(value).__name__} values")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY_RE.match(key) else _toml_string(key)


def _toml_table(table: dict[str, Any], prefix: str) -> list[str]:
    """Lines of one table: its scalars first, then its sub-tables (recursively)."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()
             if not isinstance(v, dict)]
    for key, sub in table.items():
        if isinstance(sub, dict):
            header = f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key)
            lines += ["", f"[{header}]", *_toml_table(sub, header)]
    return lines


def toml_text(data: dict[str, Any]) -> str:
    """TOML text of a nested dict."""
    return "\n".join(_toml_table(data, "")) + "\n"
