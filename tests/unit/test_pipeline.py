"""Pipeline stages (dense models): memory, the once-per-round costs, the chunk bubble, the layout key.

Each expected value is worked by hand from the model card and the profile TOML (read with
tomllib, not through the planner), following planner/serving/pipeline.py's docstring:
a die holds 1/pp of the layers and the larger of embedding / LM head; a round is the TP group's
step plus ``pp - 1`` peer-to-peer sends of every token's hidden state (bf16), ``pp - 1`` LM
heads and the slowest stage's extra layers (``ceil(L / pp)`` of them); a chunk in any of the
``pp`` micro-batches holds up the round.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from planner import goodput as gp
from planner.errors import PlannerError
from planner.inputs.layout import check_layout, parse_layout
from planner.inputs.scenario import build_scenario, scenario_overrides
from planner.modes.collocated import collocated_step
from planner.serving.context import Env
from planner.serving.decode import DecodeArrays, decode_memory, shared_decode_step
from planner.serving.prefill import PrefillArrays, prefill_step

ROOT = Path(__file__).resolve().parents[2]


def _toml(kind: str, name: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / kind / f"{name}.toml").read_text(encoding="utf-8"))


def _one(x: float) -> np.ndarray:
    return np.array([float(x)])


def _env(model: str = "llama-3.1-405b", hardware: str = "h200") -> Env:
    sc = build_scenario(None, scenario_overrides(model=model, hardware=hardware, weights_dtype="fp8",
                                                 activations_dtype="fp8", kv_dtype="fp8", mtp_acceptance=0.0))
    return Env.of(sc)


def _decode(tp: int, pp: int | None, batch: int = 16, chunk: int = 0) -> DecodeArrays:
    stages = 1 if pp is None else pp
    return DecodeArrays(dies=_one(tp * stages), tp=_one(tp), ep=_one(1), batch=_one(batch), micro_batches=_one(1),
                        redundant=_one(0), chunk_tokens=_one(chunk), pp=None if pp is None else _one(pp))


def test_a_die_holds_half_the_layers_and_the_larger_end_at_two_stages() -> None:
    """Llama-3.1-405B at TP4, FP8 weights, bf16 embedding/head (model card numbers):

    per layer: q, o = h^2 each; k, v = h * kv_heads * head_dim each; gate/up/down = 3 h I;
    126 layers / (tp 4 * pp 2) per die, 1 byte each; embedding = head = V h, 2 bytes, / tp;
    one stage holds both ends, two stages the larger one (equal here: untied)."""
    card = _toml("models", "llama-3.1-405b")
    h, inter = card["hidden_size"], card["ffn"]["dense_intermediate_size"]
    layers, vocab = card["num_layers"], card["vocab_size"]
    kv = card["attention"]["num_kv_heads"] * card["attention"]["head_dim"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter
    env = _env()
    one, _ = decode_memory(env, _decode(4, None), _one(1.0))
    two, _ = decode_memory(env, _decode(4, 2), _one(1.0))
    layer_bytes = float(two["weights_attention"][0] + two["weights_dense_ffn"][0])
    assert layer_bytes == pytest.approx(layers * per_layer / 8, rel=1e-4)  # layer norms: ~1e-5 of a layer
    assert float(one["weights_attention"][0] + one["weights_dense_ffn"][0]) == pytest.approx(2 * layer_bytes,
                                                                                            rel=1e-12)
    assert float(one["weights_embedding_head"][0]) == pytest.approx(2 * vocab * h * 2 / 4, rel=1e-12)
    assert float(two["weights_embedding_head"][0]) == pytest.approx(vocab * h * 2 / 4, rel=1e-12)
    # the KV a die holds per sequence is the TP group's: pp times the sequences, 1/pp of the layers
    assert float(two["kv_cache"][0]) == float(one["kv_cache"][0])


def test_one_stage_is_the_step_without_the_key_bit_for_bit() -> None:
    env = _env()
    for chunk in (0, 1024):
        a = shared_decode_step(env, _decode(8, None, chunk=chunk))
        b = shared_decode_step(env, _decode(8, 1, chunk=chunk))
        assert a.step_s.tobytes() == b.step_s.tobytes()
        assert set(a.extra) == set(b.extra)  # no pipeline parts at one stage
    p = dict(dies=_one(8), tp=_one(8), ep=_one(1), batch_tokens=_one(8192), micro_batches=_one(1), redundant=_one(0))
    assert prefill_step(env, PrefillArrays(**p)).step_s.tobytes() == \
        prefill_step(env, PrefillArrays(**p, pp=_one(1))).step_s.tobytes()


def test_two_stages_in_one_server_add_one_nvlink_send_and_one_lm_head() -> None:
    """TP4 PP2 on one 8-GPU H200 server, 16 sequences per die, no chunk: the round is the TP4 group's
    step + one send of 4 * 16 tokens * 16384 * 2 B = 2,097,152 B over NVLink
    (p2p call 10 us + hop 0.6 us + bytes / (450 GB/s * 0.825)) + one LM head."""
    prof = _toml("hardware_profiles", "h200")
    nvlink = next(f for f in prof["fabrics"] if f["name"] == "nvlink")
    send_s = (prof["collectives"]["p2p_s"] + nvlink["latency_s"]
              + 4 * 16 * 16384 * 2 / (nvlink["bandwidth_bytes_per_s"] * nvlink["efficiency"]["max_frac"]))
    env = _env()
    tp4 = shared_decode_step(env, _decode(4, None))
    pp2 = shared_decode_step(env, _decode(4, 2))
    assert float(pp2.extra["pipeline_sends"][0]) == pytest.approx(send_s, rel=1e-9)
    assert float(pp2.extra["pipeline_last_stage"][0]) == pytest.approx(float(tp4.extra["lm_head"][0]), rel=1e-12)
    assert float(pp2.step_s[0] - tp4.step_s[0]) == pytest.approx(send_s + float(tp4.extra["lm_head"][0]), rel=1e-9)


def test_a_pipeline_over_two_servers_sends_once_over_infiniband() -> None:
    """TP8 PP2 on 16 H100 (two 8-GPU servers): the stage boundary is the server boundary, so the
    one send crosses InfiniBand: p2p call + 5 us hop + bytes / (50 GB/s * 0.911); TP8 PP4: three
    boundaries, of which ceil(32 / 8) - 1 = 3 cross servers."""
    prof = _toml("hardware_profiles", "h100")
    ib = next(f for f in prof["fabrics"] if f["name"] == "infiniband")
    nbytes = 8 * 16 * 16384 * 2
    send_s = (prof["collectives"]["p2p_s"] + ib["latency_s"]
              + nbytes / (ib["bandwidth_bytes_per_s"] * ib["efficiency"]["max_frac"]))
    env = _env(hardware="h100")
    two = shared_decode_step(env, _decode(8, 2))
    four = shared_decode_step(env, _decode(8, 4))
    assert float(two.extra["pipeline_sends"][0]) == pytest.approx(send_s, rel=1e-9)
    assert float(four.extra["pipeline_sends"][0]) == pytest.approx(3 * send_s, rel=1e-9)
    # four stages of Llama-3.1-405B's 126 layers: 32, 32, 31, 31; the round takes 4 x 32 layers'
    # time, 128 / 126 of the group's, plus three LM heads
    group = shared_decode_step(env, _decode(8, None))
    layers_s = float(group.step_s[0]) - sum(float(v[0]) for v in group.extra.values())
    assert float(four.extra["pipeline_last_stage"][0]) == pytest.approx(
        3 * float(group.extra["lm_head"][0]) + (4 * 32 / 126 - 1) * layers_s, rel=1e-9)
    assert float(two.extra["pipeline_last_stage"][0]) == pytest.approx(float(group.extra["lm_head"][0]), rel=1e-9)


def test_a_chunk_in_any_micro_batch_holds_up_the_round() -> None:
    """Collocated, TP4 PP2, 1,024-token chunks: each micro-batch carries a chunk in a share f of
    its rounds (planner.goodput.chunk_fraction with one group), and the round is the chunk step
    whenever either does: the mixed step's chunk share is 1 - (1 - f)^2."""
    env = _env()
    d = _decode(4, 2, batch=16, chunk=1024)
    f1 = float(gp.chunk_fraction(d.batch, d.chunk_tokens, groups=np.ones(1), new_tokens=env.new_input_tokens,
                                 output_tokens=env.output_tokens, tokens_per_step=env.tokens_per_step)[0])
    step = collocated_step(env, d)
    assert 0.0 < f1 < 1.0
    assert float(step.chunk_fraction[0]) == pytest.approx(1 - (1 - f1) ** 2, rel=1e-12)


