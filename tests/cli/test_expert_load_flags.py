"""--expert-load FILE (and the prefill / decode variants), --expert-balance, --rebalance-period-s:
a matrix the test writes is read and changes the numbers; every kind of bad file exits 2 with one
line and no traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from planner import catalog
from planner.cost.expert_load import poisson_max_excess
from planner.errors import EXIT_BAD_INPUT

EXAMPLE = "examples/deepseek-v3-h800-pd.toml"
MODEL = catalog.model("deepseek-v3")
SHAPE = (MODEL.num_moe_layers, MODEL.ffn.num_routed_experts)  # (58, 256)


def write_matrix(path: Path, counts: np.ndarray) -> str:
    path.write_text("\n".join(",".join(f"{x:g}" for x in row) for row in counts) + "\n")
    return str(path)


def evaluate(run_planner: Any, *flags: str) -> dict[str, Any]:
    run = run_planner("evaluate", EXAMPLE, *flags, "--json", "-")
    assert run.returncode == 0, run.stderr
    return run.json()


def test_a_measured_uniform_matrix_prices_like_perfect_balance(run_planner: Any, tmp_path: Path) -> None:
    """Uniform counts: the measured policy leaves only the per-step sampling noise of the busiest die,
    so each step lies between perfect balance and perfect balance with every die's expert work and
    traffic raised by that noise (the busiest of ``ep`` dies' Poisson excess at the pool's copies per
    die: prefill 16,384 tokens / 2 micro-batches x top-8, decode 64 / 2 x (1 + 1 MTP draft) x top-8),
    and below the fitted default's."""
    uniform = write_matrix(tmp_path / "uniform.csv", np.full(SHAPE, 1000.0))
    measured = evaluate(run_planner, "--expert-load", uniform)
    perfect = evaluate(run_planner, "--expert-balance", "perfect")
    fitted = evaluate(run_planner)
    copies = {"prefill": (32, 16384 / 2 * 8), "decode": (144, 64 / 2 * 2 * 8)}
    for pool, (ep, c) in copies.items():
        m, p, f = measured[pool]["step_s"], perfect[pool]["step_s"], fitted[pool]["step_s"]
        noise = poisson_max_excess(ep, np.array([c]))[0]
        assert p <= m <= p * (1 + noise), (pool, m, p, noise)
        assert m < f, (pool, m, f)
    assert measured["scenario"]["experts"]["balance"] == "measured"


def test_prefill_and_decode_matrices_apart(run_planner: Any, tmp_path: Path) -> None:
    """A skewed decode matrix (every layer sends half its copies to 8 experts) slows decode only."""
    uniform = write_matrix(tmp_path / "uniform.csv", np.full(SHAPE, 1000.0))
    skewed_counts = np.full(SHAPE, 1000.0)
    skewed_counts[:, :8] = 1000.0 * 248 / 8
    skewed = write_matrix(tmp_path / "skewed.csv", skewed_counts)
    base = evaluate(run_planner, "--expert-load", uniform)
    both = evaluate(run_planner, "--prefill-expert-load", uniform, "--decode-expert-load", skewed)
    assert both["prefill"]["step_s"] == pytest.approx(base["prefill"]["step_s"], rel=1e-9)
    assert both["decode"]["step_s"] > base["decode"]["step_s"] * 1.05


def test_rebalance_period_flag(run_planner: Any) -> None:
    short = evaluate(run_planner, "--rebalance-period-s", "0")
    long = evaluate(run_planner, "--rebalance-period-s", "600")
    assert long["decode"]["step_s"] > short["decode"]["step_s"]


def _bad(run: Any, *needles: str) -> str:
    assert run.returncode == EXIT_BAD_INPUT, (run.returncode, run.stdout[:200], run.stderr)
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _bad_files(tmp: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    rows = np.full(SHAPE, 10.0)
    negative = rows.copy()
    negative[2, 3] = -1.0
    over = rows.copy()
    over[7, 0] = 10.0 * 255 / 7 + 1.0            # just above 1/8 of the layer's copies (top-8)
    ragged = "\n".join(",".join(["1"] * (SHAPE[1] - (i == 5))) for i in range(SHAPE[0]))
    files = {
        "wrong-shape": (write_matrix(tmp / "short.csv", rows[:40]), ("40 x 256", "58 x 256")),
        "negative": (write_matrix(tmp / "negative.csv", negative), ("row 3, column 4", "non-negative")),
        "over-cap": (write_matrix(tmp / "over.csv", over), ("row 8, column 1", "more than 1/top_k")),
        "empty": ("", ("empty",)),
        "not-numbers": ("layer,count\n3,4\n", ("line 1", "numbers")),
        "ragged": (ragged, ("different lengths",)),
        "bad-json": ('{"counts": [[1, 2], "x"]}', ("array of rows of numbers",)),
    }
    out = {}
    for kind, (content, needles) in files.items():
        if isinstance(content, str) and content.startswith(str(tmp)):
            out[kind] = (Path(content), needles)
            continue
        path = tmp / (f"{kind}.json" if kind == "bad-json" else f"{kind}.csv")
        path.write_text(content)
        out[kind] = (path, needles)
    return out


@pytest.mark.parametrize("kind", ["wrong-shape", "negative", "over-cap", "empty", "not-numbers", "ragged", "bad-json"])
@pytest.mark.parametrize("flag", ["--expert-load", "--decode-expert-load"])
def test_bad_matrix_exits_2_with_one_line(run_planner: Any, tmp_path: Path, kind: str, flag: str) -> None:
    path, needles = _bad_files(tmp_path)[kind]
    _bad(run_planner("evaluate", EXAMPLE, flag, str(path)), str(path), *needles)


def test_missing_matrix_and_measured_without_one(run_planner: Any, tmp_path: Path) -> None:
    _bad(run_planner("evaluate", EXAMPLE, "--expert-load", str(tmp_path / "none.csv")), "cannot read")
    _bad(run_planner("evaluate", EXAMPLE, "--expert-balance", "measured"), "needs a measured expert-count matrix")


def test_plan_takes_the_matrix_and_reports_the_load(run_planner: Any, tmp_path: Path) -> None:
    """A small plan with a measured matrix: the JSON names the policy and carries each pool's load."""
    uniform = write_matrix(tmp_path / "uniform.csv", np.full(SHAPE, 1000.0))
    run = run_planner("plan", "--hardware", "h800", "--pods", "8", "--weights-dtype", "fp8", "--activations-dtype",
                      "fp8", "--modes", "pd", "--top", "2", "--expert-load", uniform, "--json", "-")
    assert run.returncode in (0, 3), run.stderr
    doc = run.json()
    assert doc["scenario"]["experts"]["balance"] == "measured"
    assert json.dumps(doc).count("busiest_over_mean") >= 1
