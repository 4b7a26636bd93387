"""Bad input: exit code 2, exactly one stderr line naming the file, the field and the fix.

Every case runs ``planner.cli.main()`` in-process on an argv (``run_planner``), so the whole
path from argv to exit code is exercised; a traceback (an exception other than ``SystemExit``)
fails the test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from planner import catalog
from planner.errors import EXIT_BAD_INPUT, UnsupportedDtypeError


def assert_bad_input(run: Any, *needles: str) -> str:
    """Exit 2, one stderr line that contains every needle, no traceback; returns the line."""
    assert run.returncode == EXIT_BAD_INPUT, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr
    line = run.stderr_line()
    assert line.startswith("planner: error: ")
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


# --------------------------------------------------------------------------- hardware profiles


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """Mutator: set a dotted path (list indices as numbers) to ``value``."""

    def mutate(data: dict) -> None:
        *parents, last = path.split(".")
        for part in parents:
            data = data[int(part)] if part.isdigit() else data[part]
        data[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        *parents, last = path.split(".")
        for part in parents:
            data = data[part]
        del data[last]

    return mutate


PROFILE_CASES = {
    "unknown-key": (_set("memory.hbm_gb", 64), ["memory.hbm_gb", "unknown key", "remove it"]),
    "missing-field": (_delete("memory.hbm_bytes"), ["memory.hbm_bytes", "missing", "add it"]),
    "negative-bandwidth": (_set("fabrics.0.bandwidth_bytes_per_s", -1),
                           ["fabrics.0.bandwidth_bytes_per_s", "plausible range 1e8-1e14 bytes/s", "-1"]),
    "efficiency-above-1": (_set("efficiency.gemm.max_frac", 1.5),
                           ["efficiency.gemm.max_frac", "plausible range 0.01-1", "1.5"]),
    "calibrated-without-rows": (_set("fabrics.1.efficiency.calibrated_from", []),
                                ["fabrics.1.efficiency", "calibrated_from"]),
    "fabrics-out-of-order": (lambda d: d["fabrics"].reverse(), ["fabrics", "narrowest first"]),
    "wrong-type": (_set("num_dies", "many"), ["num_dies", "integer"]),
    "dtype-override-above-1": (_set("efficiency.gemm.by_dtype", {"int8": {"source": "test", "kind": "assumed",
                                                                          "memory_frac": 1.5}}),
                               ["efficiency.gemm.by_dtype.int8.memory_frac", "plausible range 0.01-1", "1.5"]),
    "dtype-override-empty": (_set("efficiency.gemm.by_dtype", {"int8": {"source": "test", "kind": "assumed"}}),
                             ["efficiency.gemm.by_dtype.int8", "max_frac and/or memory_frac"]),
    "dtype-override-unknown-dtype": (_set("efficiency.gemm.by_dtype", {"fp6": {"source": "test", "kind": "assumed",
                                                                                "max_frac": 0.8}}),
                                     ["efficiency.gemm.by_dtype.fp6", "unknown key"]),
    "dtype-override-without-peak": (_set("efficiency.gemm.by_dtype", {"fp4": {"source": "test", "kind": "assumed",
                                                                               "max_frac": 0.8}}),
                                    ["efficiency.gemm.by_dtype.fp4", "peak.fp4_flops_per_s"]),
}


@pytest.mark.parametrize("case", sorted(PROFILE_CASES))
def test_profile_field_errors(case: str, tmp_path: Path, profile_dict: dict, write_toml,
                              run_planner) -> None:
    mutate, needles = PROFILE_CASES[case]
    mutate(profile_dict)
    path = write_toml(tmp_path / "bad-profile.toml", profile_dict)
    assert_bad_input(run_planner("profiles", "show", str(path)), "bad-profile.toml", *needles)


def test_profile_without_any_peak(tmp_path: Path, profile_dict: dict, write_toml,
                                  run_planner) -> None:
    profile_dict["peak"] = {"source": "no numbers at all"}
    path = write_toml(tmp_path / "bad-profile.toml", profile_dict)
    assert_bad_input(run_planner("profiles", "show", str(path)), "bad-profile.toml", "'peak'",
                     "bf16_flops_per_s")


def test_malformed_toml(tmp_path: Path, profile_path: Path, run_planner) -> None:
    text = profile_path.read_text().replace("hbm_bytes = 64000000000.0", "hbm_bytes = 64 GB")
    path = tmp_path / "broken.toml"
    path.write_text(text)
    assert_bad_input(run_planner("profiles", "show", str(path)), "broken.toml", "malformed TOML",
                     "line", "fix:")


def test_directory_is_unreadable(tmp_path: Path, run_planner) -> None:
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    assert_bad_input(run_planner("profiles", "show", str(folder)), "folder.toml", "cannot read",
                     "fix:")


def test_non_utf8_file(tmp_path: Path, run_planner) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    assert_bad_input(run_planner("models", "show", str(path)), "latin1.toml", "UTF-8", "fix:")


def test_nonexistent_path(tmp_path: Path, run_planner) -> None:
    path = tmp_path / "nowhere" / "missing.toml"
    assert_bad_input(run_planner("profiles", "show", str(path)), "missing.toml", "cannot read",
                     "No such file")


# --------------------------------------------------------------------------- model cards

MODEL_CASES = {
    "unknown-key": (_set("attention.num_kv_head", 2), ["attention.num_kv_head", "unknown key"]),
    "missing-field": (_delete("hidden_size"), ["hidden_size", "missing"]),
    "top-k-too-large": (_set("ffn.top_k", 99), ["'ffn'", "top_k <= num_routed_experts"]),
    "bad-dtype": (_set("native_dtype", "fp12"), ["native_dtype", "bf16"]),
    "layer-out-of-range": (_set("ffn.dense_layers", [7]), ["ffn.dense_layers", "< num_layers"]),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_model_field_errors(case: str, tmp_path: Path, model_dict: dict, write_toml,
                            run_planner) -> None:
    mutate, needles = MODEL_CASES[case]
    mutate(model_dict)
    path = write_toml(tmp_path / "bad-card.toml", model_dict)
    assert_bad_input(run_planner("models", "show", str(path)), "bad-card.toml", *needles)


# --------------------------------------------------------------------------- names


def test_unknown_model_name(run_planner) -> None:
    assert_bad_input(run_planner("models", "show", "no-such-model"), "unknown model",
                     "'no-such-model'", "fix:")


def test_unknown_profile_name(run_planner) -> None:
    assert_bad_input(run_planner("profiles", "show", "no-such-npu"), "unknown hardware profile",
                     "'no-such-npu'", "fix:")


def test_unsupported_dtype_names_file_section_and_fix(profile_path: Path) -> None:
    """No fp8 peak in the profile: fp8 is an error, never derived from another dtype."""
    spec = catalog.hardware(str(profile_path))
    with pytest.raises(UnsupportedDtypeError) as info:
        spec.peak_flops_per_s("fp8")
    line = info.value.one_line()
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert "test-npu.toml: peak" in line
    assert "fp8_flops_per_s" in line
    assert "fix: choose one of: bf16, int8" in line
    assert "\n" not in line


# --------------------------------------------------------------------------- validate


def test_validate_reports_every_bad_file(tmp_path: Path, profile_path: Path,
                                         profile_dict: dict, write_toml, run_planner) -> None:
    profile_dict["memory"]["hbm_bytes"] = -5
    bad = write_toml(tmp_path / "negative-hbm.toml", profile_dict)
    missing = tmp_path / "missing.toml"
    run = run_planner("profiles", "validate", str(bad), str(profile_path), str(missing))
    assert run.returncode == EXIT_BAD_INPUT
    assert "Traceback" not in run.stderr
    assert run.stdout.splitlines() == [f"ok {profile_path}"]
    lines = run.stderr.splitlines()
    assert len(lines) == 2
    assert "negative-hbm.toml" in lines[0] and "memory.hbm_bytes" in lines[0]
    assert "missing.toml" in lines[1]


def test_models_validate_bad_file(tmp_path: Path, model_dict: dict, write_toml,
                                  run_planner) -> None:
    model_dict["num_layers"] = 0
    bad = write_toml(tmp_path / "zero-layers.toml", model_dict)
    assert_bad_input(run_planner("models", "validate", str(bad)), "zero-layers.toml", "num_layers")


# --------------------------------------------------------------------------- usage errors

USAGE_CASES = {
    "bad-flag": (["profiles", "list", "--bogus"], ["No such option", "--bogus", "--help"]),
    "missing-arg": (["models", "show"], ["Missing argument", "NAME|PATH"]),
    "no-paths": (["profiles", "validate"], ["Missing argument", "PATH..."]),
    "unknown-command": (["profiles", "frobnicate"], ["No such command", "frobnicate"]),
    "no-command": ([], ["missing command"]),
    "no-subcommand": (["models"], ["planner models", "missing command"]),
    "extra-arg": (["models", "list", "extra"], ["unexpected extra argument"]),
}


@pytest.mark.parametrize("case", sorted(USAGE_CASES))
def test_usage_errors(case: str, run_planner) -> None:
    args, needles = USAGE_CASES[case]
    assert_bad_input(run_planner(*args), *needles)


def test_help_exits_zero(run_planner) -> None:
    run = run_planner("profiles", "--help")
    assert run.returncode == 0
    assert "validate" in run.stdout
    assert run.stderr == ""
