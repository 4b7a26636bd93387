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
from planner.units import fmt_bytes

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


def test_a_budget_too_small_for_the_weights_says_so_with_the_sizes(run_planner) -> None:
    """Nothing fits memory, so there is no near miss to show: the one line says what does not fit.

    DeepSeek-V3 (its model card): 671.03 B main-model parameters and an MTP module of 11.61 B, at one
    byte each (int8, the default) 682.6 GB; the embedding and the head (0.93 B each) are bf16, a
    second byte each: +1.9 GB, 684.5 GB in all (the HF page's 685 B counts the MTP module's shared
    parts again).  8 H100 hold 8 x their usable bytes."""
    from planner import catalog
    from planner.cost.memory import usable_bytes

    run = run_planner("plan", "--model", "deepseek-v3", "--hardware", "h100", "--dies", "8", "--samples", "0")
    assert run.returncode == EXIT_INFEASIBLE == 3
    assert "nearest misses" not in run.stdout + run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith("planner: error: no layout fits in memory: one copy of deepseek-v3's weights (int8: ")
    weights_gb = float(line.split("(int8: ")[1].split(" GB")[0])
    assert abs(weights_gb / 684.5 - 1) < 0.005
    per_die = usable_bytes(catalog.hardware("h100"))
    assert f"against 8 h100 dies of {fmt_bytes(per_die)} usable ({fmt_bytes(8 * per_die)})" in line
    assert "fix: add dies" in line


def test_weights_that_fit_the_budget_but_no_searched_layout_say_why(run_planner) -> None:
    """11 H100 hold one copy of DeepSeek-V3 (11 x usable > 684.5 GB), but an instance's dies split its
    256 experts evenly, so the layouts searched use 8 dies at most (85 GB of weights per die)."""
    from planner import catalog
    from planner.cost.memory import usable_bytes

    run = run_planner("plan", "--model", "deepseek-v3", "--hardware", "h100", "--dies", "11", "--pods", "2",
                      "--samples", "0")
    assert run.returncode == EXIT_INFEASIBLE == 3
    (line,) = run.stderr.splitlines()
    have_bytes = 11 * usable_bytes(catalog.hardware("h100"))
    assert have_bytes > 684.5e9
    assert line.startswith("planner: error: no candidate layout fits in memory: one copy of deepseek-v3's weights")
    assert f"({fmt_bytes(have_bytes)}), but the layouts searched hold it on fewer dies" in line


def test_pins_that_leave_nothing_in_memory_name_the_pins(run_planner) -> None:
    """Llama-3.1-405B (410 GB at int8) pinned to TP1 x PP1 on 8 H100: every instance is one die, which cannot
    hold it; the line names the pins held (the budget alone would fit one copy: 8 x usable > 410 GB)."""
    run = run_planner("plan", "--model", "llama-3.1-405b", "--hardware", "h100", "--tp", "1", "--pp", "1",
                      "--samples", "0")
    assert run.returncode == EXIT_INFEASIBLE == 3
    (line,) = run.stderr.splitlines()
    assert line.startswith("planner: error: no layout held to --tp 1 --pp 1 fits in memory: one copy of "
                           "llama-3.1-405b's weights")
    assert "fix: loosen the pins" in line
