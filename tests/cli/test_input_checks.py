"""Every input checked (issue 12): strict types, plausible ranges, only regular files of bounded
size and depth, bounded names, and questions the model and hardware can answer -- each refused
with one stderr line and exit 2, never a traceback and never a silent change of the question.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from planner.errors import EXIT_BAD_INPUT, EXIT_INFEASIBLE, EXIT_OK
from planner.inputs.files import MAX_DEPTH, MAX_FILE_BYTES

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "scenarios" / "qwen3-235b-h200-chat.toml"
# A one-die collocated layout: valid for every model (tp = ep = 1), cheap to price.
ONE_DIE = {"mode": "collocated", "decode": {"instances": 1, "dies": 1, "tp": 1, "ep": 1, "batch": 8,
                                            "micro_batches": 1, "prefill_chunk_tokens": 512}}
BF16 = ("--weights-dtype", "bf16", "--activations-dtype", "bf16", "--kv-dtype", "bf16")


def bad(run: Any, *needles: str) -> str:
    """Exit 2 with exactly one ``planner: error:`` line holding every needle."""
    assert run.returncode == EXIT_BAD_INPUT, (run.returncode, run.stderr)
    line = run.stderr_line()
    assert line.startswith("planner: error: ")
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def _set(data: dict, dotted: str, value: Any) -> dict:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value
    return data


# --------------------------------------------------------------------------- strict types


@pytest.mark.parametrize(("field", "value", "needles"), [
    ("peak.bf16_flops_per_s", True, ["peak.bf16_flops_per_s", "valid number", "a boolean is not a number"]),
    ("peak.bf16_flops_per_s", "376e12", ["peak.bf16_flops_per_s", "without quotes"]),
    ("num_dies", "12", ["num_dies", "valid integer", "without quotes"]),
    ("num_dies", 12.0, ["num_dies", "valid integer"]),
    ("num_dies", True, ["num_dies", "a boolean is not a number"]),
    ("schema_version", True, ["schema_version", "integer 1"]),
    ("fabrics.0.scope", 1, ["fabrics.0.scope"]),
])
def test_a_profile_takes_types_strictly(field, value, needles, tmp_path, profile_dict, write_toml, run_planner):
    path = write_toml(tmp_path / "typed.toml", _set(profile_dict, field, value))
    bad(run_planner("profiles", "validate", str(path)), "typed.toml", *needles)


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_a_boolean_is_only_true_or_false(value, tmp_path, model_dict, write_toml, run_planner):
    path = write_toml(tmp_path / "card.toml", _set(model_dict, "attention.qk_norm", value))
    bad(run_planner("models", "validate", str(path)), "attention.qk_norm", "write true or false")


def test_an_integer_is_a_valid_float(tmp_path, profile_dict, write_toml, run_planner):
    path = write_toml(tmp_path / "ints.toml", _set(profile_dict, "peak.bf16_flops_per_s", 376 * 10**12))
    assert run_planner("profiles", "validate", str(path)).returncode == EXIT_OK


# --------------------------------------------------------------------------- plausible ranges

RANGE_CASES = [
    ("profile", "peak.bf16_flops_per_s", 1e-300, "1e12-1e18 FLOP/s"),
    ("profile", "peak.bf16_flops_per_s", 1e300, "1e12-1e18 FLOP/s"),
    ("profile", "fabrics.0.latency_s", 1e308, "0-0.01 s"),
    ("profile", "fabrics.1.efficiency.decay", 1e9, "0-2"),
    ("profile", "memory.hbm_bytes", 1e308, "1e9-1e13 bytes"),
    ("profile", "efficiency.memory.frac", 1e-300, "0.01-1"),
    ("profile", "overheads.scheduler_gap_s", float("inf"), "0-1 s"),
    ("profile", "memory.hbm_bandwidth_bytes_per_s", float("nan"), "1e10-1e15 bytes/s"),
    ("model", "num_layers", 1_000_000_000, "1-1000 layers"),
    ("model", "hidden_size", 10**30, "1-131072"),
    ("model", "ffn.num_routed_experts", 100_000, "0-4096 experts"),
]


@pytest.mark.parametrize(("kind", "field", "value", "span"), RANGE_CASES)
def test_a_number_outside_its_plausible_range_is_refused_with_the_range_and_reason(
        kind, field, value, span, tmp_path, profile_dict, model_dict, write_toml, run_planner):
    data = profile_dict if kind == "profile" else model_dict
    path = write_toml(tmp_path / "ranged.toml", _set(data, field, value))
    command = "profiles" if kind == "profile" else "models"
    line = bad(run_planner(command, "validate", str(path)), field, f"plausible range {span}")
    assert re.search(r"range [^()]+ \(.+\)$", line), "the reason follows the range"


def test_reserves_that_leave_no_memory_are_refused(tmp_path, profile_dict, write_toml, run_planner):
    path = write_toml(tmp_path / "full.toml", _set(profile_dict, "memory_reserve.runtime_reserved_bytes", 60e9))
    bad(run_planner("profiles", "validate", str(path)), "memory_reserve", "leave nothing of the usable HBM")


def test_an_hf_config_with_absurd_sizes_is_refused(tmp_path, run_planner):
    config = (ROOT / "tests" / "data" / "hf_configs" / "Qwen3-30B-A3B.json").read_text()
    for key, value, needle in (("hidden_size", 10**30, "plausible range 1-131072"),
                               ("num_hidden_layers", 10**9, "plausible range 1-1000 layers")):
        path = tmp_path / f"{key}.json"
        path.write_text(re.sub(rf'"{key}": \d+', f'"{key}": {value}', config))
        bad(run_planner("models", "import", str(path), "--name", "x"), key, needle)


# --------------------------------------------------------------------------- files, depth, names


def test_special_files_are_refused_without_reading(tmp_path, run_planner):
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)  # opening it for a blocking read would hang forever
    for path in ("/dev/zero", "/dev/urandom", str(fifo)):
        for args in (("profiles", "validate", path), ("evaluate", path), ("plan", path),
                     ("models", "import", path)):
            bad(run_planner(*args), path, "not a regular file")


def test_an_oversized_file_is_refused(tmp_path, run_planner):
    path = tmp_path / "huge.toml"
    path.write_text("# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    bad(run_planner("models", "validate", str(path)), "huge.toml", "larger than 1024 KiB")


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 5000])
def test_deep_nesting_is_refused(levels, tmp_path, run_planner):
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * levels + "]" * levels + "\n")
    bad(run_planner("profiles", "validate", str(path)), "deep.toml", f"more than {MAX_DEPTH} levels")


@pytest.mark.parametrize("flag", ["--model", "--hardware"])
def test_a_300_character_name_is_an_unknown_name(flag, run_planner):
    line = bad(run_planner("plan", flag, "x" * 300), "unknown", "300 characters")
    assert len(line) < 1000


def test_a_300_character_path_cannot_be_read(tmp_path, run_planner):
    bad(run_planner("plan", "--model", str(tmp_path / ("x" * 300 + ".toml"))), "cannot read", "too long")


# --------------------------------------------------------------------------- the question asked


def test_more_dies_than_the_hardware_has_is_refused_not_clamped(run_planner):
    bad(run_planner("plan", "--dies", "2000"), "dies = 2000", "cloudmatrix384", "768 dies")


def test_the_default_budget_is_every_die_of_a_smaller_system(run_planner):
    run = run_planner("plan", "--hardware", "gb200-nvl72", "--model", "qwen3-30b-a3b", "--weights-dtype", "fp8",
                      "--activations-dtype", "fp8", "--modes", "collocated", "--top", "1", "--samples", "0",
                      "--json", "-")
    assert run.returncode == EXIT_OK, run.stderr
    assert run.json()["scenario"]["dies"] == 72


@pytest.mark.parametrize(("hardware", "dtype"), [("cloudmatrix384", "fp8"), ("h100", "fp4")])
@pytest.mark.parametrize("flag", ["--weights-dtype", "--activations-dtype", "--kv-dtype"])
def test_a_dtype_the_hardware_lacks_is_refused(hardware, dtype, flag, run_planner):
    run = run_planner("plan", "--hardware", hardware, "--model", "qwen3-30b-a3b", "--dies", "8", flag, dtype)
    bad(run, f"= {dtype}", f"{hardware} does not support", f"choose {flag}")


def test_a_request_longer_than_the_context_is_refused(run_planner):
    run = run_planner("plan", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--dies", "8",
                      "--input-tokens", "50000")
    bad(run, "input_tokens (50000) + output (1024)", "max_position_embeddings = 40960")


def test_a_histogram_prompt_longer_than_the_context_is_refused(tmp_path, run_planner):
    path = tmp_path / "long.toml"
    path.write_text(CHAT.read_text().replace("[8192, 1]", "[50000, 1]"))
    bad(run_planner("plan", str(path), "--dies", "8"), "the longest prompt (50000)",
        "max_position_embeddings = 40960")


def test_a_histogram_with_input_tokens_is_refused(tmp_path, run_planner):
    bad(run_planner("plan", str(CHAT), "--dies", "8", "--input-tokens", "100"), "input_tokens = 100",
        "input_histogram (mean 2816 tokens)", "give one of them")
    path = tmp_path / "both.toml"
    path.write_text(CHAT.read_text().replace("output_tokens = 512", "output_tokens = 512\ninput_tokens = 100"))
    bad(run_planner("plan", str(path), "--dies", "8"), "both.toml", "input_tokens = 100", "both given")


@pytest.mark.parametrize(("histogram", "needle"), [("[[1024, 0]]", "plausible range (0, 1e12]"),
                                                   ("[-1]", "valid tuple"), ("[]", "at least 1 item"),
                                                   ("[[0, 1]]", "plausible range 1-1e7 tokens")])
def test_a_bad_histogram_is_refused(histogram, needle, tmp_path, run_planner):
    path = tmp_path / "hist.toml"
    path.write_text(CHAT.read_text().replace("[[1024, 3], [8192, 1]]", histogram))
    bad(run_planner("plan", str(path), "--dies", "8"), "workload.input_histogram", needle)


def test_mtp_acceptance_on_a_model_without_mtp_is_refused(tmp_path, run_planner):
    args = ("plan", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--dies", "8")
    bad(run_planner(*args, "--mtp-acceptance", "0.9"), "mtp.acceptance = 0.9", "no MTP layers")
    path = tmp_path / "mtp.toml"
    path.write_text(CHAT.read_text() + "[mtp]\nacceptance = 0.8\n")
    bad(run_planner("plan", str(path), "--dies", "8"), "mtp.acceptance = 0.8", "qwen3-235b-a22b has no MTP layers")


def test_without_mtp_layers_the_default_acceptance_is_zero(run_planner):
    run = run_planner("plan", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--dies", "8", "--modes",
                      "collocated", "--top", "1", "--samples", "0", "--json", "-")
    assert run.returncode == EXIT_OK, run.stderr
    assert run.json()["scenario"]["mtp"]["acceptance"] == 0.0


def test_absurd_redundant_experts_are_refused(tmp_path, run_planner):
    text = (ROOT / "examples" / "deepseek-v3-h800-pd.toml").read_text()
    path = tmp_path / "eplb.toml"
    path.write_text(re.sub(r"redundant_experts = \d+", "redundant_experts = 1000000000", text, count=1))
    bad(run_planner("evaluate", str(path)), "redundant_experts", "plausible range 0-100000 experts")


# --------------------------------------------------------------------------- answers, not tracebacks


@pytest.mark.parametrize("model", ["qwen3-30b-a3b", "mixtral-8x7b", "gpt-oss-120b", "deepseek-v3", "glm-4.5"])
@pytest.mark.parametrize("dies", [1, 2, 3])
def test_plan_on_a_few_dies_answers_for_every_moe_model(model, dies, run_planner):
    """Regression: --dies 1 crashed on every MoE model (an empty transformerless candidate space)."""
    run = run_planner("plan", "--model", model, "--hardware", "h100", "--dies", str(dies), "--weights-dtype", "fp8",
                      "--activations-dtype", "fp8", "--input-tokens", "1024", "--output-tokens", "128",
                      "--samples", "0")
    assert run.returncode in (EXIT_OK, EXIT_INFEASIBLE), run.stderr


EXTREME_PROFILE = {  # every number at the slow end of its range
    "peak": {"bf16_flops_per_s": 1e12}, "memory": {"hbm_bytes": 1e13, "hbm_bandwidth_bytes_per_s": 1e10},
    "efficiency": {"gemm": {"max_frac": 0.01, "m_half_tokens": 1e6, "k_half": 1e6},
                   "attention": {"compute_frac": 0.01, "memory_frac": 0.01}, "memory": {"frac": 0.01}},
    "overheads": {"kernel_s": 0.01, "eager_launch_s": 0.01, "scheduler_gap_s": 1.0},
    "collectives": {"dispatch_s": 0.01, "combine_s": 0.01, "p2p_s": 0.01, "collective_s": 0.01,
                    "low_latency_copy_s": 1e-4},
}


def _merge(data: dict, change: dict) -> dict:
    for key, value in change.items():
        if isinstance(value, dict):
            _merge(data[key], value)
        else:
            data[key] = value
    return data


def test_numbers_at_the_ends_of_their_ranges_give_answers(tmp_path, profile_dict, model_dict, write_toml,
                                                         run_planner):
    """A slow profile (every number at its slow end) and a huge model: finite answers, no overflow."""
    profile = _merge(profile_dict, EXTREME_PROFILE)
    for fabric in profile["fabrics"]:
        fabric.update(bandwidth_bytes_per_s=1e8, latency_s=0.01)
        fabric["efficiency"].update(max_frac=0.01, decay=2.0, decay_start_ranks=1.0)
    hw = write_toml(tmp_path / "slow.toml", profile)
    huge = _merge(model_dict, {"num_layers": 1000, "hidden_size": 131_072, "vocab_size": 10_000_000,
                               "max_position_embeddings": 100_000_000,
                               "ffn": {"moe_intermediate_size": 1_048_576, "num_routed_experts": 4096, "top_k": 256}})
    card = write_toml(tmp_path / "huge.toml", huge)
    layout = write_toml(tmp_path / "one.toml", ONE_DIE)
    for args in (("evaluate", str(layout), "--hardware", str(hw), "--model", str(card), *BF16, "--json", "-"),
                 ("evaluate", str(layout), "--hardware", str(hw), *BF16, "--model", "qwen3-30b-a3b"),
                 ("plan", "--hardware", str(hw), "--model", str(card), "--dies", "8", "--samples", "0", *BF16)):
        run = run_planner(*args)
        assert run.returncode in (EXIT_OK, EXIT_INFEASIBLE), run.stderr
        assert "nan" not in run.stdout.lower().replace("infiniband", "")


def test_an_imported_config_json_is_named_after_its_model(tmp_path, run_planner):
    config = (ROOT / "tests" / "data" / "hf_configs" / "Qwen3-30B-A3B.json").read_text()
    snapshot = tmp_path / "models--Qwen--Qwen3-30B-A3B" / "snapshots" / ("0123456789abcdef" * 2 + "01234567")
    for folder in (tmp_path / "Qwen3-30B-A3B", snapshot):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(config)
        run = run_planner("models", "import", str(folder / "config.json"))
        assert run.returncode == EXIT_OK, run.stderr
        assert 'name = "qwen3-30b-a3b"' in run.stdout


def test_evaluate_names_the_pool_that_does_not_fit(tmp_path, run_planner):
    """The decode pool's capacity is its own, not 0 because the prefill pool does not fit."""
    text = (ROOT / "examples" / "deepseek-v3-cloudmatrix384-pd.toml").read_text()
    path = tmp_path / "small-prefill.toml"
    path.write_text(re.sub(r"(\[prefill\][^\[]*?)dies = \d+(.*?)ep = \d+", r"\1dies = 2\2ep = 2", text, count=1,
                           flags=re.S))
    run = run_planner("evaluate", str(path), "--tpot-s", "0.06", "--json", "-")
    assert run.returncode == EXIT_OK, run.stderr
    g = run.json()["goodput"]
    assert g["binding_constraint"] == "memory: the prefill pool does not fit"
    assert g["prefill_capacity_requests_per_s"] == 0
    assert g["decode_capacity_requests_per_s"] > 0
