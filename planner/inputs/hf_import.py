"""Hugging Face ``config.json`` -> model card (dict and TOML text).

A ``config.json`` holds the architecture but not everything a card needs.  What it lacks is
filled with values that say so: the parameter counts are the planner's own derived counts,
with ``params.source`` starting "derived, not reported" (replace them with the vendor's
published figures); a missing precision is assumed bf16 and ``native_dtype_note`` says it.

Supported architectures (``architectures[0]``): DeepseekV3ForCausalLM (DeepSeek-V3/R1,
Kimi K2), Qwen3MoeForCausalLM, LlamaForCausalLM, MixtralForCausalLM, GptOssForCausalLM,
Glm4MoeForCausalLM.  Field semantics follow the Hugging Face Transformers modelling code of
each architecture (e.g. which layers are MoE, which projections carry a bias).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from planner.errors import DataFileError
from planner.inputs.files import MAX_NAME_CHARS, SCHEMA_VERSION, ModelFile, read_json, validate_data
from planner.inputs.model import ModelSpec

DERIVED_PARAMS_SOURCE = (
    "derived, not reported: config.json holds no parameter counts, so reported_total and "
    "reported_active are the planner's own derived counts; replace them with the vendor's "
    "published figures, cite them here, and set active_includes_* to the vendor's convention")
ASSUMED_DTYPE_NOTE = ("not in config.json (no quantization_config, torch_dtype or dtype): "
                      "bf16 assumed; check the checkpoint")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
# num_hidden_layers is checked before the card is built (the layer lists are built from it); the
# card's schema checks every other number.
MAX_LAYERS = 1000
# A Hugging Face cache snapshot folder: the commit hash.
_SNAPSHOT_RE = re.compile(r"^[0-9a-f]{40}$")
_TORCH_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float8_e4m3fn": "fp8"}
_QUANT_METHODS = {"fp8": "fp8", "fbgemm_fp8": "fp8", "mxfp4": "fp4"}


# --------------------------------------------------------------------------- config access


class _Config:
    """Read access to a config.json dict: missing or mistyped fields become DataFileError."""

    def __init__(self, data: dict[str, Any], where: str):
        self.data = data
        self.where = where

    def fail(self, message: str, fix: str | None = None) -> DataFileError:
        return DataFileError(message, where=self.where, fix=fix)

    def req(self, key: str) -> Any:
        """A field that must be present and not null."""
        value = self.data.get(key)
        if value is None:
            raise self.fail(f"field '{key}' is missing from config.json",
                            fix="use the model's complete Hugging Face config.json")
        return value

    def int(self, key: str, default: int | None = None) -> int:
        """An integer field; null or absent gives ``default`` (required if no default)."""
        value = self.data.get(key)
        if value is None and default is not None:
            return default
        value = self.req(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(f"field '{key}' must be a non-negative integer (got {str(value)[:40]})")
        if key == "num_hidden_layers" and not 1 <= value <= MAX_LAYERS:
            raise self.fail(f"field '{key}' = {value} is outside the plausible range 1-{MAX_LAYERS} layers "
                            "(the largest published model has 126)")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(f"field '{key}' must be true or false (got {value!r})")
        return value

    def int_list(self, key: str) -> list[int]:
        value = self.data.get(key) or []
        if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self.fail(f"field '{key}' must be a list of integers (got {value!r})")
        return value

    def head_dim(self) -> int:
        """``head_dim`` if given, else hidden_size / num_attention_heads (the HF default)."""
        if self.data.get("head_dim") is not None:
            return self.int("head_dim")
        hidden, heads = self.int("hidden_size"), self.int("num_attention_heads")
        if not heads or hidden % heads:
            raise self.fail("field 'head_dim' is missing and hidden_size is not a multiple of "
                            "num_attention_heads")
        return hidden // heads


# --------------------------------------------------------------------------- sections


def _gqa_attention(cfg: _Config, *, qkv_bias: bool, o_bias: bool, qk_norm: bool = False,
                   sinks: bool = False) -> dict[str, Any]:
    """[attention] of a multi-head / grouped-query model (no sliding window yet)."""
    heads = cfg.int("num_attention_heads")
    kv_heads = cfg.int("num_key_value_heads", heads)  # HF default: MHA
    return {"kind": "mha" if kv_heads == heads else "gqa", "num_heads": heads,
            "num_kv_heads": kv_heads, "head_dim": cfg.head_dim(), "qkv_bias": qkv_bias,
            "o_bias": o_bias, "qk_norm": qk_norm, "sinks": sinks, "q_lora_rank": 0,
            "kv_lora_rank": 0, "qk_nope_head_dim": 0, "qk_rope_head_dim": 0, "v_head_dim": 0,
            "sliding_window_tokens": 0, "sliding_layers": []}


def _mla_attention(cfg: _Config) -> dict[str, Any]:
    """[attention] of DeepSeek MLA; head_dim is v_head_dim, every head its own "KV head"."""
    heads, bias = cfg.int("num_attention_heads"), cfg.bool("attention_bias", False)
    return {"kind": "mla", "num_heads": heads, "num_kv_heads": heads,
            "head_dim": cfg.int("v_head_dim"), "qkv_bias": bias, "o_bias": bias,
            "qk_norm": False, "sinks": False, "q_lora_rank": cfg.int("q_lora_rank", 0),
            "kv_lora_rank": cfg.int("kv_lora_rank"),
            "qk_nope_head_dim": cfg.int("qk_nope_head_dim"),
            "qk_rope_head_dim": cfg.int("qk_rope_head_dim"), "v_head_dim": cfg.int("v_head_dim"),
            "sliding_window_tokens": 0, "sliding_layers": []}


def _ffn(*, dense: int = 0, dense_layers: list[int] | None = None, moe: int = 0,
         experts: int = 0, shared: int = 0, top_k: int = 0, router_bias: bool = False,
         expert_bias: bool = False) -> dict[str, Any]:
    """[ffn] with every key explicit; shared experts have the routed experts' size."""
    return {"dense_intermediate_size": dense, "dense_layers": dense_layers or [],
            "moe_intermediate_size": moe if experts else 0, "num_routed_experts": experts,
            "num_shared_experts": shared if experts else 0,
            "shared_expert_intermediate_size": moe if experts and shared else 0,
            "top_k": top_k if experts else 0, "router_bias": router_bias and bool(experts),
            "expert_bias": expert_bias and bool(experts)}


