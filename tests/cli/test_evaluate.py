"""``planner evaluate LAYOUT.toml``: the JSON document, the rich breakdown, and bad layouts.

Every case runs the CLI in-process (``run_planner``: argv to exit code, stdout and stderr).  The
numbers the JSON reports are checked against values computed here from the layout file and the
hardware profile (read with tomllib, not through the planner), so a wrong die count or a per-die
figure divided by the wrong pool fails.
"""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from planner.errors import EXIT_BAD_INPUT

ROOT = Path(__file__).resolve().parents[2]
# Examples that write down a whole deployment (the decode pools priced alone are in
# tests/search/test_deployments.py).
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.toml")
                  if (lambda d: "prefill" in d or d["mode"] == "collocated")(tomllib.loads(p.read_text())))
PD_EXAMPLE = "deepseek-v3-cloudmatrix384-pd.toml"
TL_EXAMPLE = "deepseek-v3-cloudmatrix384-transformerless.toml"
COLLOCATED_EXAMPLE = "llama-3.1-70b-h100-collocated.toml"
PIPELINE_EXAMPLE = "llama-3.1-405b-h200-tp4-pp2.toml"
REL = 1e-12


@pytest.fixture(scope="module")
def json_run(run_planner) -> Callable[[str], Any]:
    """``json_run(example)``: one ``evaluate --json -`` run per example, shared by this module."""

    @cache
    def run(example: str) -> Any:
        return run_planner("evaluate", f"examples/{example}", "--json", "-")

    return run


def _layout(example: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / "examples" / example).read_text(encoding="utf-8"))


def _profile(name: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / "hardware_profiles" / f"{name}.toml").read_text(encoding="utf-8"))


def _model(name: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / "models" / f"{name}.toml").read_text(encoding="utf-8"))


def _pool_dies(layout: dict[str, Any]) -> tuple[int, int]:
    """(prefill dies, decode dies incl. expert dies) over all instances, from the file."""
    p, d = layout.get("prefill"), layout["decode"]
    prefill = p["instances"] * p["dies"] if p else 0
    per_instance = d["attention_dies"] + d["expert_dies"] if layout["mode"] == "transformerless" else d["dies"]
    return prefill, d["instances"] * per_instance


def _approx(x: float) -> Any:
    return pytest.approx(x, rel=REL, abs=0.0)


# --------------------------------------------------------------------------- JSON document


@pytest.mark.parametrize("example", EXAMPLES)
def test_json_is_sorted_and_complete(example: str, json_run) -> None:
    run = json_run(example)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    doc = json.loads(run.stdout)
    assert run.stdout == json.dumps(doc, sort_keys=True, indent=2) + "\n"
    for key in ("schema_version", "scenario", "layout", "dies", "chips", "prefill", "decode"):
        assert key in doc, key
    decode_keys = {"step_s", "tokens_per_step", "tpot_s", "context_tokens", "batch", "max_batch_by_memory",
                   "output_tokens_per_s", "output_tokens_per_s_per_die", "output_tokens_per_s_per_chip",
                   "breakdown"}
    assert decode_keys <= set(doc["decode"]), decode_keys - set(doc["decode"])
    layout = _layout(example)
    if layout["mode"] == "collocated":
        assert doc["prefill"] is None
    else:
        prefill_keys = {"step_s", "input_tokens_per_s", "input_tokens_per_s_per_die",
                        "input_tokens_per_s_per_chip", "breakdown"}
        assert prefill_keys <= set(doc["prefill"]), prefill_keys - set(doc["prefill"])
    assert doc["layout"]["mode"] == layout["mode"]
    assert doc["scenario"]["model"] == layout["scenario"]["model"]
    assert doc["scenario"]["hardware"] == layout["scenario"]["hardware"]


