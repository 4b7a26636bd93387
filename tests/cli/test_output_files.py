"""No user file is replaced without --force (planner/outputs.py), on every command that writes one.

Refusals come before the work: the ``no_work`` fixture makes every expensive entry point (the
search, evaluate, validate, check, the HF import, the catalog) raise, so a refusal that came
late would fail the test with that error, and each refusal test costs milliseconds.  The
library tests cover what the command line cannot reach: a file that appears between the check
and the write, links, devices, a target named twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from planner import outputs
from planner.errors import EXIT_BAD_INPUT, EXIT_OK, PlannerError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "llama-3.1-70b-h100-collocated.toml")
HF_CONFIG = str(ROOT / "tests" / "data" / "hf_configs" / "Qwen3-30B-A3B.json")
SMALL_PLAN = ("plan", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--dies", "8", "--weights-dtype", "fp8",
              "--activations-dtype", "fp8", "--input-tokens", "2048", "--output-tokens", "256", "--top", "3",
              "--samples", "0")
MINE = b"# my file, not the planner's\n"

# Every option of every command that writes a file: (id, arguments before the option, option, file name).
WRITERS = [
    ("profiles-show", ("profiles", "show", "h100"), "--json", "out.json"),
    ("models-show", ("models", "show", "deepseek-v3"), "--json", "out.json"),
    ("models-import", ("models", "import", HF_CONFIG), "--output", "card.toml"),
    ("plan-json", SMALL_PLAN, "--json", "out.json"),
    ("plan-plot", SMALL_PLAN, "--plot", "front.png"),
    ("evaluate-json", ("evaluate", EXAMPLE), "--json", "out.json"),
    ("evaluate-plot", ("evaluate", EXAMPLE), "--plot", "breakdown.png"),
    ("evaluate-plot-load", ("evaluate", EXAMPLE), "--plot-load", "load.svg"),
    ("sensitivity-json", ("sensitivity", "--layout", EXAMPLE), "--json", "out.json"),
    ("sensitivity-plot", ("sensitivity", "--layout", EXAMPLE), "--plot", "tornado.png"),
    ("check-json", ("check", "baseline.json"), "--json", "out.json"),
    ("validate-json", ("validate",), "--json", "out.json"),
]


class WorkStartedError(AssertionError):
    """Raised by an expensive entry point the ``no_work`` fixture replaced."""


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every expensive entry point raises :class:`WorkStartedError` (the CLI imports them at call time)."""
    from planner import catalog, evaluate
    from planner.inputs import hf_import
    from planner.ops import check, validation
    from planner.search import plan

    def started(*_args: Any, **_kwargs: Any) -> None:
        raise WorkStartedError("the command started its work before refusing the output file")

    for module, name in ((plan, "plan"), (evaluate, "evaluate"), (validation, "validate"), (check, "check"),
                         (hf_import, "import_hf_config"), (catalog, "hardware"), (catalog, "model")):
        monkeypatch.setattr(module, name, started)


def _needs_matplotlib(file_name: str) -> None:
    if file_name.endswith((".png", ".svg")):
        pytest.importorskip("matplotlib")  # --plot checks for matplotlib before anything else


# --------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(("args", "option", "file_name"), [w[1:] for w in WRITERS], ids=[w[0] for w in WRITERS])
def test_an_existing_file_is_refused_before_any_work(tmp_path: Path, no_work: None, run_planner, args: tuple[str, ...],
                                                     option: str, file_name: str) -> None:
    _needs_matplotlib(file_name)
    mine = tmp_path / file_name
    mine.write_bytes(MINE)
    run = run_planner(*args, option, str(mine))
    assert run.returncode == EXIT_BAD_INPUT, run.stderr
    line = run.stderr_line()
    assert line == (f"planner: error: {option}: {mine} exists (a file); nothing written; "
                    "fix: pass --force to replace it, or choose another path")
    assert run.stdout == ""
    assert mine.read_bytes() == MINE
    assert sorted(p.name for p in tmp_path.iterdir()) == [file_name], "no temporary file left behind"


