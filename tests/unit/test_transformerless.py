"""Transformerless decode step (planner/serving/transformerless.py) and its A2E/E2A (planner/xccl.py a2e).

Hand-derived values: the A2E/E2A call and link times from the profile's UB numbers (read here with
tomllib, not through the planner); a layer's pipelined time from its stage times; a whole step of a
small layout recomposed from its own parts with the link bytes computed here.  Properties: more UB
bandwidth never slows a step (and a starved link does bind); N candidates at once == N calls of one;
``planner evaluate``'s breakdown rows sum to the step and show the waiting of each stage pair.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from planner.inputs.scenario import build_scenario, scenario_overrides
from planner.serving.context import Env
from planner.serving.transformerless import (
    PAIR_EXPERTS,
    PAIR_LINKS,
    PAIR_ROUND_TRIP,
    TransformerlessArrays,
    distinct_rows,
    pipelined_layer_s,
    transformerless_step,
)
from planner.xccl import a2e

ROOT = Path(__file__).resolve().parents[2]
CM = tomllib.loads((ROOT / "hardware_profiles" / "cloudmatrix384.toml").read_text(encoding="utf-8"))
UB = next(f for f in CM["fabrics"] if f["name"] == "ub")
COPY_S = CM["collectives"]["low_latency_copy_s"]
H = 7168  # DeepSeek-V3 hidden


def _scenario():
    return build_scenario(None, scenario_overrides(model="deepseek-v3", hardware="cloudmatrix384",
                                                   weights_dtype="int8", activations_dtype="int8"))


def _arrays(cands: list[dict[str, float]]) -> TransformerlessArrays:
    names = [n for n in TransformerlessArrays.__dataclass_fields__ if n in cands[0]]
    return TransformerlessArrays(**{n: np.array([c[n] for c in cands], dtype=float) for n in names})


# a small instance: 8 attention dies in 2 domains (4 per call) and 16 expert dies (trampoline: 16 > 4)
SMALL = {"attention_dies": 8, "expert_dies": 16, "domains": 2, "tp": 1, "ep": 16, "batch": 8,
         "micro_batches": 2, "redundant": 0}


def _distinct(targets: float, picks: int) -> float:
    return targets * (1 - (1 - 1 / targets) ** picks)


# --------------------------------------------------------------------------- A2E by hand


@pytest.mark.parametrize(("A", "E"), [(4, 16), (160, 288), (480, 288)])
def test_a2e_call_and_link_times_by_hand(A: int, E: int) -> None:
    """96 tokens per attention die, top-8, int8 copies, the busiest expert die at 1.5x the mean."""
    T, k, bpc, imb, call = 96, 8, H * 1, 1.5, 4e-6
    c = _distinct(E, k)
    send_copies, recv_copies = T * c, A * T * c / E * imb
    rate = UB["bandwidth_bytes_per_s"] * 1.0 * 0.745  # A2E sends per-token messages: max_frac, no rank decay
    assert UB["efficiency"]["max_frac"] == 0.745
    stage = max(UB["latency_s"] + max(send_copies, recv_copies) * bpc / rate, max(send_copies, recv_copies) * COPY_S)
    second = max(UB["latency_s"] + recv_copies * bpc / rate, recv_copies * COPY_S) if E > A else 0.0
    hw = _scenario().hardware
    t = a2e(hw, bytes_per_copy=bpc, tokens_per_attention_die=np.array([T], float), attention_dies=np.array([A]),
            expert_dies=np.array([E]), top_k=k, call_s=call, recv_factor=imb, copy_s=COPY_S)
    assert float(t.call_s[0]) == pytest.approx(call + stage + second, rel=1e-12)
    assert float(t.attention_link_s[0]) == pytest.approx(send_copies * bpc / rate, rel=1e-12)
    assert float(t.expert_link_s[0]) == pytest.approx(recv_copies * bpc / rate, rel=1e-12)


# --------------------------------------------------------------------------- one layer by hand


@pytest.mark.parametrize(("case", "layer", "tail"), [
    # t_a, a2e, t_e, e2a, link_a, link_e, m, D
    ((1.0, 0.2, 0.3, 0.25, 0.1, 0.2, 2, 3), 2 * max(1.0, 0.1, 3 * 0.3, 1.75 / 2), 1.75 - 1.0),  # attention binds
    ((1.0, 0.2, 0.3, 0.25, 0.1, 0.5, 2, 3), 2 * 3 * 0.5, 1.75 - 1.0),  # the expert dies' links bind
    ((0.2, 0.5, 0.1, 0.6, 0.1, 0.05, 2, 1), 1.4, 1.4 - 0.6),  # the round trip binds
    ((1.0, 0.2, 0.3, 0.25, 0.1, 0.2, 1, 1), 1.75, 0.0),  # m = 1: serial, no tail
])
def test_pipelined_layer_by_hand(case, layer, tail) -> None:
    t_a, a2e_s, t_e, e2a_s, link_a, link_e, m, D = (np.array([x], float) for x in case)
    got, got_tail, pairs = pipelined_layer_s(t_a, a2e_s, t_e, e2a_s, link_a, link_e, m, D)
    assert float(got[0]) == pytest.approx(layer, rel=1e-12)
    assert float(got_tail[0]) == pytest.approx(tail, rel=1e-12)
    # the pairs rebuild the layer: m x (attention + the largest waiting)
    waiting = max(max(float(comm[0]) - float(stage[0]), 0.0) for stage, comm in pairs.values())
    assert float(got[0]) == pytest.approx(case[6] * (case[0] + waiting), rel=1e-12)


# --------------------------------------------------------------------------- a whole step


def test_small_step_recomposed_from_its_parts_with_link_bytes_by_hand() -> None:
    """step = sum over layer classes of count x layer + once-per-step costs, the MoE layer from the
    attention / expert compute the step reports, its a2e/e2a calls, and link times computed here."""
    sc = _scenario()
    env = Env.of(sc)
    step = transformerless_step(env, _arrays([SMALL]))
    m, D = SMALL["micro_batches"], SMALL["domains"]
    A_d, E = SMALL["attention_dies"] / D, SMALL["expert_dies"]
    T = SMALL["batch"] / m * (1 + env.draft_tokens)
    k = sc.model.ffn.top_k
    moe = step.layers["full-attention/moe"]
    imb = float(moe.load_ratio[0])
    c = _distinct(E, k)
    rate = UB["bandwidth_bytes_per_s"] * UB["efficiency"]["max_frac"]
    # A2E carries int8 activations, E2A bf16: each direction carries the larger (combine) side
    link_a = T * c * H * 2 / rate
    link_e = A_d * T * c / E * imb * H * 2 / rate
    t_a = sum(float(cost.time_s[0]) for n, cost in moe.ops.items() if not n.startswith("expert_die."))
    t_a += float(moe.comm["tp_allreduce_attention"][0]) if "tp_allreduce_attention" in moe.comm else 0.0
    t_e = sum(float(cost.time_s[0]) for n, cost in moe.ops.items() if n.startswith("expert_die."))
    a2e_s, e2a_s = float(moe.comm["a2e"][0]), float(moe.comm["e2a"][0])
    r = t_a + a2e_s + t_e + e2a_s
    layer = m * max(t_a, link_a, D * max(t_e, link_e), r / m)
    assert float(step.layer_s["full-attention/moe"][0]) == pytest.approx(layer, rel=1e-9)
    dense = step.layers["full-attention/dense"]
    assert float(step.layer_s["full-attention/dense"][0]) == pytest.approx(
        m * float(dense.compute_s[0] + dense.comm_s[0]), rel=1e-12)
    assert float(step.extra["pipeline_tail"][0]) == pytest.approx(r - max(t_a, a2e_s, t_e, e2a_s), rel=1e-9)
    total = sum(float(step.layer_s[n][0]) * step.layer_counts[n] for n in step.layer_s)
    total += sum(float(v[0]) for v in step.extra.values())
    assert float(step.step_s[0]) == pytest.approx(total, rel=1e-12)


def _with_ub_bandwidth(sc, factor: float):
    fabrics = tuple(replace(f, bandwidth_bytes_per_s=f.bandwidth_bytes_per_s * factor) if f.name == "ub" else f
                    for f in sc.hardware.fabrics)
    return replace(sc, hardware=replace(sc.hardware, fabrics=fabrics))


XDS = {"attention_dies": 480, "expert_dies": 288, "domains": 3, "tp": 1, "ep": 288, "batch": 96,
       "micro_batches": 2, "redundant": 288, "shared_replicas": 32}


def test_more_ub_bandwidth_never_slows_and_a_starved_link_binds() -> None:
    sc = _scenario()
    cands = [SMALL, XDS, {**XDS, "micro_batches": 1, "batch": 48}, {**SMALL, "domains": 1, "micro_batches": 4}]
    steps = [transformerless_step(Env.of(_with_ub_bandwidth(sc, f)), _arrays(cands)).step_s
             for f in (1e-3, 1e-2, 0.1, 1.0, 10.0)]
    for slow, fast in zip(steps, steps[1:], strict=False):
        assert np.all(fast <= slow * (1 + 1e-12)), (slow, fast)
    # at 1/1000 of the UB bandwidth the links bind: the step is slower than at the real bandwidth
    assert np.all(steps[0] > steps[3])


def test_vector_equals_scalar_over_mixed_transformerless_candidates() -> None:
    env = Env.of(_scenario())
    cands = [SMALL, XDS, {**XDS, "micro_batches": 1, "batch": 48}, {**SMALL, "domains": 1, "micro_batches": 4},
             {**SMALL, "attention_dies": 32, "domains": 1}]  # 32 attention dies, 16 expert dies: no trampoline
    cands = [{**c, "shared_replicas": c.get("shared_replicas", 0)} for c in cands]
    vec = transformerless_step(env, _arrays(cands))
    for i, cand in enumerate(cands):
        one = transformerless_step(env, _arrays([cand]))
        np.testing.assert_allclose(vec.step_s[i], one.step_s[0], rtol=1e-12, atol=0, err_msg=str(cand))
        assert vec.fits[i] == one.fits[0] and vec.max_batch[i] == one.max_batch[0]


# --------------------------------------------------------------------------- planner evaluate


def test_evaluate_breakdown_sums_to_the_step_and_shows_the_waiting(run_planner) -> None:
    example = "examples/deepseek-v3-cloudmatrix384-transformerless.toml"
    layout = tomllib.loads((ROOT / example).read_text(encoding="utf-8"))
    run = run_planner("evaluate", example, "--json", "-")
    assert run.returncode == 0, run.stderr
    dec = json.loads(run.stdout)["decode"]
    bd = dec["breakdown"]
    assert bd["overlap_discipline"] == "transformerless-pipeline"
    total = sum(layer["layer_s"] * layer["count"] for layer in bd["layers"].values()) + sum(bd["per_step"].values())
    assert total == pytest.approx(dec["step_s"], rel=1e-12)
    moe = bd["layers"]["full-attention/moe"]
    assert set(moe["stage_pairs"]) == {PAIR_LINKS, PAIR_EXPERTS, PAIR_ROUND_TRIP}
    stage = {p["stage_s"] for p in moe["stage_pairs"].values()}
    assert len(stage) == 1  # every pair's stage is the attention of one micro-batch
    waiting = max(p["waiting_s"] for p in moe["stage_pairs"].values())
    assert moe["layer_s"] == pytest.approx(layout["decode"]["micro_batches"] * (stage.pop() + waiting), rel=1e-12)
    table = run_planner("evaluate", example)
    assert "pair: attention || expert dies' turn" in table.stdout and "transformerless-pipeline" in table.stdout


def test_distinct_rows_is_the_row_grouping_of_np_unique() -> None:
    """distinct_rows gives np.unique(rows, axis=0)'s first indices and inverse (same order of distinct rows),
    with a float, an integer-valued and a boolean column; and with enough columns to need re-coding."""
    rng = np.random.default_rng(7)
    n = 5000
    cols = [rng.integers(1, 9, n).astype(float), rng.integers(0, 40, n) * 0.5, rng.random(n) > 0.5]
    _, first, inverse = np.unique(np.stack(cols, 1), axis=0, return_index=True, return_inverse=True)
    got_first, got_inverse = distinct_rows(*cols)
    assert np.array_equal(got_first, first) and np.array_equal(got_inverse, inverse.reshape(-1))
    wide = [rng.random(300) for _ in range(8)]  # 300^8 > 2^62: the key is re-coded on the way
    _, first, inverse = np.unique(np.stack(wide, 1), axis=0, return_index=True, return_inverse=True)
    got_first, got_inverse = distinct_rows(*wide)
    assert np.array_equal(got_first, first) and np.array_equal(got_inverse, inverse.reshape(-1))
