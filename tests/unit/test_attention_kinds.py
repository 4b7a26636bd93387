"""The attention-kind registry covers the model-card schema, and each kind keeps its contract."""

from __future__ import annotations

import numpy as np
import pytest

from planner import catalog
from planner.attention.gqa import GqaAttention
from planner.attention.mla import MlaAttention
from planner.attention.registry import KINDS
from planner.inputs.files import AttentionKind


def test_every_schema_kind_has_a_class():
    assert set(KINDS) == {k.value for k in AttentionKind}


@pytest.mark.parametrize(("name", "cls"), [("deepseek-v3", MlaAttention), ("kimi-k2", MlaAttention),
                                           ("llama-3.1-70b", GqaAttention), ("gpt-oss-120b", GqaAttention)])
def test_cards_get_their_kind(name, cls):
    spec = catalog.model(name)
    assert type(spec.attention) is cls
    assert spec.attention.hidden == spec.hidden


def test_only_mla_makes_decode_tp_useless():
    # MLA: every TP rank reads the whole 576-element latent, so TP adds communication only.
    assert not catalog.model("deepseek-v3").attention.decode_tp_useful
    assert catalog.model("llama-3.1-70b").attention.decode_tp_useful


@pytest.mark.parametrize("name", ["deepseek-v3", "llama-3.1-70b", "qwen3-235b-a22b"])
def test_per_die_weights_at_tp_1_are_the_layer(name):
    a = catalog.model(name).attention
    assert a.params_per_die(np.array([1.0]))[0] == a.params_per_layer()


def test_mla_cache_per_die_sequence_grows_with_tp():
    # 576 elements * 2 B = 1152 B per token read at any tp; a die holds the whole latent of the
    # TP group's tp x more sequences: 8 * 1152 = 9216 B per token of each of its own.
    from planner.cost.precision import BytesPerElement

    by = BytesPerElement.of(catalog.hardware("cloudmatrix384"), "int8", "int8", "bf16")
    a = catalog.model("deepseek-v3").attention
    assert a.kv_bytes_per_token_per_die(by, np.array([8.0]))[0] == 1152
    assert a.kv_cache_bytes_per_token(by, np.array([8.0]))[0] == 9216