def _command(path: tuple[str, ...]) -> Any:
    """The click command of ``planner PATH...`` (``("models", "import")``)."""
    import typer

    from planner import cli

    command = typer.main.get_command(cli.app)
    for name in path:
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", sorted({w[1][:2] if w[1][0] in ("profiles", "models") else w[1][:1]
                                         for w in WRITERS}), ids=" ".join)
def test_every_writing_command_has_force(path: tuple[str, ...]) -> None:
    force = [p for p in _command(path).params if "--force" in p.opts]
    assert len(force) == 1, f"planner {' '.join(path)} writes files but has no --force"
    options = {w[2] for w in WRITERS if w[1][:len(path)] == path}
    assert all(option in force[0].help for option in options), f"--force help names {sorted(options)}"
    assert "without it an existing file is an error" in force[0].help


def test_one_taken_target_writes_none(tmp_path: Path, no_work: None, run_planner) -> None:
    """``--json a --plot b --plot-load c`` with only c there: neither a nor b is created."""
    pytest.importorskip("matplotlib")
    taken = tmp_path / "c.svg"
    taken.write_bytes(MINE)
    run = run_planner("evaluate", EXAMPLE, "--json", str(tmp_path / "a.json"), "--plot", str(tmp_path / "b.png"),
                      "--plot-load", str(taken))
    assert run.returncode == EXIT_BAD_INPUT, run.stderr
    assert "--plot-load: " in run.stderr_line() and "c.svg exists" in run.stderr_line()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.svg"]
    assert taken.read_bytes() == MINE


def test_a_taken_json_keeps_write_layouts_from_creating_its_folder(tmp_path: Path, no_work: None,
                                                                   run_planner) -> None:
    (tmp_path / "plan.json").write_bytes(MINE)
    run = run_planner(*SMALL_PLAN, "--json", str(tmp_path / "plan.json"), "--write-layouts", str(tmp_path / "lay"))
    assert run.returncode == EXIT_BAD_INPUT, run.stderr
    assert not (tmp_path / "lay").exists()


def test_write_layouts_into_a_file_is_refused_before_the_search(tmp_path: Path, no_work: None,
                                                                run_planner) -> None:
    (tmp_path / "lay").write_bytes(MINE)
    run = run_planner(*SMALL_PLAN, "--write-layouts", str(tmp_path / "lay"))
    assert run.returncode == EXIT_BAD_INPUT, run.stderr
    assert run.stderr_line().startswith(f"planner: error: --write-layouts: {tmp_path / 'lay'} exists and is not a dir")
    assert (tmp_path / "lay").read_bytes() == MINE


@pytest.mark.parametrize("args", [("profiles", "show", "h100", "--json"), ("models", "show", "deepseek-v3", "--json"),
                                  ("models", "import", HF_CONFIG, "--output")], ids=["profiles", "models", "import"])
def test_dash_is_stdout_and_never_refused(tmp_path: Path, run_planner, args: tuple[str, ...]) -> None:
    """Even with a file named ``-`` in the working directory: that file is neither refused nor written."""
    (tmp_path / "-").write_bytes(MINE)
    run = run_planner(*args, "-", cwd=tmp_path)
    assert run.returncode == EXIT_OK, run.stderr
    assert run.stdout.strip(), "the output went to stdout"
    assert (tmp_path / "-").read_bytes() == MINE


def test_force_replaces_a_show_json_with_the_stdout_bytes(tmp_path: Path, run_planner) -> None:
    target = tmp_path / "h100.json"
    target.write_bytes(MINE)
    run = run_planner("profiles", "show", "h100", "--json", str(target), "--force")
    assert run.returncode == EXIT_OK, run.stderr
    assert target.read_text(encoding="utf-8") == run_planner("profiles", "show", "h100", "--json", "-").stdout


def test_force_replaces_an_imported_card(tmp_path: Path, run_planner) -> None:
    target = tmp_path / "card.toml"
    target.write_bytes(MINE)
    run = run_planner("models", "import", HF_CONFIG, "--output", str(target), "--force")
    assert run.returncode == EXIT_OK, run.stderr
    assert target.read_text(encoding="utf-8") == run_planner("models", "import", HF_CONFIG).stdout