@pytest.mark.parametrize("example", EXAMPLES)
def test_dies_and_chips(example: str, json_run) -> None:
    doc = json.loads(json_run(example).stdout)
    layout = _layout(example)
    prefill_dies, decode_dies = _pool_dies(layout)
    per_chip = _profile(layout["scenario"]["hardware"])["dies_per_chip"]
    assert doc["dies"] == prefill_dies + decode_dies
    assert doc["chips"] == _approx((prefill_dies + decode_dies) / per_chip)


def test_cloudmatrix_has_two_dies_per_chip(json_run) -> None:
    doc, layout = json.loads(json_run(PD_EXAMPLE).stdout), _layout(PD_EXAMPLE)
    prefill, decode = _pool_dies(layout)
    assert doc["dies"] == prefill + decode
    assert doc["chips"] == doc["dies"] / 2  # the 910C: two dies per chip


@pytest.mark.parametrize("example", EXAMPLES)
def test_decode_rates(example: str, json_run) -> None:
    """tpot = step / tokens per step; per die over every decode die (expert dies too)."""
    doc, layout = json.loads(json_run(example).stdout), _layout(example)
    dec, d = doc["decode"], layout["decode"]
    scenario = layout["scenario"]
    work = {"input_tokens": 4096, "output_tokens": 1024, **scenario.get("workload", {})}
    acceptance = scenario.get("mtp", {}).get("acceptance", 0.7)
    has_mtp = _model(scenario["model"]).get("num_mtp_layers", 0) > 0
    # One draft token (the default): 1 + acceptance when the model has an MTP layer and it is on.
    assert dec["tokens_per_step"] == _approx(1 + acceptance if has_mtp and acceptance > 0 else 1.0)
    assert dec["tpot_s"] == _approx(dec["step_s"] / dec["tokens_per_step"])
    assert dec["context_tokens"] == _approx(work["input_tokens"] + work["output_tokens"] / 2)
    assert dec["batch"] == d["batch"]
    assert dec["step_s"] > 0 and dec["max_batch_by_memory"] >= 0
    attention_dies = d["attention_dies"] if layout["mode"] == "transformerless" else d["dies"]
    seqs = d["instances"] * attention_dies * d["batch"]
    assert dec["output_tokens_per_s"] == _approx(seqs * dec["tokens_per_step"] / dec["step_s"])
    _, decode_dies = _pool_dies(layout)
    per_chip = _profile(scenario["hardware"])["dies_per_chip"]
    assert dec["output_tokens_per_s_per_die"] == _approx(dec["output_tokens_per_s"] / decode_dies)
    assert dec["output_tokens_per_s_per_chip"] == _approx(dec["output_tokens_per_s_per_die"] * per_chip)


@pytest.mark.parametrize("example", [e for e in EXAMPLES if _layout(e)["mode"] != "collocated"])
def test_prefill_rates(example: str, json_run) -> None:
    doc, layout = json.loads(json_run(example).stdout), _layout(example)
    pre, p = doc["prefill"], layout["prefill"]
    prefill_dies, _ = _pool_dies(layout)
    hit = layout["scenario"].get("workload", {}).get("cache_hit_rate", 0.0)
    # Every die computes batch_tokens new tokens per forward; cache hits add prompt tokens for free.
    expected = prefill_dies * p["batch_tokens"] / pre["step_s"] / (1 - hit)
    assert pre["step_s"] > 0
    assert pre["input_tokens_per_s"] == _approx(expected)
    assert pre["input_tokens_per_s_per_die"] == _approx(pre["input_tokens_per_s"] / prefill_dies)
    per_chip = _profile(layout["scenario"]["hardware"])["dies_per_chip"]
    assert pre["input_tokens_per_s_per_chip"] == _approx(pre["input_tokens_per_s_per_die"] * per_chip)


@pytest.mark.parametrize("example", EXAMPLES)
def test_json_is_deterministic(example: str, json_run, run_planner) -> None:
    first, second = json_run(example), run_planner("evaluate", f"examples/{example}", "--json", "-")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout


def test_json_has_no_absolute_paths(json_run) -> None:
    assert str(ROOT) not in json_run(PD_EXAMPLE).stdout


