"""Commands that succeed: list, show (tables and JSON), validate, import."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from planner import catalog
from planner.inputs.files import HardwareFile, ModelFile


def _json_out(run: Any) -> dict[str, Any]:
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    payload = json.loads(run.stdout)
    assert run.stdout == json.dumps(payload, sort_keys=True, indent=2) + "\n", "keys not sorted"
    return payload


@pytest.fixture
def fake_catalog(tmp_path: Path, profile_dict: dict, model_dict: dict, write_toml,
                 monkeypatch: pytest.MonkeyPatch) -> Path:
    """Shipped data replaced by the two fixtures (test-npu, tiny-moe)."""
    for kind, name, data in (("hardware_profiles", "test-npu", profile_dict),
                             ("models", "tiny-moe", model_dict)):
        (tmp_path / kind).mkdir()
        write_toml(tmp_path / kind / f"{name}.toml", data)
    monkeypatch.setattr(catalog, "data_dir", lambda kind: tmp_path / kind)
    return tmp_path


# --------------------------------------------------------------------------- list (make plan)


@pytest.mark.parametrize("group", ["profiles", "models"])
def test_list_shipped(group: str, run_planner) -> None:
    """What ``make plan`` runs: every shipped file loads and gets a row."""
    run = run_planner(group, "list")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    kind = "hardware_profiles" if group == "profiles" else "models"
    for name in catalog.shipped_names(kind):
        assert name in run.stdout


def test_list_uses_the_catalog(fake_catalog: Path, run_planner) -> None:
    profiles = run_planner("profiles", "list")
    assert profiles.returncode == 0, profiles.stderr
    for text in ("test-npu", "Test NPU", "bf16 int8", "376.0", "1.60", "d2d 2, ub 32"):
        assert text in profiles.stdout
    models = run_planner("models", "list")
    assert models.returncode == 0, models.stderr
    for text in ("tiny-moe", "Tiny MoE (test)", "2 of 8 + 1 shared", "4.22M", "2.20M"):
        assert text in models.stdout


# --------------------------------------------------------------------------- show


def test_profile_show_table(profile_path: Path, run_planner) -> None:
    run = run_planner("profiles", "show", str(profile_path))
    assert run.returncode == 0, run.stderr
    for text in ("fabrics[1].efficiency", "decay_start_ranks", "1.60 TB/s", "752.00 TFLOP/s",
                 "1.00 ms", "calibrated from test-row-1", "tests/conftest.py fixture"):
        assert text in run.stdout


def test_model_show_table(model_path: Path, run_planner) -> None:
    run = run_planner("models", "show", str(model_path))
    assert run.returncode == 0, run.stderr
    for text in ("num_routed_experts", "derived/reported", "1.0008", "0.9990", "1.18M"):
        assert text in run.stdout


def test_profile_show_json(profile_path: Path, profile_dict: dict, run_planner) -> None:
    run = run_planner("profiles", "show", str(profile_path), "--json", "-")
    payload = _json_out(run)
    assert str(profile_path.parent) not in run.stdout, "absolute path in JSON"
    assert payload["kind"] == "hardware_profile"
    assert payload["file_name"] == "test-npu.toml"
    assert payload["derived"] == {"supported_dtypes": ["bf16", "int8"], "num_chips": 16}
    assert HardwareFile.model_validate(payload["file"]) == HardwareFile.model_validate(profile_dict)


def test_model_show_json(model_path: Path, model_dict: dict, run_planner) -> None:
    run = run_planner("models", "show", str(model_path), "--json", "-")
    payload = _json_out(run)
    assert str(model_path.parent) not in run.stdout, "absolute path in JSON"
    assert payload["kind"] == "model_card"
    assert ModelFile.model_validate(payload["file"]) == ModelFile.model_validate(model_dict)
    derived = payload["derived"]
    assert derived["params"] == {"total": 4_223_232.0, "active": 2_197_760.0,
                                 "mtp": 1_182_976.0, "embedding": 256_000.0,
                                 "lm_head": 256_000.0}
    assert derived["reported"] == {"total": 4.22e6, "active": 2.2e6}
    assert derived["derived_over_reported"]["total"] == pytest.approx(4_223_232 / 4.22e6)


def test_show_json_is_deterministic(model_path: Path, run_planner) -> None:
    first = run_planner("models", "show", str(model_path), "--json", "-")
    second = run_planner("models", "show", str(model_path), "--json", "-")
    assert first.stdout == second.stdout


def test_show_json_to_file(tmp_path: Path, profile_path: Path, run_planner) -> None:
    out = tmp_path / "profile.json"
    run = run_planner("profiles", "show", str(profile_path), "--json", str(out))
    assert run.returncode == 0, run.stderr
    assert "decay_start_ranks" in run.stdout, "the table is still printed"
    assert json.loads(out.read_text())["file"]["name"] == "test-npu"


def test_show_json_unwritable(tmp_path: Path, profile_path: Path, run_planner) -> None:
    out = tmp_path / "no-such-dir" / "profile.json"
    run = run_planner("profiles", "show", str(profile_path), "--json", str(out))
    assert run.returncode == 2
    assert "profile.json" in run.stderr_line() and "cannot write" in run.stderr


def test_show_resolves_shipped_names(fake_catalog: Path, run_planner) -> None:
    profile = run_planner("profiles", "show", "test-npu", "--json", "-")
    assert profile.returncode == 0, profile.stderr
    assert json.loads(profile.stdout)["file"]["name"] == "test-npu"
    model = run_planner("models", "show", "tiny-moe", "--json", "-")
    assert model.returncode == 0, model.stderr
    assert json.loads(model.stdout)["file"]["name"] == "tiny-moe"


@pytest.mark.parametrize("name", catalog.shipped_names("hardware_profiles")[:1]
                         + catalog.shipped_names("models")[:1])
def test_show_a_shipped_name(name: str, run_planner) -> None:
    group = "profiles" if name in catalog.shipped_names("hardware_profiles") else "models"
    payload = _json_out(run_planner(group, "show", name, "--json", "-"))
    assert payload["file"]["name"] == name


# --------------------------------------------------------------------------- validate


def test_validate_ok(profile_path: Path, model_path: Path, run_planner) -> None:
    run = run_planner("profiles", "validate", str(profile_path))
    assert (run.returncode, run.stdout, run.stderr) == (0, f"ok {profile_path}\n", "")
    run = run_planner("models", "validate", str(model_path))
    assert (run.returncode, run.stdout, run.stderr) == (0, f"ok {model_path}\n", "")


# --------------------------------------------------------------------------- import

CARD_TOML = 'name = "stub"\n'


@pytest.fixture
def stub_importer(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, str | None]]:
    """Replace planner.inputs.hf_import with a stub; returns the list of calls it received."""
    calls: list[tuple[Path, str | None]] = []

    def import_hf_config(path: Path, *, name: str | None = None) -> tuple[dict, str]:
        calls.append((path, name))
        return {"name": name or "stub"}, CARD_TOML

    module = types.ModuleType("planner.inputs.hf_import")
    module.import_hf_config = import_hf_config  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "planner.inputs.hf_import", module)
    return calls


def test_import_to_stdout(stub_importer, run_planner) -> None:
    run = run_planner("models", "import", "config.json", "--name", "my-model")
    assert (run.returncode, run.stdout, run.stderr) == (0, CARD_TOML, "")
    assert stub_importer == [(Path("config.json"), "my-model")]


def test_import_output_refuses_overwrite(tmp_path: Path, stub_importer, run_planner) -> None:
    out = tmp_path / "card.toml"
    first = run_planner("models", "import", "config.json", "--output", str(out))
    assert first.returncode == 0, first.stderr
    assert out.read_text() == CARD_TOML
    out.write_text("keep me\n")
    second = run_planner("models", "import", "config.json", "--output", str(out))
    assert second.returncode == 2
    line = second.stderr_line()
    assert "card.toml" in line and "exists" in line and "--force" in line
    assert out.read_text() == "keep me\n"
    forced = run_planner("models", "import", "config.json", "-o", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert out.read_text() == CARD_TOML


TINY_QWEN3_MOE = {
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 256,
    "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 32,
    "intermediate_size": 512, "moe_intermediate_size": 128, "num_experts": 8,
    "num_experts_per_tok": 2, "decoder_sparse_step": 1, "mlp_only_layers": [],
    "vocab_size": 1000, "max_position_embeddings": 4096, "sliding_window": None,
    "use_sliding_window": False, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "attention_bias": False,
}


def test_import_real_config_roundtrip(tmp_path: Path, run_planner) -> None:
    """End to end with the real importer: the written card validates and shows."""
    pytest.importorskip("planner.inputs.hf_import")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_QWEN3_MOE))
    out = tmp_path / "tiny-qwen.toml"
    run = run_planner("models", "import", str(config), "--name", "tiny-qwen", "--output", str(out))
    assert run.returncode == 0, run.stderr
    payload = _json_out(run_planner("models", "show", str(out), "--json", "-"))
    assert payload["file"]["name"] == "tiny-qwen"
    assert payload["file"]["ffn"]["num_routed_experts"] == 8


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]"])
def test_import_bad_config(content: str | None, tmp_path: Path, run_planner) -> None:
    pytest.importorskip("planner.inputs.hf_import")
    config = tmp_path / "bad-config.json"
    if content is not None:
        config.write_text(content)
    run = run_planner("models", "import", str(config))
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert "bad-config.json" in run.stderr_line()
