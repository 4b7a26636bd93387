"""Helpers for CLI tests: run ``python -m planner`` in a subprocess, or ``main()`` in-process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from planner import cli


@dataclass(frozen=True)
class Run:
    """Outcome of one CLI invocation."""

    returncode: int
    stdout: str
    stderr: str

    def stderr_line(self) -> str:
        """The one stderr line of an expected failure (asserts there is exactly one)."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {self.stderr!r}"
        assert lines[0].strip(), "stderr line is empty"
        return lines[0]


def run_subprocess(*args: str) -> Run:
    """``python -m planner ARGS`` in a fresh interpreter (wide, colourless output)."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def run_cli() -> Callable[..., Run]:
    """Run the CLI in a subprocess."""
    return run_subprocess


@pytest.fixture
def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
             ) -> Callable[..., Run]:
    """Run ``planner.cli.main()`` in-process (so tests can monkeypatch the library)."""

    def run(*args: str) -> Run:
        monkeypatch.setattr(sys, "argv", ["planner", *args])
        monkeypatch.setenv("COLUMNS", "200")
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        out = capsys.readouterr()
        code = exit_info.value.code
        return Run(code if isinstance(code, int) else 1, out.out, out.err)

    return run
