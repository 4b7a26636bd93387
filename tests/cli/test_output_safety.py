"""Nothing of the user's lost, answers readable (issue 12): --write-layouts never overwrites or
writes through a link without --force; the plan reads at 80 columns and states its precision and
assumed defaults; a closed pipe exits quietly; Ctrl-C prints one line and exits 130."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from planner.errors import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_OK

ROOT = Path(__file__).resolve().parents[2]
SMALL = ("plan", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--dies", "8", "--weights-dtype", "fp8",
         "--activations-dtype", "fp8", "--input-tokens", "2048", "--output-tokens", "256", "--top", "3",
         "--samples", "0")


# --------------------------------------------------------------------------- --write-layouts


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_layouts_keeps_an_existing_file(tmp_path, run_planner):
    folder = tmp_path / "layouts"
    folder.mkdir()
    mine = folder / "rank01-pd.toml"
    mine.write_text("# my notes\n")
    run = run_planner(*SMALL, "--modes", "pd", "--write-layouts", str(folder))
    assert run.returncode == EXIT_BAD_INPUT, run.stderr
    assert "rank01-pd.toml" in run.stderr_line() and "--force" in run.stderr_line()
    assert mine.read_text() == "# my notes\n"
    assert _names(folder) == ["rank01-pd.toml"], "nothing is written when any file exists"


def test_write_layouts_never_writes_through_a_link(tmp_path, run_planner):
    folder, precious = tmp_path / "layouts", tmp_path / "precious.toml"
    folder.mkdir()
    precious.write_text("keep me\n")
    (folder / "rank01-pd.toml").symlink_to(precious)
    (folder / "rank02-pd.toml").symlink_to(tmp_path / "dangling.toml")
    run = run_planner(*SMALL, "--modes", "pd", "--write-layouts", str(folder))
    assert run.returncode == EXIT_BAD_INPUT, run.stderr
    assert precious.read_text() == "keep me\n"
    assert not (tmp_path / "dangling.toml").exists()
    forced = run_planner(*SMALL, "--modes", "pd", "--write-layouts", str(folder), "--force")
    assert forced.returncode == EXIT_OK, forced.stderr
    assert precious.read_text() == "keep me\n", "--force replaces the link, never its target"
    assert not (folder / "rank01-pd.toml").is_symlink()
    assert 'mode = "pd"' in (folder / "rank01-pd.toml").read_text()


@pytest.fixture(scope="module")
def written(tmp_path_factory, run_planner):
    """(``plan SMALL --write-layouts DIR --json -``, DIR): one search for the two tests that read its JSON."""
    folder = tmp_path_factory.mktemp("written") / "out"
    return run_planner(*SMALL, "--write-layouts", str(folder), "--json", "-"), folder


def test_write_layouts_names_files_by_rank(written):
    run, folder = written
    assert run.returncode == EXIT_OK, run.stderr
    ranks = [(e["rank"], e["mode"]) for e in run.json()["layouts"]]
    assert _names(folder) == [f"rank{r:02d}-{m}.toml" for r, m in ranks]


# --------------------------------------------------------------------------- readable output


@pytest.fixture
def columns_80(run_planner, monkeypatch):
    monkeypatch.setitem(run_planner.__globals__["CLI_ENV"], "COLUMNS", "80")


def test_the_plan_reads_at_80_columns(columns_80, run_planner):
    run = run_planner(*SMALL)
    assert run.returncode == EXIT_OK, run.stderr
    lines = run.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert "…" not in run.stdout, "nothing is cut off"
    text = " ".join(" ".join(line.split()) for line in lines)
    assert "| D " in text, "the layout summaries are shown whole"
    assert "binding: " in text, "the binding constraint is shown"


def test_the_header_states_precision_and_assumed_defaults(run_planner):
    run = run_planner("plan", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--dies", "8", "--top", "1",
                      "--weights-dtype", "fp8")
    assert run.returncode == EXIT_OK, run.stderr
    head = " ".join(run.stdout.split("┏", 1)[0].split())
    assert "weights fp8" in head and "activations int8" in head and "KV cache bf16" in head
    assert "assumed" in head and "activations" in head.split("assumed", 1)[1]
    assert "no MTP" in head


# --------------------------------------------------------------------------- signals and pipes


def test_ctrl_c_prints_one_line_and_exits_130(run_planner, monkeypatch):
    from planner import catalog

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(catalog, "shipped_names", interrupted)
    run = run_planner("profiles", "list")
    assert run.returncode == EXIT_INTERRUPTED
    assert run.stderr_line() == "planner: interrupted"


@pytest.mark.subprocess
def test_a_closed_pipe_exits_quietly():
    """``planner models list | head -0``: the reader is gone before the first write."""
    proc = subprocess.Popen([sys.executable, "-m", "planner", "models", "list"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_BROKEN_PIPE, err.decode()
    assert err == b"", "quietly: no traceback, no message"


def test_check_says_when_the_replan_has_no_top_layout(tmp_path, run_planner, written):
    import json

    base, _ = written  # the plan's JSON (--write-layouts writes files beside it, not into it)
    assert base.returncode == EXIT_OK, base.stderr
    doc = json.loads(base.stdout)
    doc["scenario"]["slo"]["tpot_s"] = 0.0002  # nothing meets it today
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(doc))
    run = run_planner("check", str(path))
    assert run.returncode == 1, run.stderr
    assert "top layout: none now" in run.stdout
    assert "top layout: same" not in run.stdout


def test_check_refuses_a_special_file(run_planner):
    run = run_planner("check", "/dev/zero")
    assert run.returncode == EXIT_BAD_INPUT
    assert "not a regular file" in run.stderr_line()


def test_a_card_given_by_absolute_path_is_not_written_as_one(tmp_path, run_planner):
    import json
    import os

    card = tmp_path / "my-card.toml"
    card.write_text((ROOT / "models" / "qwen3-30b-a3b.toml").read_text())
    args = [a if a != "qwen3-30b-a3b" else str(card) for a in SMALL]
    run = run_planner(*args, "--json", "-")
    assert run.returncode == EXIT_OK, run.stderr
    doc = json.loads(run.stdout)
    assert doc["scenario"]["model"] == os.path.relpath(card, ROOT)

    def strings(value):
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []

    assert not [s for s in strings(doc) if s.startswith("/")], "no absolute path anywhere in the JSON"