def _dense_ffn(cfg: _Config) -> dict[str, Any]:
    return _ffn(dense=cfg.int("intermediate_size"))


def _moe_ffn(cfg: _Config, dense_layers: list[int], *, experts_key: str, shared: int = 0,
             router_bias: bool = False) -> dict[str, Any]:
    """[ffn] of an MoE with a dense FFN (``intermediate_size``) on ``dense_layers``."""
    experts = cfg.int(experts_key, 0)
    if not experts:
        return _dense_ffn(cfg)
    dense = cfg.int("intermediate_size") if dense_layers else 0
    return _ffn(dense=dense, dense_layers=dense_layers, moe=cfg.int("moe_intermediate_size"),
                experts=experts, shared=shared, top_k=cfg.int("num_experts_per_tok"),
                router_bias=router_bias)


def _layer_type_indices(cfg: _Config, wanted: str) -> list[int]:
    """Indices of the layers whose ``layer_types`` entry is ``wanted``."""
    types = cfg.data.get("layer_types")
    num_layers = cfg.int("num_hidden_layers")
    if not isinstance(types, list) or len(types) != num_layers:
        raise cfg.fail(f"field 'layer_types' must list one type per layer ({num_layers})")
    return [i for i, t in enumerate(types) if t == wanted]


def _with_sliding(attention: dict[str, Any], window: int, layers: list[int]) -> dict[str, Any]:
    if window and layers:
        attention.update(sliding_window_tokens=window, sliding_layers=layers)
    return attention


# --------------------------------------------------------------------------- architectures