def test_flags_override_the_layout_scenario(json_run, run_planner) -> None:
    run = run_planner("evaluate", f"examples/{PD_EXAMPLE}", "--input-tokens", "1024", "--output-tokens", "256",
               "--mtp-acceptance", "0", "--json", "-")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["scenario"]["workload"]["input_tokens"] == 1024
    assert doc["decode"]["context_tokens"] == 1024 + 256 / 2
    assert doc["decode"]["tokens_per_step"] == 1.0
    base = json.loads(json_run(PD_EXAMPLE).stdout)
    # Shorter context and no MTP draft layer: the decode step cannot get slower.
    assert doc["decode"]["step_s"] < base["decode"]["step_s"]


# --------------------------------------------------------------------------- rich output

RICH_NEEDLES = {
    PD_EXAMPLE: ["dispatch", "combine"],
    "deepseek-v3-h800-pd.toml": ["dispatch", "combine"],
    TL_EXAMPLE: ["a2e", "e2a"],
    COLLOCATED_EXAMPLE: ["tp_allreduce"],
    PIPELINE_EXAMPLE: ["tp_allreduce", "pipeline_sends", "pipeline_last_stage"],
}


@pytest.mark.parametrize("example", EXAMPLES)
def test_rich_output_shows_the_breakdown(example: str, run_planner) -> None:
    run = run_planner("evaluate", f"examples/{example}")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    out = run.stdout
    for needle in [*RICH_NEEDLES[example], "memory per die", "decode", "scheduler_gap"]:
        assert needle in out, f"{needle!r} missing from the table output of {example}"
    if _layout(example)["mode"] != "collocated":
        assert "prefill" in out
    # every example writes down a whole deployment: its TTFT is priced, never "elsewhere" (that word is
    # for a pool priced alone, whose other side is not in the layout)
    assert "elsewhere" not in out, f"{example}: a whole deployment shows a metric as 'elsewhere'"
    assert not out.lstrip().startswith("{"), "tables expected, got JSON"


# --------------------------------------------------------------------------- bad layouts


