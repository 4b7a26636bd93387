"""Helpers for the ops tests: run the CLI (in-process, ``run_planner``) on a copy of the shipped data.

``run_planner(*args, data=path)`` sets ``PLANNER_DATA_DIR`` to a copy of ``hardware_profiles/``,
``models/`` and ``measurements/`` in ``tmp_path``; tests edit the copy, never the repository's files.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA_KINDS = ("hardware_profiles", "models", "measurements")


def copy_data(dest: Path) -> Path:
    """Copy the shipped data files to ``dest`` (a directory for ``PLANNER_DATA_DIR``)."""
    for kind in DATA_KINDS:
        shutil.copytree(ROOT / kind, dest / kind)
    return dest


def scale_hbm_bandwidth(data: Path, profile: str, factor: float) -> None:
    """Multiply ``memory.hbm_bandwidth_bytes_per_s`` of a copied profile by ``factor`` in place."""
    path = data / "hardware_profiles" / f"{profile}.toml"
    text = path.read_text(encoding="utf-8")
    value = tomllib.loads(text)["memory"]["hbm_bandwidth_bytes_per_s"]
    new, count = re.subn(r"(?m)^hbm_bandwidth_bytes_per_s = \S+", f"hbm_bandwidth_bytes_per_s = {value * factor!r}",
                         text)
    assert count == 1, path
    path.write_text(new, encoding="utf-8")
    assert tomllib.loads(new)["memory"]["hbm_bandwidth_bytes_per_s"] == pytest.approx(value * factor)


@pytest.fixture(scope="session")
def copy_shipped_data() -> Callable[[Path], Path]:
    """:func:`copy_data`: ``copy_shipped_data(dest) -> dest``."""
    return copy_data


@pytest.fixture(scope="session")
def scale_hbm() -> Callable[[Path, str, float], None]:
    """:func:`scale_hbm_bandwidth`: ``scale_hbm(data, profile, factor)``."""
    return scale_hbm_bandwidth


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A fresh copy of the shipped data for one test."""
    return copy_data(tmp_path / "data")


@pytest.fixture(scope="session")
def validate_run(run_planner) -> Any:
    """``planner validate --json -`` on the shipped data (shared by the validate and schema tests)."""
    return run_planner("validate", "--json", "-")
