"""Helpers for the ops tests: run ``python -m planner`` on a copy of the shipped data.

``PLANNER_DATA_DIR`` points the planner at a copy of ``hardware_profiles/``, ``models/`` and
``measurements/`` in ``tmp_path``; tests edit the copy, never the repository's files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA_KINDS = ("hardware_profiles", "models", "measurements")


@dataclass(frozen=True)
class Run:
    """Outcome of one CLI invocation."""

    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    def stderr_line(self) -> str:
        """The one stderr line of an expected failure (asserts there is exactly one)."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {self.stderr!r}"
        return lines[0]


def planner(*args: str, data: Path | None = None, cwd: Path = ROOT) -> Run:
    """``python -m planner ARGS`` (wide, colourless output), on the data copy ``data`` if given."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("PLANNER_DATA_DIR", None)
    if data is not None:
        env["PLANNER_DATA_DIR"] = str(data)
    proc = subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300, check=False)
    return Run(proc.returncode, proc.stdout, proc.stderr)


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
def run_planner() -> Callable[..., Run]:
    """:func:`planner`: ``run_planner(*args, data=None)``."""
    return planner


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
def validate_run() -> Run:
    """``planner validate --json -`` on the shipped data (shared by the validate and schema tests)."""
    return planner("validate", "--json", "-")
