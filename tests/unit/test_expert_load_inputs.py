"""Expert-load inputs: measured count matrices (CSV and JSON, and every kind of bad file), the
parameter file, and the scenario's [experts] section (old keys included)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from planner import catalog
from planner.errors import DataFileError
from planner.inputs.expert_load import Policy, load_params_file, read_counts
from planner.inputs.scenario import build_scenario, scenario_overrides

MODEL = catalog.model("deepseek-v3")      # 58 MoE layers (3 dense of 61), 256 routed experts
LAYERS, EXPERTS = MODEL.num_moe_layers, MODEL.ffn.num_routed_experts


def matrix() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 500, size=(LAYERS, EXPERTS)).astype(float) + 1.0


def write_csv(path: Path, counts: np.ndarray, header: str = "# tokens per expert, one MoE layer per line\n") -> Path:
    path.write_text(header + "\n".join(",".join(f"{x:g}" for x in row) for row in counts) + "\n")
    return path


def test_shape_of_deepseek_v3() -> None:
    assert (LAYERS, EXPERTS) == (58, 256)


def test_csv_and_json_read_the_same(tmp_path: Path) -> None:
    counts = matrix()
    from_csv = read_counts(write_csv(tmp_path / "m.csv", counts), MODEL)
    (tmp_path / "m.json").write_text(json.dumps({"counts": counts.tolist()}))
    (tmp_path / "bare.json").write_text(json.dumps(counts.tolist()))
    np.testing.assert_array_equal(from_csv, counts)
    np.testing.assert_array_equal(read_counts(tmp_path / "m.json", MODEL), counts)
    np.testing.assert_array_equal(read_counts(tmp_path / "bare.json", MODEL), counts)


def _bad(path: Path, *words: str) -> str:
    with pytest.raises(DataFileError) as info:
        read_counts(path, MODEL)
    line = info.value.one_line()
    assert "\n" not in line and str(path) in line
    for word in words:
        assert word in line, line
    return line


def test_wrong_shape(tmp_path: Path) -> None:
    _bad(write_csv(tmp_path / "rows.csv", matrix()[:-1]), "57 x 256", "58 x 256")
    _bad(write_csv(tmp_path / "cols.csv", matrix()[:, :128]), "58 x 128", "58 x 256")


def test_negative_count(tmp_path: Path) -> None:
    counts = matrix()
    counts[4, 7] = -3
    _bad(write_csv(tmp_path / "neg.csv", counts), "row 5, column 8", "-3")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    _bad(tmp_path / "empty.csv", "empty")
    (tmp_path / "empty.json").write_text("[]")
    _bad(tmp_path / "empty.json", "empty")


def test_not_numbers(tmp_path: Path) -> None:
    _bad(write_csv(tmp_path / "header.csv", matrix(), header="layer,e0,e1\n"), "line 1", "numbers")
    (tmp_path / "strings.json").write_text(json.dumps([["1", "2"]]))
    _bad(tmp_path / "strings.json", "numbers")
    (tmp_path / "bad.json").write_text("[[1, 2,")
    _bad(tmp_path / "bad.json", "malformed JSON")


def test_ragged_rows(tmp_path: Path) -> None:
    rows = [",".join(["1"] * EXPERTS)] * (LAYERS - 1) + [",".join(["1"] * (EXPERTS - 1))]
    (tmp_path / "ragged.csv").write_text("\n".join(rows))
    _bad(tmp_path / "ragged.csv", "different lengths")


def test_layer_without_tokens_and_non_finite(tmp_path: Path) -> None:
    counts = matrix()
    counts[10] = 0.0
    _bad(write_csv(tmp_path / "zero.csv", counts), "row 11", "no routed tokens")
    counts = matrix()
    counts[0, 0] = np.inf
    assert "np.float64" not in _bad(write_csv(tmp_path / "inf.csv", counts), "row 1, column 1", "inf is not")
    # every count finite but the row's sum is not: count / inf would make every share 0 (perfect balance)
    _bad(write_csv(tmp_path / "huge.csv", np.full((LAYERS, EXPERTS), 1e307)), "row 1", "largest float")


def test_an_expert_above_one_over_top_k_of_a_layer(tmp_path: Path) -> None:
    # a token picks top_k = 8 distinct experts: one expert gets at most 1/8 of a layer's copies
    counts = np.full((LAYERS, EXPERTS), 7.0)
    counts[4, 7] = 7.0 * (EXPERTS - 1) / 7.0 + 1.0   # 256 of 256 + 255 * 7: just above 1/8
    _bad(write_csv(tmp_path / "over.csv", counts), "row 5, column 8", "more than 1/top_k = 1/8")
    counts[4, 7] = 255.0                              # 255 of 8 * 255: exactly 1/8, accepted
    assert read_counts(write_csv(tmp_path / "cap.csv", counts), MODEL)[4, 7] == 255.0


def test_missing_file_and_dense_model(tmp_path: Path) -> None:
    _bad(tmp_path / "nope.csv", "cannot read")
    path = write_csv(tmp_path / "m.csv", matrix())
    with pytest.raises(DataFileError, match="no routed experts"):
        read_counts(path, catalog.model("llama-3.1-70b"))


# --------------------------------------------------------------------------- parameter file


def test_parameter_file_has_provenance() -> None:
    file = load_params_file()
    for name in ("skew", "mismatch", "drift", "dp_imbalance"):
        section = getattr(file, name)
        assert len(section.source) > 20, name
        assert section.kind in ("calibrated", "assumed", "measured", "spec"), name


# --------------------------------------------------------------------------- scenario


def _experts(**experts) -> object:
    return build_scenario(None, {"experts": experts}).experts


def test_default_is_eplb_every_minute_with_the_fitted_skew() -> None:
    e = _experts()
    assert e.balance == Policy.EPLB and e.rebalance_period_s == 60.0
    assert e.prefill.counts is None and e.decode.counts is None


def test_old_keys() -> None:
    """Files written before the per-layer model: 'skewed' reads as 'eplb', the old default ratio 30 is
    dropped (every written layout carries it), any other ratio is refused naming the key and the fix."""
    e = _experts(balance="skewed", hot_expert_ratio=30.0)
    assert e.balance == Policy.EPLB
    with pytest.raises(DataFileError) as info:
        _experts(balance="skewed", hot_expert_ratio=10.0)
    line = info.value.one_line()
    assert "hot_expert_ratio" in line and "delete the key" in line and "\n" not in line


def test_measured_needs_a_matrix(tmp_path: Path) -> None:
    """'measured' without any matrix is an error; with one pool's matrix, the other pool keeps 'eplb' on
    the fitted skew."""
    with pytest.raises(DataFileError, match="needs a measured expert-count matrix"):
        _experts(balance="measured")
    path = str(write_csv(tmp_path / "m.csv", matrix()))
    e = _experts(balance="measured", prefill_load_file=path)
    assert e.prefill.policy == Policy.MEASURED and e.prefill.counts is not None
    assert e.decode.policy == Policy.EPLB and e.decode.counts is None
    e = build_scenario(None, scenario_overrides(expert_balance="measured", prefill_expert_load=path,
                                                decode_expert_load=path)).experts
    assert e.prefill.counts is not None and e.decode.counts is not None


def test_one_matrix_for_both_pools_or_one_per_pool(tmp_path: Path) -> None:
    both = str(write_csv(tmp_path / "both.csv", matrix()))
    decode = str(write_csv(tmp_path / "decode.csv", matrix() * 2))
    e = build_scenario(None, scenario_overrides(expert_load=both, decode_expert_load=decode)).experts
    assert e.balance == Policy.MEASURED  # a matrix flag without a balance flag selects 'measured'
    np.testing.assert_array_equal(e.prefill.counts, matrix())
    np.testing.assert_array_equal(e.decode.counts, matrix() * 2)
    e = build_scenario(None, scenario_overrides(expert_load=both, expert_balance="none")).experts
    assert e.balance == Policy.NONE and e.decode.counts is not None  # the matrix replaces the fitted skew