@pytest.mark.parametrize("args", [SMALL_PLAN, ("evaluate", EXAMPLE, "--samples", "0"),
                                  ("sensitivity", "--layout", EXAMPLE)], ids=["plan", "evaluate", "sensitivity"])
def test_force_replaces_the_json_of_a_priced_command(tmp_path: Path, run_planner, args: tuple[str, ...]) -> None:
    target = tmp_path / "out.json"
    target.write_bytes(MINE)
    run = run_planner(*args, "--json", str(target), "--force")
    assert run.returncode == EXIT_OK, run.stderr
    assert json.loads(target.read_text(encoding="utf-8"))["schema_version"] >= 1
    assert run.stdout.strip(), "the tables are still printed"


# --------------------------------------------------------------------------- the library


def _out(path: Path, data: bytes = b"new\n", option: str = "--json") -> outputs.Output:
    return outputs.Output(option=option, path=path, data=data)


def test_write_all_writes_none_when_one_is_taken(tmp_path: Path) -> None:
    (tmp_path / "b").write_bytes(MINE)
    with pytest.raises(PlannerError, match="b exists"):
        outputs.write_all([_out(tmp_path / "a"), _out(tmp_path / "b", option="--plot")], force=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    outputs.write_all([_out(tmp_path / "a"), _out(tmp_path / "b")], force=True)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == b"new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"], "no temporary file left behind"


def test_a_file_that_appears_after_the_check_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race: the check passed, then someone wrote the file; the write (O_EXCL) refuses, keeping it."""
    target = tmp_path / "plan.json"
    target.write_bytes(MINE)
    monkeypatch.setattr(outputs, "_refuse_taken", lambda *_a, **_k: None)  # as if the check ran before it appeared
    with pytest.raises(PlannerError, match="appeared while the planner ran"):
        outputs.write_all([_out(target)], force=False)
    assert target.read_bytes() == MINE


def test_force_replaces_a_link_never_its_target(tmp_path: Path) -> None:
    precious, link = tmp_path / "precious", tmp_path / "out.json"
    precious.write_bytes(MINE)
    link.symlink_to(precious)
    with pytest.raises(PlannerError, match=r"exists \(a link\)"):
        outputs.write_all([_out(link)], force=False)
    outputs.write_all([_out(link)], force=True)
    assert not link.is_symlink() and link.read_bytes() == b"new\n"
    assert precious.read_bytes() == MINE


def test_a_device_is_written_into_not_refused() -> None:
    outputs.claim([("--json", Path(os.devnull))], force=False)
    outputs.write_all([_out(Path(os.devnull))], force=False)
    outputs.write_all([_out(Path(os.devnull))], force=True)
    assert Path(os.devnull).is_char_device(), "still the device, not a file renamed over it"


def test_a_target_named_twice_or_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlannerError, match="also the target of --plot"):
        outputs.claim([("--plot", tmp_path / "x.png"), ("--plot-load", tmp_path / "." / "x.png")], force=True)
    with pytest.raises(PlannerError, match="is a directory"):
        outputs.claim([("--json", tmp_path)], force=True)


def test_a_missing_folder_is_refused_early_and_created_at_the_write(tmp_path: Path) -> None:
    """``--json no/such/dir/x.json`` is refused by the early check; ``--write-layouts DIR`` creates DIR."""
    target = tmp_path / "new" / "x.json"
    with pytest.raises(PlannerError, match="does not exist"):
        outputs.claim([("--json", target)], force=False)
    outputs.write_all([_out(target)], force=False)
    assert target.read_bytes() == b"new\n"


def test_check_never_writes_its_report_over_the_baseline(tmp_path, run_planner):
    """Even with --force: the baseline is the command's input, and the report is another document."""
    base = tmp_path / "base.json"
    base.write_text('{"not": "read"}', encoding="utf-8")
    run = run_planner("check", str(base), "--json", str(base), "--force")
    assert run.returncode == 2
    assert run.stderr.count("planner: error:") == 1 and "is the baseline being checked" in run.stderr
    assert base.read_text(encoding="utf-8") == '{"not": "read"}'
