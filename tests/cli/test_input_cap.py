"""``workload.input_max_tokens``: refused with one line naming the field and the fix (exit 2), and carried
into the report when given (planner.capped_gamma prices it)."""

from __future__ import annotations

from typing import Any

import pytest

from planner.errors import EXIT_BAD_INPUT, EXIT_OK
from planner.inputs.scenario import ScenarioFile, WorkloadSection

HEAD = 'model = "llama-3.1-70b"\nhardware = "h100"\ndies = 8\n[workload]\n'
ONE_DIE = {"mode": "collocated", "decode": {"instances": 1, "dies": 1, "tp": 1, "ep": 1, "batch": 8,
                                            "micro_batches": 1, "prefill_chunk_tokens": 512}}


def _bad(run: Any, *needles: str) -> None:
    assert run.returncode == EXIT_BAD_INPUT, (run.returncode, run.stderr)
    line = run.stderr_line()
    assert line.startswith("planner: error: ") and "Traceback" not in run.stderr
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"


@pytest.mark.parametrize(("workload", "needles"), [
    ("input_tokens = 9429\ninput_cv = 0.431\ninput_max_tokens = 5000",
     ["input_max_tokens = 5000 is below input_tokens = 9429", "leave input_max_tokens out"]),
    # the smallest cap a gamma of CV 0.431 admits: 9429 (1 + 0.431 (0.431 + sqrt(1 + 0.431^2))) = 15,604
    ("input_tokens = 9429\ninput_cv = 0.431\ninput_max_tokens = 12000",
     ["input_max_tokens = 12000 is too close", "input_cv = 0.431", "at least 1561"]),
    ("input_tokens = 1000\ninput_max_tokens = 1000.0", ["workload.input_max_tokens", "valid integer"]),
    ('input_tokens = 1000\ninput_max_tokens = "2000"', ["workload.input_max_tokens", "without quotes"]),
    ("input_tokens = 1000\ninput_max_tokens = 0", ["workload.input_max_tokens", "plausible range 1-1e7"]),
    ("input_tokens = 1000\ninput_max_tokens = true", ["workload.input_max_tokens"]),
    ("input_histogram = [[1024, 3], [8192, 1]]\ninput_max_tokens = 4096",
     ["input_histogram has prompts of 8192 tokens", "input_max_tokens = 4096", "at least 8192"]),
    # the two-bin histogram (mean 2816, CV 1.1) is no gamma capped at its own longest bin
    ("input_histogram = [[1024, 3], [8192, 1]]\ninput_max_tokens = 8192",
     ["input_max_tokens = 8192 is too close", "the mean of input_histogram"]),
    ("input_tokens = 1000\ninput_max_tokens = 200000",
     ["input_max_tokens (200000) + output (1024)", "max_position_embeddings"]),
])
def test_a_bad_cap_is_refused_with_the_field_and_the_fix(workload, needles, tmp_path, run_planner) -> None:
    path = tmp_path / "capped.toml"
    path.write_text(HEAD + workload + "\n")
    _bad(run_planner("plan", str(path), "--samples", "0"), *needles)


def test_a_flag_raising_the_mean_above_the_files_cap_is_refused(tmp_path, run_planner) -> None:
    path = tmp_path / "capped.toml"
    path.write_text(HEAD + "input_tokens = 1000\ninput_cv = 0.5\ninput_max_tokens = 4000\n")
    _bad(run_planner("plan", str(path), "--input-tokens", "5000"), "input_max_tokens = 4000",
         "below input_tokens = 5000")


def test_the_cap_is_optional_and_reaches_the_workload() -> None:
    assert WorkloadSection().input_max_tokens is None
    w = ScenarioFile.model_validate({"workload": {"input_tokens": 9429, "input_cv": 0.431,
                                                  "input_max_tokens": 19988}}).workload
    assert w.input_max_tokens == 19988
    hist = WorkloadSection.model_validate({"input_histogram": [[1024, 3], [8192, 1]], "input_max_tokens": 12000})
    assert (hist.input_tokens, hist.input_max_tokens) == (2816, 12000)


def test_a_capped_layout_evaluates_and_reports_its_cap(tmp_path, write_toml, run_planner) -> None:
    layout = write_toml(tmp_path / "one.toml", {**ONE_DIE, "scenario": {
        "model": "qwen3-30b-a3b", "hardware": "h100", "dies": 1,
        "precision": {"weights": "bf16", "activations": "bf16", "kv_cache": "bf16"},
        "workload": {"input_tokens": 1000, "input_cv": 0.8, "input_max_tokens": 5000, "output_tokens": 200}}})
    run = run_planner("evaluate", str(layout), "--json", "-")
    assert run.returncode == EXIT_OK, run.stderr
    doc = run.json()
    assert doc["scenario"]["workload"]["input_max_tokens"] == 5000
    assert doc["goodput"]["ttft_breakdown"]["prefill_s"] > 0


def test_sensitivity_scales_the_longest_prompt_with_the_length() -> None:
    # "input length" -+10% scales every prompt: the cap moves with the mean, so its distance in SDs stays
    # ((3200 / 1000 - 1) / 0.8 = 2.75; 2880 / 900 and 3520 / 1100 give the same) and stays a valid cap
    from planner.decide.sensitivity import _workload
    from planner.inputs.scenario import build_scenario

    sc = build_scenario(ScenarioFile.model_validate({
        "model": "qwen3-30b-a3b", "hardware": "h100", "dies": 1,
        "precision": {"weights": "bf16", "activations": "bf16", "kv_cache": "bf16"},
        "workload": {"input_tokens": 1000, "input_cv": 0.8, "input_max_tokens": 3200, "output_tokens": 200}}), {})
    for f, cap in ((0.9, 2880), (1.1, 3520)):
        w = _workload("input_tokens", 1)(sc, f)[0].workload
        assert w.input_max_tokens == cap
        assert w.input_cap_sd == pytest.approx(sc.workload.input_cap_sd, rel=1e-12) == 2.75