def _layout(mode: str, decode: dict[str, Any]) -> dict[str, Any]:
    return {"mode": mode, "decode": {"instances": 1, "tp": 4, "batch": 8, "micro_batches": 1, **decode}}


@pytest.mark.parametrize(("model", "data", "needle"), [
    ("deepseek-v3", _layout("pd", {"dies": 8, "pp": 2, "tp": 1, "ep": 8}), "'decode.pp' = 2 but pipeline"),
    ("llama-3.1-405b", _layout("collocated", {"dies": 8, "pp": 4, "prefill_chunk_tokens": 512}),
     "'decode.pp' = 4 with tp = 4: tp x pp does not divide"),
])
def test_impossible_pipelines_are_refused_naming_the_key(model: str, data: dict[str, Any], needle: str) -> None:
    from planner import catalog

    layout = parse_layout(data, "t.toml")
    with pytest.raises(PlannerError) as err:
        check_layout(layout, catalog.model(model), "t.toml")
    assert needle in str(err.value)


def test_transformerless_has_no_pp_key_and_an_unset_pp_is_one() -> None:
    data = {"mode": "transformerless", "decode": {"instances": 1, "attention_dies": 8, "expert_dies": 8,
                                                  "domains": 1, "tp": 1, "ep": 8, "batch": 8, "pp": 2}}
    with pytest.raises(PlannerError) as err:
        parse_layout(data, "t.toml")
    assert "'decode.pp' is not a transformerless key" in str(err.value)
    lay = parse_layout(_layout("pd", {"dies": 4}), "t.toml")
    assert lay.decode.pp is None and lay.decode.stages == 1 and "pp" not in lay.to_dict()["decode"]