def _deepseek_v3(cfg: _Config) -> dict[str, Any]:
    """DeepSeek-V3/R1, Kimi K2: MLA; layer i is MoE if i >= first_k_dense_replace and
    i % moe_layer_freq == 0; e_score_correction_bias exists with topk_method noaux_tc."""
    n, first, freq = (cfg.int("num_hidden_layers"), cfg.int("first_k_dense_replace", 0),
                      cfg.int("moe_layer_freq", 1) or 1)
    dense_layers = [i for i in range(n) if i < first or i % freq]
    ffn = _moe_ffn(cfg, dense_layers, experts_key="n_routed_experts",
                   shared=cfg.int("n_shared_experts", 0),
                   router_bias=cfg.data.get("topk_method", "noaux_tc") == "noaux_tc")
    return {"attention": _mla_attention(cfg), "ffn": ffn,
            "num_mtp_layers": cfg.int("num_nextn_predict_layers", 0)}


def _qwen3_moe(cfg: _Config) -> dict[str, Any]:
    """Qwen3-MoE: per-head q/k RMSNorm; layer i is MoE unless in mlp_only_layers or
    (i + 1) % decoder_sparse_step != 0; sliding window only if use_sliding_window."""
    n, step = cfg.int("num_hidden_layers"), cfg.int("decoder_sparse_step", 1) or 1
    mlp_only = set(cfg.int_list("mlp_only_layers"))
    dense_layers = [i for i in range(n) if i in mlp_only or (i + 1) % step]
    bias = cfg.bool("attention_bias", False)
    attention = _gqa_attention(cfg, qkv_bias=bias, o_bias=bias, qk_norm=True)
    if cfg.bool("use_sliding_window", False):
        window, first = cfg.int("sliding_window", 0), cfg.int("max_window_layers", n)
        _with_sliding(attention, window, list(range(first, n)))
    return {"attention": attention, "num_mtp_layers": 0,
            "ffn": _moe_ffn(cfg, dense_layers, experts_key="num_experts")}


def _llama(cfg: _Config) -> dict[str, Any]:
    """Llama: dense gated FFN; ``attention_bias`` applies to q, k, v and o."""
    bias = cfg.bool("attention_bias", False)
    return {"attention": _gqa_attention(cfg, qkv_bias=bias, o_bias=bias),
            "ffn": _dense_ffn(cfg), "num_mtp_layers": 0}


def _mixtral(cfg: _Config) -> dict[str, Any]:
    """Mixtral: every layer MoE, ``intermediate_size`` is the expert size; no biases."""
    attention = _gqa_attention(cfg, qkv_bias=False, o_bias=False)
    n = cfg.int("num_hidden_layers")
    _with_sliding(attention, cfg.int("sliding_window", 0), list(range(n)))
    ffn = _ffn(moe=cfg.int("intermediate_size"), experts=cfg.int("num_local_experts"),
               top_k=cfg.int("num_experts_per_tok"))
    return {"attention": attention, "ffn": ffn, "num_mtp_layers": 0}


def _gpt_oss(cfg: _Config) -> dict[str, Any]:
    """gpt-oss: sinks, biased q/k/v/o, router and experts; ``layer_types`` marks sliding
    layers (HF default when absent: even layers)."""
    bias = cfg.bool("attention_bias", True)
    attention = _gqa_attention(cfg, qkv_bias=bias, o_bias=bias, sinks=True)
    if cfg.data.get("layer_types") is not None:
        sliding = _layer_type_indices(cfg, "sliding_attention")
    else:
        sliding = list(range(0, cfg.int("num_hidden_layers"), 2))
    _with_sliding(attention, cfg.int("sliding_window", 0), sliding)
    top_k = cfg.int("experts_per_token", 0) or cfg.int("num_experts_per_tok")
    ffn = _ffn(moe=cfg.int("intermediate_size"), experts=cfg.int("num_local_experts"),
               top_k=top_k, router_bias=True, expert_bias=True)
    return {"attention": attention, "ffn": ffn, "num_mtp_layers": 0}


