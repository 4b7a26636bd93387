"""ModelSpec: a model card as plain values, with parameter counts derived from its fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.attention.base import Attention
from planner.attention.registry import attention_of
from planner.inputs.files import ModelFile, load_file, plain


@dataclass(frozen=True, slots=True, kw_only=True)
class ParamCounts:
    """Parameter counts of a model (elements, not bytes)."""

    total: float
    active: float
    mtp: float
    embedding: float
    lm_head: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FfnShape:
    """The FFN of a model card: dense intermediate size and, for an MoE, its experts."""

    dense_intermediate_size: int
    dense_layers: tuple[int, ...]
    moe_intermediate_size: int
    num_routed_experts: int
    num_shared_experts: int
    shared_expert_intermediate_size: int
    top_k: int
    router_bias: bool
    expert_bias: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportedParams:
    """Parameter counts as the vendor reports them, and what its active count includes."""

    reported_total: float
    reported_active: float
    active_includes_embedding: bool
    active_includes_lm_head: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """One model card (see models/*.toml), as plain values.

    ``attention`` is the attention-kind object (:mod:`planner.attention`); sliding-window
    layers are a layer pattern of the model, whatever the kind.
    """

    name: str
    display_name: str
    path: Path
    native_dtype: str
    num_layers: int
    hidden: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    num_mtp_layers: int
    attention: Attention
    sliding_window_tokens: int
    sliding_layers: tuple[int, ...]
    ffn: FfnShape
    reported: ReportedParams
    _file: ModelFile = field(repr=False, compare=False)

    @classmethod
    def from_file(cls, file: ModelFile, path: Path) -> ModelSpec:
        """Plain values of a validated model card."""
        a, f, p = file.attention, file.ffn, file.params
        return cls(
            name=file.name, display_name=file.display_name, path=path, native_dtype=file.native_dtype,
            num_layers=file.num_layers, hidden=file.hidden_size, vocab_size=file.vocab_size,
            tie_word_embeddings=file.tie_word_embeddings, max_position_embeddings=file.max_position_embeddings,
            num_mtp_layers=file.num_mtp_layers, attention=attention_of(a, file.hidden_size),
            sliding_window_tokens=a.sliding_window_tokens, sliding_layers=tuple(a.sliding_layers),
            ffn=plain(FfnShape, f, dense_layers=tuple(f.dense_layers)), reported=plain(ReportedParams, p),
            _file=file,
        )

    def document(self) -> dict[str, Any]:
        """The validated model card as a JSON-ready dict (for ``models show`` and reports)."""
        return self._file.model_dump(mode="json")

    # ---------------------------------------------------------------- shape helpers
    @property
    def is_moe(self) -> bool:
        return self.ffn.num_routed_experts > 0

    @property
    def num_dense_layers(self) -> int:
        """Layers with a dense FFN (all of them for a dense model)."""
        return len(self.ffn.dense_layers) if self.is_moe else self.num_layers

    @property
    def num_moe_layers(self) -> int:
        return self.num_layers - self.num_dense_layers

    @property
    def num_sliding_layers(self) -> int:
        return len(self.sliding_layers)

    # ---------------------------------------------------------------- parameter counts
    def dense_ffn_params(self) -> int:
        """Gated FFN (gate, up, down) of one dense layer."""
        return 3 * self.hidden * self.ffn.dense_intermediate_size

    def expert_params(self) -> int:
        """One routed expert (gate, up, down, and biases if the card has them)."""
        f, h = self.ffn, self.hidden
        bias = (2 * f.moe_intermediate_size + h) if f.expert_bias else 0
        return 3 * h * f.moe_intermediate_size + bias

    def shared_expert_params(self) -> int:
        """All shared experts of one MoE layer."""
        f = self.ffn
        return f.num_shared_experts * 3 * self.hidden * f.shared_expert_intermediate_size

    def router_params(self) -> int:
        f = self.ffn
        return self.hidden * f.num_routed_experts + (f.num_routed_experts if f.router_bias else 0)

    def moe_layer_params(self) -> int:
        f = self.ffn
        return self.router_params() + f.num_routed_experts * self.expert_params() + self.shared_expert_params()

    def moe_layer_active_params(self) -> int:
        f = self.ffn
        return self.router_params() + f.top_k * self.expert_params() + self.shared_expert_params()

    def layer_norm_params(self) -> int:
        """Pre-attention and pre-FFN RMSNorm weights of one layer."""
        return 2 * self.hidden

    def mtp_layer_params(self) -> int:
        """One DeepSeek-style MTP module: a full MoE layer plus its norms and 2h->h projection.

        Embedding and output head are shared with the main model and not counted again.
        """
        h = self.hidden
        block = self.attention.params_per_layer() + self.layer_norm_params()
        block += self.moe_layer_params() if self.is_moe else self.dense_ffn_params()
        return block + 3 * h + 2 * h * h

    def param_counts(self) -> ParamCounts:
        """Total and active parameters derived from the card's fields (MTP counted apart)."""
        r = self.reported
        emb = self.vocab_size * self.hidden
        head = 0 if self.tie_word_embeddings else emb
        attn = self.num_layers * (self.attention.params_per_layer() + self.layer_norm_params())
        dense = self.num_dense_layers * self.dense_ffn_params()
        moe_total = self.num_moe_layers * self.moe_layer_params()
        moe_active = self.num_moe_layers * self.moe_layer_active_params()
        base = attn + dense + self.hidden  # + final norm
        total = base + moe_total + emb + head
        active = base + moe_active
        if r.active_includes_embedding:
            active += emb
        tied_and_counted = self.tie_word_embeddings and r.active_includes_embedding
        if r.active_includes_lm_head and not tied_and_counted:
            active += head if head else emb
        return ParamCounts(total=float(total), active=float(active),
                           mtp=float(self.num_mtp_layers * self.mtp_layer_params()),
                           embedding=float(emb), lm_head=float(head if head else emb))


def params_report(spec: ModelSpec) -> dict[str, dict[str, float]]:
    """Derived counts, the vendor's reported ones, and derived / reported."""
    counts, reported = spec.param_counts(), spec.reported
    return {
        "params": {"total": counts.total, "active": counts.active, "mtp": counts.mtp,
                   "embedding": counts.embedding, "lm_head": counts.lm_head},
        "reported": {"total": reported.reported_total, "active": reported.reported_active},
        "derived_over_reported": {"total": counts.total / reported.reported_total,
                                  "active": counts.active / reported.reported_active},
    }


def load_model(path: Path) -> ModelSpec:
    """Load and validate a model card TOML."""
    return ModelSpec.from_file(load_file(ModelFile, path), path)