def test_the_kv_hand_off_uses_every_stage_s_links() -> None:
    """pd, Llama-3.1-70B on one 8-GPU H100 server: prefill TP2 x PP2 (4 dies), decode TP4 (4 dies).
    Each prefill die holds its TP rank's KV heads of its stage's layers and sends them on its own
    NVLink, so a 4,096-token prompt's KV (80 layers x 8 KV heads x 128 x 2 x 1 B = 163,840 B per
    token, FP8) moves over min(2 x 2, 4) = 4 links: p2p call + hop + bytes / 4 / (450 GB/s x 0.825),
    not over one stage's 2."""
    from planner.evaluate import evaluate, layout_goodput

    prof = _toml("hardware_profiles", "h100")
    nvlink = next(f for f in prof["fabrics"] if f["name"] == "nvlink")
    card = _toml("models", "llama-3.1-70b")
    kv_bytes = 4096 * card["num_layers"] * 8 * 128 * 2 * 1

    def handoff_s(links: int) -> float:
        return (prof["collectives"]["p2p_s"] + nvlink["latency_s"]
                + kv_bytes / links / (nvlink["bandwidth_bytes_per_s"] * nvlink["efficiency"]["max_frac"]))

    sc = build_scenario(None, scenario_overrides(model="llama-3.1-70b", hardware="h100", dies=8, weights_dtype="fp8",
                                                 activations_dtype="fp8", kv_dtype="fp8", mtp_acceptance=0.0,
                                                 input_tokens=4096))
    lay = parse_layout({"mode": "pd", "prefill": {"instances": 1, "dies": 4, "tp": 2, "pp": 2, "batch_tokens": 8192},
                        "decode": {"instances": 1, "dies": 4, "tp": 4, "batch": 32}}, "test")
    g = layout_goodput(evaluate(lay, sc))
    assert g.ttft_breakdown.kv_transfer_s == pytest.approx(handoff_s(4), rel=1e-9)
    assert g.ttft_breakdown.kv_transfer_s < 0.6 * handoff_s(2)
