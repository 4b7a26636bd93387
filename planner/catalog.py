"""Where shipped data lives, and name-or-path resolution for profiles and models.

An installed wheel carries the data under ``planner/_data``; a source checkout (editable
install) reads the repository's ``hardware_profiles/`` and ``models/`` directly.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from planner.errors import UnknownNameError
from planner.inputs.files import MAX_NAME_CHARS
from planner.inputs.hardware import HardwareSpec, load_hardware
from planner.inputs.model import ModelSpec, load_model

_PACKAGE_DIR = Path(__file__).resolve().parent


DATA_DIR_ENV = "PLANNER_DATA_DIR"
# Longest name or path accepted on the command line (Linux PATH_MAX).
MAX_PATH_CHARS = 4096


def data_dir(kind: str) -> Path:
    """Directory of data files of ``kind`` ('hardware_profiles', 'models', 'measurements', ...).

    ``$PLANNER_DATA_DIR/<kind>`` when that variable is set (a CI job checking edited copies of
    the data), else the shipped files.
    """
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override) / kind
    packaged = _PACKAGE_DIR / "_data" / kind
    if packaged.is_dir():
        return packaged
    return _PACKAGE_DIR.parent / kind


def shipped_names(kind: str) -> list[str]:
    """Names (file stems) of the shipped TOML files of ``kind``, sorted."""
    folder = data_dir(kind)
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; a path the OS refuses (too long, bad bytes) does not."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def resolve(kind: str, name_or_path: str) -> Path:
    """A shipped name (``h800``) or a path to a TOML file -> the file's path.

    Anything ending in ``.toml``, containing ``/`` or naming an existing file is a path (read by
    :func:`planner.inputs.files.read_capped`); anything else must be a shipped name.
    """
    label = "hardware profile" if kind == "hardware_profiles" else "model"
    if len(name_or_path) > MAX_PATH_CHARS:
        raise UnknownNameError(f"{label} name or path of {len(name_or_path)} characters (more than {MAX_PATH_CHARS})",
                               fix="give a shipped name or a shorter path")
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path or _exists(candidate):
        return candidate
    path = data_dir(kind) / f"{name_or_path}.toml"
    if len(name_or_path) <= MAX_NAME_CHARS and _exists(path):
        return path
    known = ", ".join(shipped_names(kind)) or "(none shipped)"
    shown = name_or_path if len(name_or_path) <= 60 else f"{name_or_path[:40]}... ({len(name_or_path)} characters)"
    raise UnknownNameError(f"unknown {label} '{shown}'",
                           fix=f"use one of: {known}, or give a path to a .toml file")


@lru_cache(maxsize=64)
def _hardware_cached(path: str, mtime_ns: int) -> HardwareSpec:
    return load_hardware(Path(path))


@lru_cache(maxsize=64)
def _model_cached(path: str, mtime_ns: int) -> ModelSpec:
    return load_model(Path(path))


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def hardware(name_or_path: str) -> HardwareSpec:
    """Load a hardware profile by shipped name or path."""
    path = resolve("hardware_profiles", name_or_path)
    return _hardware_cached(str(path), _mtime(path))


def model(name_or_path: str) -> ModelSpec:
    """Load a model card by shipped name or path."""
    path = resolve("models", name_or_path)
    return _model_cached(str(path), _mtime(path))
