"""Fuzz: every shipped data file, mutated one key at a time, gives an answer or one error line.

Each example takes one shipped TOML file (hardware profile, model card, layout example, scenario
example, expert-load parameters) or one of the Hugging Face configs the import is tested on
(the measurement JSON files are read only by ``planner validate``, too slow for a fuzz loop),
changes one value -- a wrong
type (``true``, ``"12"``), a magnitude far out (``1e-300``, ``1e308``, ``inf``, ``nan``, x10^k),
a sign, a deep or empty array, a long string, a whole table -- or deletes a key or adds an unknown
one, writes it back and runs the command that reads that kind of file through
``planner.cli.main()``.  Every outcome must be exit 0, 2 or 3; exits 2 and 3 print exactly one
``planner: error:`` line; nothing may raise (a traceback fails the test) or run long.

The commands are the cheap ones (``evaluate`` of a one-die layout, ``plan`` of a 2-die budget,
``models import``), so 100 examples take ~2-3 s; derandomized, so CI sees the same examples every
run (3,000 random examples were run once while writing it: 0 failures).
"""

from __future__ import annotations

import copy
import json
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

settings.register_profile("fuzz-data-files-ci", derandomize=True, database=None, deadline=None, max_examples=100,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted([*ROOT.glob("hardware_profiles/*.toml"), *ROOT.glob("models/*.toml"),
                *ROOT.glob("examples/*.toml"), *ROOT.glob("examples/scenarios/*.toml"),
                *ROOT.glob("measurements/*.toml"), *ROOT.glob("tests/data/hf_configs/*.json")])
# One die, no parallelism: valid for every shipped model (tp = ep = 1) and cheap to price.
ONE_DIE_LAYOUT = {"mode": "collocated", "decode": {"instances": 1, "dies": 1, "tp": 1, "ep": 1, "batch": 8,
                                                   "micro_batches": 1, "prefill_chunk_tokens": 512}}
BF16 = ("--weights-dtype", "bf16", "--activations-dtype", "bf16", "--kv-dtype", "bf16")
SLOW_S = 5.0  # one example (one CLI run) may take this long; the cheap commands take ~0.05 s once warm

ODD_VALUES: list[Any] = [
    True, False, "12", "", "x" * 300, 0, -1, 1, 10**12, 2**63 - 1, 1e-300, 1e308, -1e308,
    float("inf"), float("nan"), 0.5, [], [-1], [[1024, 0]], [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]], {},
]


def _leaves(data: Any, path: tuple = ()) -> list[tuple]:
    """Paths (keys and list indices) of every value in a parsed TOML document but the root and the
    tables of an array of tables (replacing one of those would not be writable as TOML)."""
    if isinstance(data, dict):
        own = [path] if path and not isinstance(path[-1], int) else []
        return [p for k, v in data.items() for p in _leaves(v, (*path, k))] + own
    if isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        return [p for i, v in enumerate(data) for p in _leaves(v, (*path, i))] + [path]
    return [path]


def _parent(data: Any, path: tuple) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Path, dict[str, Any], str]:
    """(shipped file, its content with one change, a description of the change)."""
    path = draw(st.sampled_from(FILES))
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    leaf = draw(st.sampled_from(_leaves(data)))
    parent, key = _parent(data, leaf), leaf[-1]
    old = parent[key]
    how = draw(st.sampled_from(["odd", "scale", "delete", "unknown"] if not isinstance(parent, list) else ["odd"]))
    if how == "scale" and isinstance(old, int | float) and not isinstance(old, bool):
        factor = 10.0 ** draw(st.integers(-15, 15))
        new = int(old * factor) if isinstance(old, int) and factor >= 1 else old * factor
    elif how == "delete":
        del parent[key]
        return path, data, f"{leaf}: deleted"
    elif how == "unknown" and isinstance(parent, dict):
        parent[f"{key}_typo"] = old
        return path, data, f"{leaf}: unknown key added"
    else:
        new = copy.deepcopy(draw(st.sampled_from(ODD_VALUES)))
    parent[key] = new
    return path, data, f"{leaf}: {old!r} -> {new!r}"[:200]


def _data_dir(folder: Path, mutated_path: Path) -> Path:
    """A $PLANNER_DATA_DIR with the shipped files but the mutated one (measurements read from there)."""
    data = folder / "data"
    for kind in ("hardware_profiles", "models", "measurements"):
        (data / kind).mkdir(parents=True)
        for shipped in (ROOT / kind).iterdir():
            (data / kind / shipped.name).symlink_to(shipped)
    (data / "measurements" / mutated_path.name).unlink()
    (data / "measurements" / mutated_path.name).symlink_to(mutated_path)
    return data


def _command(original: Path, mutated_path: Path, layout: Path) -> list[str]:
    """The cheap command that reads a file of this kind."""
    kind = original.parent.name
    if kind == "measurements":  # read from the data directory (see _data_dir)
        return ["evaluate", str(layout), "--model", "qwen3-30b-a3b", "--hardware", "h100", *BF16]
    if kind == "hf_configs":
        return ["models", "import", str(mutated_path), "--name", "fuzzed"]
    if kind == "hardware_profiles":
        return ["evaluate", str(layout), "--hardware", str(mutated_path), "--model", "qwen3-30b-a3b", *BF16]
    if kind == "models":
        return ["evaluate", str(layout), "--model", str(mutated_path), "--hardware", "h100", *BF16]
    if kind == "scenarios":
        return ["plan", str(mutated_path), "--dies", "2", "--top", "1"]
    return ["evaluate", str(mutated_path)]


@pytest.fixture(scope="module")
def warm(tmp_path_factory, run_planner) -> None:
    """One evaluate before the timed examples: the first command pays the lazy imports (~2-4 s)."""
    layout = tmp_path_factory.mktemp("warm") / "one-die.toml"
    layout.write_text('mode = "collocated"\n[decode]\ninstances = 1\ndies = 1\nbatch = 8\nprefill_chunk_tokens = 512\n')
    run_planner("evaluate", str(layout), "--model", "qwen3-30b-a3b", "--hardware", "h100", *BF16)


@settings(settings.get_profile("fuzz-data-files-ci"))
@given(case=mutated())
def test_a_mutated_data_file_gives_an_answer_or_one_error_line(case, warm, tmp_path_factory, write_toml, run_planner):
    original, data, change = case
    folder = tmp_path_factory.mktemp("fuzz")
    target = folder / original.name
    if original.suffix == ".json":
        target.write_text(json.dumps(data), encoding="utf-8")  # NaN and Infinity as Python writes them
    else:
        write_toml(target, data)
    layout = write_toml(folder / "one-die.toml", ONE_DIE_LAYOUT)
    args = _command(original, target, layout)
    start = time.perf_counter()
    data = _data_dir(folder, target) if original.parent.name == "measurements" else None
    run = run_planner(*args, data=data)  # any exception but SystemExit propagates: a traceback fails the test
    elapsed = time.perf_counter() - start
    context = f"{original.name} {change}: planner {' '.join(args)}"
    assert run.returncode in (0, 2, 3), f"{context}: exit {run.returncode}\n{run.stderr}"
    assert "Traceback" not in run.stderr, context
    if run.returncode:
        assert run.stderr_line().startswith("planner: error: "), context
    assert elapsed < SLOW_S, f"{context}: took {elapsed:.1f} s"