def _glm4_moe(cfg: _Config) -> dict[str, Any]:
    """GLM-4.5: first_k_dense_replace dense layers, shared expert, e_score_correction_bias;
    ``attention_bias`` on q, k, v only (o_proj has none); optional q/k norm."""
    n, first = cfg.int("num_hidden_layers"), cfg.int("first_k_dense_replace", 0)
    attention = _gqa_attention(cfg, qkv_bias=cfg.bool("attention_bias", False), o_bias=False,
                               qk_norm=cfg.bool("use_qk_norm", False))
    ffn = _moe_ffn(cfg, list(range(min(first, n))), experts_key="n_routed_experts",
                   shared=cfg.int("n_shared_experts", 0), router_bias=True)
    return {"attention": attention, "ffn": ffn,
            "num_mtp_layers": cfg.int("num_nextn_predict_layers", 0)}


_BUILDERS: dict[str, Callable[[_Config], dict[str, Any]]] = {
    "DeepseekV3ForCausalLM": _deepseek_v3,
    "Qwen3MoeForCausalLM": _qwen3_moe,
    "LlamaForCausalLM": _llama,
    "MixtralForCausalLM": _mixtral,
    "GptOssForCausalLM": _gpt_oss,
    "Glm4MoeForCausalLM": _glm4_moe,
}
SUPPORTED_ARCHITECTURES = tuple(sorted(_BUILDERS))


# --------------------------------------------------------------------------- card assembly


