"""The collocated (chunked-prefill) step is load-consistent: hand-derived fixed point and monotonicity.

A share ``f = b mu N / (L C)`` of the steps carries a chunk of ``C`` prompt tokens per die
(planner.goodput.chunk_fraction), so the mean step is ``plain + f (chunk - plain)``; the decode
pool settles where Little's law meets that step.  Checked here on the shipped collocated example
against the two steps priced independently by planner.serving.decode.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from planner import goodput as gp
from planner.evaluate import (
    curve_batches,
    decode_knobs,
    evaluate,
    layout_goodput,
    load_point,
    tpot_slo_statistic_s,
)
from planner.inputs.layout import load_layout
from planner.inputs.scenario import ScenarioFile, build_scenario
from planner.modes.collocated import collocated_step
from planner.modes.pd import step_arrays
from planner.serving.context import Env
from planner.serving.decode import DecodeArrays, shared_decode_step

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "llama-3.1-70b-h100-collocated.toml"


def _scenario():
    data = tomllib.loads(EXAMPLE.read_text())["scenario"]
    return build_scenario(ScenarioFile.model_validate(data), {}, str(EXAMPLE))


def _layout(**decode):
    lay = load_layout(EXAMPLE)
    return lay if not decode else lay.model_copy(update={"decode": lay.decode.model_copy(update=decode)})


def _steps(env: Env, knobs: dict[str, float], batch: float) -> tuple[float, float]:
    """(step without a chunk, step with the layout's chunk) at ``batch``, from the pd step model."""
    k = {name: np.array([v]) for name, v in knobs.items()} | {"batch": np.array([batch])}
    chunk = shared_decode_step(env, step_arrays(k)).step_s[0]
    plain = shared_decode_step(env, step_arrays(k | {"prefill_chunk_tokens": np.array([0.0])})).step_s[0]
    return float(plain), float(chunk)


def test_fixed_point_by_hand():
    """At a batch b on the TPOT grid, the rate lambda = A b / (L TPOT(b)) settles exactly at b, with
    TPOT(b) = plain + (b N / (L C)) (chunk - plain); prefill service = N / (tp C) chunk steps."""
    sc, lay = _scenario(), _layout()
    ev = evaluate(lay, sc)
    d, w = lay.decode, sc.workload
    knobs = decode_knobs(lay)
    b = 16.0  # a point of the TPOT curve's grid (the search's batches up to 32), where it is exact
    assert np.isclose(curve_batches(lay), b, rtol=0, atol=1e-12).any()
    plain, chunk = _steps(ev.env, knobs, b)
    f = b * w.input_tokens / (w.output_tokens * d.prefill_chunk_tokens)  # 2048 / (256 * 512) = 1/64 per sequence
    assert f == pytest.approx(16 / 64)
    tpot = plain + f * (chunk - plain)
    rate = d.instances * d.dies * b / (w.output_tokens * tpot)
    point = load_point(ev, rate)
    assert point.decode_batch_per_die == pytest.approx(b, rel=1e-9)
    assert point.tpot_mean_s == pytest.approx(tpot, rel=1e-9)
    # the layout's own step is the same mix at its full batch: f = 32 / 64
    plain_b, chunk_b = _steps(ev.env, knobs, float(d.batch))
    assert float(ev.decode.step_s[0]) == pytest.approx(plain_b + 0.5 * (chunk_b - plain_b), rel=1e-12)
    # prefill: 2048 tokens over tp 2 x 512 per step = 2 chunk steps per request, one token stream per TP
    # group (4 instances of one group); the step boundaries: the step without a chunk, plus the stream's
    # utilization rate x 2 chunk steps / 4 times the rest of a chunk step
    ttft = point.ttft[0]
    assert ttft.prefill_s == pytest.approx(2 * chunk_b, rel=1e-12)
    rho = rate * 2 * chunk_b / d.instances
    assert 0 < rho < 1
    assert ttft.step_boundary_s == pytest.approx(plain_b + rho * (chunk_b - plain_b), rel=1e-12)


def test_chunk_share_by_hand():
    """Past f = 1 every step carries a chunk (prefill saturates); g groups stepping together wait for any."""
    f = gp.chunk_fraction(np.array([8.0, 64.0, 64.0, 8.0]), np.array([512.0, 512.0, 0.0, 512.0]),
                          groups=np.array([1.0, 1.0, 1.0, 4.0]), new_tokens=2048.0, output_tokens=256.0,
                          tokens_per_step=1.0)
    # 8 * 2048 / (256 * 512) = 0.125; 64 -> 1.0 capped; no chunk; 1 - 0.875^4 = 0.41381836
    assert f.tolist() == pytest.approx([0.125, 1.0, 0.0, 0.41381836])


def test_higher_rate_never_lowers_tpot():
    sc, lay = _scenario(), _layout()
    ev = evaluate(lay, sc)
    cap = layout_goodput(ev).decode_capacity_requests_per_s
    points = [load_point(ev, r) for r in np.linspace(0.05, 0.999, 12) * cap]
    mean = [p.tpot_mean_s for p in points]
    p99 = [next(q.value_s for q in p.tpot if q.percentile == 99.0) for p in points]
    assert np.all(np.diff(mean) >= -1e-12), mean
    assert np.all(np.diff(p99) >= -1e-12), p99


@pytest.mark.parametrize("chunk", [256, 512, 2048])
def test_more_bandwidth_never_slows(chunk: int):
    """More HBM bandwidth: the mean collocated step, the chunk step and the SLO's TPOT statistic never grow."""
    sc, lay = _scenario(), _layout(prefill_chunk_tokens=chunk)
    out = []
    for factor in (1.0, 1.5, 2.0, 4.0):
        mem = sc.hardware.memory
        faster = replace(sc, hardware=replace(sc.hardware, memory=replace(
            mem, hbm_bandwidth_bytes_per_s=mem.hbm_bandwidth_bytes_per_s * factor)))
        ev = evaluate(lay, faster)
        tpot = float(ev.decode.step_s[0])
        out.append((tpot, float(ev.decode.chunk_step_s[0]), tpot_slo_statistic_s(ev, tpot)))
    for column in zip(*out, strict=True):
        assert np.all(np.diff(column) <= 1e-12), (chunk, column)


def test_vector_equals_scalar():
    """Rows priced together (the plain step is priced once per run of rows that differ only in the chunk)
    give what each row gives alone, breakdown included."""
    sc = _scenario()
    env = Env.of(sc)
    rows = [dict(dies=2.0, tp=2.0, batch=32.0, chunk=c) for c in (256.0, 512.0, 2048.0)]
    rows += [dict(dies=4.0, tp=4.0, batch=16.0, chunk=c) for c in (512.0, 1024.0)] + [dict(dies=2.0, tp=2.0,
                                                                                           batch=32.0, chunk=512.0)]

    def arrays(rs):
        return DecodeArrays(dies=np.array([r["dies"] for r in rs]), tp=np.array([r["tp"] for r in rs]),
                            ep=np.ones(len(rs)), batch=np.array([r["batch"] for r in rs]),
                            micro_batches=np.ones(len(rs)), redundant=np.zeros(len(rs)),
                            chunk_tokens=np.array([r["chunk"] for r in rs]))

    together = collocated_step(env, arrays(rows))
    for i, r in enumerate(rows):
        alone = collocated_step(env, arrays([r]))
        assert together.step_s[i] == pytest.approx(alone.step_s[0], rel=1e-12)
        assert together.plain_step_s[i] == pytest.approx(alone.plain_step_s[0], rel=1e-12)
        for name, layer in alone.layers.items():
            for op, cost in layer.ops.items():
                assert together.layers[name].ops[op].time_s[i] == pytest.approx(cost.time_s[0], rel=1e-12)


def _chunk_and_plain_layer(env: Env, tp: float, batch: float, chunk: float, cls: str = "full-attention/dense"):
    """Layer class ``cls``'s ops in a step with a chunk of ``chunk`` tokens per die, and without."""
    def layer(c):
        d = DecodeArrays(dies=np.array([tp]), tp=np.array([tp]), ep=np.array([1.0]), batch=np.array([batch]),
                         micro_batches=np.array([1.0]), redundant=np.array([0.0]), chunk_tokens=np.array([c]))
        return shared_decode_step(env, d).layers[cls].ops
    return layer(chunk), layer(0.0)


def test_chunk_tokens_go_through_the_attention_projections():
    """A step carrying a chunk packs its C tokens per die with the b decode tokens into the q/k/v
    and o projections (as into the FFN): Llama-3.1-70B (h 8192, 64 q / 8 KV heads of 128) at
    tp 2 runs 2 (b + C) tokens through a die's [h x (32 + 2 x 4) 128] qkv and [32 x 128 x h] o
    slices, 2 x 2 (b + C) x 8192 x 5120 and 2 x 2 (b + C) x 4096 x 8192 FLOPs; the decode core
    (over the cached context) is the plain step's.  Before the fix the chunk's projections were
    dropped: 2 x 2 b x ... FLOPs."""
    env = Env.of(_scenario())
    b, c = 32.0, 512.0
    chunk, plain = _chunk_and_plain_layer(env, 2.0, b, c)
    assert float(chunk["qkv_proj"].flops[0]) == pytest.approx(2 * 2 * (b + c) * 8192 * 5120, rel=1e-12)
    assert float(chunk["o_proj"].flops[0]) == pytest.approx(2 * 2 * (b + c) * 4096 * 8192, rel=1e-12)
    assert float(plain["qkv_proj"].flops[0]) == pytest.approx(2 * 2 * b * 8192 * 5120, rel=1e-12)
    assert float(chunk["core"].flops[0]) == float(plain["core"].flops[0])
    assert float(chunk["ffn_gate_up"].flops[0]) / float(plain["ffn_gate_up"].flops[0]) == pytest.approx((b + c) / b)


def test_mla_chunk_tokens_go_through_the_projections_not_the_absorbed_core():
    """MLA (DeepSeek-V3, h 7168, q_lora 1536, kv_lora 512 + rope 64, 128 heads): the chunk's tokens
    go through q_a [h x 1536], kv_a [h x 576] and o_proj [128 x 128 x h]; the absorbed W_UK / W_UV
    and the latent core serve the decode queries only (the chunk attends via prefill_core and
    prefill_kv_b_proj).  The default scenario drafts one MTP token: 2 decode tokens per sequence."""
    sc = build_scenario(None, {"model": "deepseek-v3", "hardware": "h800", "dies": 8}, "test")
    env = Env.of(sc)
    assert env.draft_tokens == 1
    b, c = 16.0, 1024.0
    m = 2 * b + c
    chunk, plain = _chunk_and_plain_layer(env, 1.0, b, c, "full-attention/moe")
    assert float(chunk["q_a_proj"].flops[0]) == pytest.approx(2 * m * 7168 * 1536, rel=1e-12)
    assert float(chunk["kv_a_proj"].flops[0]) == pytest.approx(2 * m * 7168 * 576, rel=1e-12)
    assert float(chunk["o_proj"].flops[0]) == pytest.approx(2 * m * 128 * 128 * 7168, rel=1e-12)
    for name in ("absorb_uk", "core", "absorb_uv"):
        assert float(chunk[name].flops[0]) == float(plain[name].flops[0])
    assert {"prefill_core", "prefill_kv_b_proj"} <= set(chunk)
