"""``--plot`` on ``planner plan`` and ``planner evaluate``, and the terminal Pareto view.

matplotlib is the optional ``plot`` extra: every test that draws asks for the ``mpl`` fixture
(``pytest.importorskip``), so the suite runs without it.  The dev extra installs it, so CI
draws.  The missing-extra tests need no matplotlib: the ``no_matplotlib`` fixture makes it
unimportable for one in-process CLI run.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from planner.errors import EXIT_BAD_INPUT

ROOT = Path(__file__).resolve().parents[2]
SMALL_PLAN = ("plan", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--dies", "16", "--pods", "2",
              "--weights-dtype", "fp8", "--activations-dtype", "fp8")
EXAMPLE = "examples/deepseek-v3-cloudmatrix384-pd.toml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def mpl() -> Any:
    return pytest.importorskip("matplotlib")


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib unimportable until the test ends, as if it were not installed.

    A None entry in ``sys.modules`` blocks ``import matplotlib``; the loaded submodules are
    removed too, so ``from matplotlib.figure import Figure`` cannot bypass the block.
    """
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plots")


@pytest.fixture(scope="module")
def plot_run(run_planner) -> Callable[[str, Path], Any]:
    """``plot_run(command, path)``: one run per (command, output file), shared by this module."""

    @cache
    def run(command: str, path: Path) -> Any:
        args = SMALL_PLAN if command == "plan" else ("evaluate", EXAMPLE)
        return run_planner(*args, "--plot", str(path))

    return run


def _assert_image(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000, f"{path.name} is nearly empty ({len(data)} bytes)"
    if path.suffix == ".png":
        assert data.startswith(PNG_SIGNATURE)
    else:
        assert b"<svg" in data[:1000]
        assert b"<dc:date>" not in data, "SVG carries a date (not reproducible)"


# --------------------------------------------------------------------------- writing images


@pytest.mark.parametrize("suffix", [".png", ".svg"])
@pytest.mark.parametrize("command", ["plan", "evaluate"])
def test_plot_writes_a_non_empty_image(mpl: Any, out_dir: Path, plot_run, command: str, suffix: str) -> None:
    path = out_dir / f"{command}{suffix}"
    proc = plot_run(command, path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"wrote {path}" in proc.stderr
    _assert_image(path)


def test_svg_is_byte_identical_across_runs(mpl: Any, tmp_path: Path) -> None:
    """Fixed size, DPI, hash salt and no date: the same document draws the same bytes."""
    from planner import plots
    from planner.documents.evaluate import evaluate_report
    from planner.evaluate import evaluate
    from planner.inputs.layout import load_layout
    from planner.inputs.scenario import build_scenario

    spec = load_layout(ROOT / EXAMPLE)
    doc = evaluate_report(evaluate(spec, build_scenario(spec.scenario, {}, where="test"), "test"))
    first, second = plots.breakdown_image(doc, tmp_path / "a.svg"), plots.breakdown_image(doc, tmp_path / "b.svg")
    assert first == second
    assert b"<svg" in first[:1000]


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("args", [SMALL_PLAN, ("evaluate", EXAMPLE)], ids=["plan", "evaluate"])
def test_unsupported_suffix_exits_2_with_one_line(tmp_path: Path, run_planner, args: tuple[str, ...]) -> None:
    target = tmp_path / "front.pdf"
    proc = run_planner(*args, "--plot", str(target))
    assert proc.returncode == EXIT_BAD_INPUT
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "--plot" in lines[0] and ".png" in lines[0] and ".svg" in lines[0]
    assert proc.stdout == "", "the check runs before any search or table"
    assert not target.exists()


@pytest.mark.parametrize("args", [SMALL_PLAN, ("evaluate", EXAMPLE)], ids=["plan", "evaluate"])
def test_missing_matplotlib_exits_2_with_install_hint(tmp_path: Path, no_matplotlib: None, run_planner,
                                                      args: tuple[str, ...]) -> None:
    target = tmp_path / "front.png"
    proc = run_planner(*args, "--plot", str(target))
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "superpod-planner[plot]" in lines[0] and "pip install" in lines[0]
    assert not target.exists()


def test_core_runs_without_matplotlib(no_matplotlib: None, run_planner) -> None:
    """No --plot, no matplotlib: evaluate works with the import blocked."""
    proc = run_planner("evaluate", EXAMPLE, "--json", "-")
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- terminal view


def test_plan_output_shows_the_pareto_front(run_planner, plot_run, out_dir: Path) -> None:
    # A drawing run prints the same tables (it adds the image and a stderr line): with matplotlib, the
    # tables of the plan --plot .png run above, one search for both tests; without it, a plain run.
    has_mpl = importlib.util.find_spec("matplotlib") is not None
    proc = plot_run("plan", out_dir / "plan.png") if has_mpl else run_planner(*SMALL_PLAN)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Pareto front ("))
    assert "TPOT" in lines[start + 1] and "out tok/s/die" in lines[start + 1]
    rows = []
    for line in lines[start + 2:]:
        if " ms " not in line:
            break
        rows.append(line.split())
    assert 1 <= len(rows) <= 10, "compact: at most 10 points plus title and header"
    assert all(r[-3] in {"collocated", "pd", "transformerless"} for r in rows)
    assert any(r[-1] == "1" for r in rows), "rank 1 is on the front and shown"
    tpot_ms = [float(r[0]) for r in rows]
    assert tpot_ms == sorted(tpot_ms)


def _front(n: int) -> list[SimpleNamespace]:
    """Stand-ins for plan entries: the view reads ``rank`` and ``tpot_s`` only."""
    return [SimpleNamespace(tpot_s=0.01 + i * 1e-3, output_tokens_per_s_per_die=10.0 * (i + 1), mode="pd",
                            dies=8, rank=n - i) for i in range(n)]


@pytest.mark.parametrize("n", [1, 7, 10, 11, 40])
def test_pareto_view_is_compact_and_keeps_the_ends_and_rank_1(n: int) -> None:
    from planner.report import _pareto_rows

    front = _front(n)
    rows = _pareto_rows(front)
    assert len(rows) == min(n, 10)
    assert rows[0] is front[0] and rows[-1] is front[-1]
    assert any(r.rank == 1 for r in rows)
    assert [r.tpot_s for r in rows] == sorted(r.tpot_s for r in rows)


def test_pareto_view_keeps_an_interior_rank_1() -> None:
    from planner.report import _pareto_rows

    front = _front(40)
    for i, e in enumerate(front):
        e.rank = 1 if i == 17 else i + 2
    rows = _pareto_rows(front)
    assert len(rows) == 10 and front[17] in rows