def _architecture(cfg: _Config) -> str:
    """``architectures[0]``, checked against the supported list."""
    archs = cfg.req("architectures")
    arch = archs[0] if isinstance(archs, list) and archs else archs
    if not isinstance(arch, str) or arch not in _BUILDERS:
        raise cfg.fail(f"field 'architectures' is {archs!r}; the importer does not support it",
                       fix=f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    return arch


def _native_dtype(cfg: _Config) -> tuple[str, str]:
    """(native_dtype, note) from ``quantization_config``, else ``torch_dtype``/``dtype``."""
    quant = cfg.data.get("quantization_config")
    if isinstance(quant, dict):
        method = quant.get("quant_method")
        if not isinstance(method, str) or method not in _QUANT_METHODS:
            raise cfg.fail(f"field 'quantization_config.quant_method' is {method!r}, which the "
                           "importer does not map to a precision",
                           fix=f"supported: {', '.join(sorted(_QUANT_METHODS))}")
        details = [f"{k} {json.dumps(quant[k])}" for k in
                   ("fmt", "weight_block_size", "modules_to_not_convert") if k in quant]
        return _QUANT_METHODS[method], "; ".join([f"quantization_config: quant_method {method}",
                                                  *details])
    torch_dtype = cfg.data.get("torch_dtype") or cfg.data.get("dtype")
    if torch_dtype is None:
        return "bf16", ASSUMED_DTYPE_NOTE
    if torch_dtype == "float32":
        return "bf16", "config.json torch_dtype is float32: bf16 assumed for serving; check"
    if not isinstance(torch_dtype, str) or torch_dtype not in _TORCH_DTYPES:
        raise cfg.fail(f"field 'torch_dtype' is {torch_dtype!r}, not a serving precision",
                       fix=f"supported: {', '.join(sorted(_TORCH_DTYPES))}")
    return _TORCH_DTYPES[torch_dtype], ""


def _check_name(name: str, where: str) -> None:
    if not _NAME_RE.match(name):
        raise DataFileError(f"card name '{name}' is not valid (lower-case letters, digits, "
                            "'.' and '-', starting with a letter or digit)", where=where,
                            fix="pass a name such as --name my-model")


def _skeleton(cfg: _Config, name: str, arch: str, body: dict[str, Any]) -> dict[str, Any]:
    """The card with every field but [params]."""
    dtype, note = _native_dtype(cfg)
    return {"schema_version": SCHEMA_VERSION, "name": name, "display_name": name,
            "architecture": arch,
            "source": f"Hugging Face config.json '{Path(cfg.where).name}' (imported; "
                      "add the repository it comes from)",
            "native_dtype": dtype, "native_dtype_note": note,
            "num_layers": cfg.int("num_hidden_layers"), "hidden_size": cfg.int("hidden_size"),
            "vocab_size": cfg.int("vocab_size"),
            "tie_word_embeddings": cfg.bool("tie_word_embeddings", False),
            "max_position_embeddings": cfg.int("max_position_embeddings"),
            "num_mtp_layers": body["num_mtp_layers"],
            "attention": body["attention"], "ffn": body["ffn"]}


def card_from_hf_config(config: dict, *, name: str, where: str) -> dict:
    """Model card dict (the structure of ``models/*.toml``) from a HF config.json dict.

    Parameters
    ----------
    config : dict
        Parsed ``config.json``.
    name : str
        Card name (file stem): lower-case letters, digits, '.', '-'.
    where : str
        Where the config came from (path), used in error messages and the card's source.

    Returns
    -------
    dict
        A card that validates against :class:`~planner.inputs.files.ModelFile`.  Its
        ``params`` are the derived counts, marked "derived, not reported" (see module doc).

    Raises
    ------
    DataFileError
        Unsupported ``architectures``, a missing or mistyped field, an invalid name.
    """
    if not isinstance(config, dict):
        raise DataFileError("config.json must hold a JSON object", where=where)
    _check_name(name, where)
    cfg = _Config(config, where)
    arch = _architecture(cfg)
    card = _skeleton(cfg, name, arch, _BUILDERS[arch](cfg))
    card["params"] = {"source": DERIVED_PARAMS_SOURCE, "reported_total": 1e9,  # placeholders, replaced below
                      "reported_active": 1e9, "active_includes_embedding": False,
                      "active_includes_lm_head": True}
    counts = ModelSpec.from_file(validate_data(ModelFile, card, where), Path(where)).param_counts()
    card["params"].update(reported_total=counts.total, reported_active=counts.active)
    validate_data(ModelFile, card, where)
    return card


# --------------------------------------------------------------------------- TOML writer


def card_toml(card: dict) -> str:
    """Deterministic TOML text of a card dict (key order as given, by ``tomli_w``); tomllib reads
    it back to an equal dict."""
    return tomli_w.dumps(card)


# --------------------------------------------------------------------------- file import


def _read_json(path: Path) -> Any:
    return read_json(path, what="config.json", fix="give the model's config.json")


def default_name(path: Path, config: Any) -> str:
    """Card name when ``--name`` is not given: the file stem, or for ``config.json`` the model it
    belongs to -- its folder (``Qwen3-30B-A3B/config.json``; in a Hugging Face cache snapshot
    ``models--Qwen--Qwen3-30B-A3B/snapshots/<sha>/config.json``, the repository), else the config's
    ``_name_or_path``.  Lower-cased; an error asking for ``--name`` if none is a valid name."""
    candidates = [path.stem]
    if path.stem.lower() == "config":
        folders = [part for part in reversed(path.resolve().parent.parts)
                   if not _SNAPSHOT_RE.match(part) and part != "snapshots"]
        origin = config.get("_name_or_path") if isinstance(config, dict) else None
        candidates = [*folders[:1], *([origin.rstrip("/").rsplit("/", 1)[-1]] if isinstance(origin, str) else [])]
        candidates = [c.rsplit("--", 1)[-1] if c.startswith("models--") else c for c in candidates]
    for name in candidates:
        name = name.lower()
        if _NAME_RE.match(name) and len(name) <= MAX_NAME_CHARS and name != "config":
            return name
    raise DataFileError("cannot tell the model's name from the file or its folder", where=str(path),
                        fix="pass --name, e.g. --name my-model")


def import_hf_config(path: Path, *, name: str | None = None) -> tuple[dict, str]:
    """Read a HF ``config.json`` and build a model card.

    Parameters
    ----------
    path : Path
        The ``config.json`` file.
    name : str, optional
        Card name; default: :func:`default_name` (the file stem, or the folder of a config.json).

    Returns
    -------
    tuple of (dict, str)
        The card dict and its TOML text (with a header comment on what to fill in).
    """
    path = Path(path)
    config = _read_json(path)
    card = card_from_hf_config(config, name=name or default_name(path, config), where=str(path))
    header = (f"# Model card imported from {path.name} by `planner models import`.\n"
              "# [params] holds derived counts, not the vendor's reported ones: replace them\n"
              "# (and params.source) before relying on the 1% parameter-count check.\n")
    return card, header + card_toml(card)