def _assert_bad(run: Any, *needles: str) -> str:
    assert run.returncode == EXIT_BAD_INPUT, (run.returncode, run.stdout[:200], run.stderr)
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {run.stderr!r}"
    assert lines[0].startswith("planner: error: ")
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def _pd_decode(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(_layout(PD_EXAMPLE))
    data["decode"].update(changes)
    return data


def _without(data: dict[str, Any], table: str, key: str) -> dict[str, Any]:
    del data[table][key]
    return data


def _collocated_with_prefill() -> dict[str, Any]:
    data = copy.deepcopy(_layout(COLLOCATED_EXAMPLE))
    data["prefill"] = {"instances": 1, "dies": 2, "tp": 2, "batch_tokens": 8192}
    return data


def _transformerless_decode(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(_layout(TL_EXAMPLE))
    data["decode"].update(changes)
    return data


# name -> (layout dict, needles of the one stderr line)
BAD_LAYOUTS: dict[str, tuple[dict[str, Any], list[str]]] = {
    # deepseek-v3 has 128 heads; 3 divides the 3 dies but not the heads.
    "tp-not-dividing-heads": (_pd_decode(dies=3, tp=3, ep=1, redundant_experts=0),
                              ["'decode.tp'", "= 3", "128 attention heads"]),
    "dies-not-multiple-of-tp": (_pd_decode(dies=6, tp=4, ep=1, redundant_experts=0),
                                ["'decode.tp'", "= 4", "6 dies"]),
    # 256 routed experts on 7 dies: 256 = 7 * 36 + 4.
    "experts-not-placeable": (_pd_decode(dies=7, ep=7, redundant_experts=0),
                              ["'decode.ep'", "cannot place", "on 7 dies"]),
    "transformerless-key-in-pd": (_pd_decode(attention_dies=320),
                                  ["'decode.attention_dies'", "not a pd key"]),
    "pd-without-dies": (_without(_pd_decode(), "decode", "dies"),
                        ["'decode.dies'", "required in pd mode"]),
    "prefill-in-collocated": (_collocated_with_prefill(), ["'prefill'", "collocated"]),
    "domains-not-dividing": (_transformerless_decode(domains=7),
                             ["'decode.domains'", "= 7",
                              f"attention_dies = {_layout(TL_EXAMPLE)['decode']['attention_dies']}"]),
    "batch-not-multiple-of-micro-batches": (_pd_decode(batch=63, micro_batches=2),
                                            ["'decode.micro_batches'", "batch = 63"]),
    "unknown-decode-key": (_pd_decode(batch_size=64), ["decode.batch_size", "unknown key"]),
    # twice the decode instances: more dies than one 768-die CloudMatrix384 pod holds
    "more-dies-than-the-profile": (_pd_decode(instances=2 * _layout(PD_EXAMPLE)["decode"]["instances"] + 3),
                                   ["needs 2 pods of cloudmatrix384", "768 dies each", "--pods 2"]),
}


@pytest.mark.parametrize("case", sorted(BAD_LAYOUTS))
def test_bad_layout(case: str, tmp_path: Path, write_toml, run_planner) -> None:
    data, needles = BAD_LAYOUTS[case]
    path = write_toml(tmp_path / f"{case}.toml", data)
    _assert_bad(run_planner("evaluate", str(path)), f"{case}.toml", *needles)


def test_malformed_layout_toml(tmp_path: Path, run_planner) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('mode = "pd"\n[decode\ninstances = 1\n', encoding="utf-8")
    _assert_bad(run_planner("evaluate", str(path)), "broken.toml", "malformed TOML", "fix:")


def test_fp8_on_cloudmatrix_is_refused(run_planner) -> None:
    run = run_planner("evaluate", f"examples/{PD_EXAMPLE}", "--weights-dtype", "fp8", "--activations-dtype", "fp8")
    line = _assert_bad(run, "fp8", "cloudmatrix384")
    assert "int8" in line, "the fix should list the dtypes the profile has"


def test_unknown_expert_balance(run_planner) -> None:
    # An enum option: typer refuses the value and names the flag and the choices.
    _assert_bad(run_planner("evaluate", f"examples/{PD_EXAMPLE}", "--expert-balance", "wrong"),
                "--expert-balance", "perfect", "eplb")


def test_unknown_model(run_planner) -> None:
    _assert_bad(run_planner("evaluate", f"examples/{PD_EXAMPLE}", "--model", "no-such-model"),
                "unknown model", "'no-such-model'")


def test_missing_layout_file(tmp_path: Path, run_planner) -> None:
    _assert_bad(run_planner("evaluate", str(tmp_path / "nowhere.toml")), "nowhere.toml", "cannot read")


def test_one_micro_batch_pairs_nothing_and_a_dense_layer_pairs_its_all_reduces(json_run, run_planner) -> None:
    """With one micro-batch a layer is serial: no stage pairs in the JSON, and the table says so. A
    dense TP layer with two micro-batches pairs its TP all-reduces (it has no dispatch / combine)."""
    one = json.loads(json_run(COLLOCATED_EXAMPLE).stdout)["decode"]["breakdown"]
    assert one["micro_batches"] == 1 and all(not layer["stage_pairs"] for layer in one["layers"].values())
    assert "overlap: none, one micro-batch (gpu-two-batch needs two)" in " ".join(
        run_planner("evaluate", f"examples/{COLLOCATED_EXAMPLE}").stdout.split())
    two = json.loads(json_run(PIPELINE_EXAMPLE).stdout)["decode"]["breakdown"]
    names = [name for layer in two["layers"].values() for name in layer["stage_pairs"]]
    assert two["micro_batches"] == 2 and names
    assert any(n.startswith("attention all-reduce || ") for n in names)
    assert any(n.startswith("FFN all-reduce || ") for n in names)
    assert not any("dispatch" in n or "combine" in n for n in names)
