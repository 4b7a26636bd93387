"""Smoke tests of the real entry point: ``python -m planner`` in a fresh interpreter.

Everything else runs the CLI in-process (``run_planner``).  These few check what only a process
can: the ``__main__`` module, the exit status the shell sees, that nothing but the one error line
reaches stderr, and that the JSON does not depend on this process's state or hash seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from planner.errors import EXIT_INFEASIBLE

ROOT = Path(__file__).resolve().parents[2]
SMALL_PLAN = ("plan", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--weights-dtype", "fp8",
              "--activations-dtype", "fp8")

pytestmark = pytest.mark.subprocess


def _python_m_planner(*args: str, hash_seed: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m planner ARGS`` from the repository root (wide, colourless output)."""
    env = {k: v for k, v in os.environ.items() if k != "PLANNER_DATA_DIR"} | {"COLUMNS": "200", "NO_COLOR": "1"}
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = hash_seed
    return subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300, check=False)


def test_help_exits_0_and_lists_the_commands() -> None:
    proc = _python_m_planner("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    for command in ("plan", "evaluate", "check", "validate", "schema", "profiles", "models"):
        assert command in proc.stdout, command


def test_impossible_slo_exits_3_with_nothing_but_one_line_on_stderr() -> None:
    proc = _python_m_planner(*SMALL_PLAN, "--dies", "8", "--tpot-s", "0.001")
    assert proc.returncode == EXIT_INFEASIBLE == 3, proc.stderr
    assert "nearest misses" in proc.stdout
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("planner: error: "), proc.stderr


def test_plan_json_is_the_same_in_a_fresh_process_with_another_hash_seed(small_plan, small_plan_args) -> None:
    """Set and dict order, caches, or anything else this process holds must not reach the JSON.

    ``here`` is the in-process run of tests/conftest.py's SMALL_PLAN_JSON (the session fixture)."""
    here = small_plan
    assert here.returncode == 0, here.stderr
    seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    fresh = _python_m_planner(*small_plan_args, hash_seed=seed)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout == here.stdout
