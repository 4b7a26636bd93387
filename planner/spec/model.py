"""ModelSpec: a validated model card, with parameter counts derived from its fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from planner.spec.files import AttentionKind, ModelFile, load_file


@dataclass(frozen=True, slots=True, kw_only=True)
class ParamCounts:
    """Parameter counts of a model (elements, not bytes)."""

    total: float
    active: float
    mtp: float
    embedding: float
    lm_head: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """One model card (see models/*.toml)."""

    file: ModelFile
    path: Path

    # ---------------------------------------------------------------- shape helpers
    @property
    def name(self) -> str:
        return self.file.name

    @property
    def hidden(self) -> int:
        return self.file.hidden_size

    @property
    def num_layers(self) -> int:
        return self.file.num_layers

    @property
    def is_moe(self) -> bool:
        return self.file.ffn.num_routed_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.file.attention.kind == AttentionKind.MLA

    @property
    def num_dense_layers(self) -> int:
        """Layers with a dense FFN (all of them for a dense model)."""
        return len(self.file.ffn.dense_layers) if self.is_moe else self.num_layers

    @property
    def num_moe_layers(self) -> int:
        return self.num_layers - self.num_dense_layers

    @property
    def num_sliding_layers(self) -> int:
        return len(self.file.attention.sliding_layers)

    def kv_elements_per_token_per_layer(self) -> int:
        """Cached elements per token per (full) attention layer: 2*kv_heads*head_dim, MLA 576."""
        att = self.file.attention
        if att.kind == AttentionKind.MLA:
            return att.kv_lora_rank + att.qk_rope_head_dim
        return 2 * att.num_kv_heads * att.head_dim

    # ---------------------------------------------------------------- parameter counts
    def attention_params_per_layer(self) -> int:
        """Attention weights of one layer, including its projections' biases and norms."""
        a, h = self.file.attention, self.hidden
        if a.kind == AttentionKind.MLA:
            qk = a.qk_nope_head_dim + a.qk_rope_head_dim
            if a.q_lora_rank:
                q = h * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * a.num_heads * qk
            else:
                q = h * a.num_heads * qk
            kv = h * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank
            kv += a.kv_lora_rank * a.num_heads * (a.qk_nope_head_dim + a.v_head_dim)
            o = a.num_heads * a.v_head_dim * h
            return q + kv + o
        d = a.head_dim
        qkv = h * (a.num_heads + 2 * a.num_kv_heads) * d
        if a.qkv_bias:
            qkv += (a.num_heads + 2 * a.num_kv_heads) * d
        o = a.num_heads * d * h + (h if a.o_bias else 0)
        extra = (2 * d if a.qk_norm else 0) + (a.num_heads if a.sinks else 0)
        return qkv + o + extra

    def dense_ffn_params(self) -> int:
        """Gated FFN (gate, up, down) of one dense layer."""
        return 3 * self.hidden * self.file.ffn.dense_intermediate_size

    def expert_params(self) -> int:
        """One routed expert (gate, up, down, and biases if the card has them)."""
        f, h = self.file.ffn, self.hidden
        bias = (2 * f.moe_intermediate_size + h) if f.expert_bias else 0
        return 3 * h * f.moe_intermediate_size + bias

    def shared_expert_params(self) -> int:
        """All shared experts of one MoE layer."""
        f = self.file.ffn
        return f.num_shared_experts * 3 * self.hidden * f.shared_expert_intermediate_size

    def router_params(self) -> int:
        f = self.file.ffn
        return self.hidden * f.num_routed_experts + (f.num_routed_experts if f.router_bias else 0)

    def moe_layer_params(self) -> int:
        f = self.file.ffn
        return self.router_params() + f.num_routed_experts * self.expert_params() + self.shared_expert_params()

    def moe_layer_active_params(self) -> int:
        f = self.file.ffn
        return self.router_params() + f.top_k * self.expert_params() + self.shared_expert_params()

    def layer_norm_params(self) -> int:
        """Pre-attention and pre-FFN RMSNorm weights of one layer."""
        return 2 * self.hidden

    def mtp_layer_params(self) -> int:
        """One DeepSeek-style MTP module: a full MoE layer plus its norms and 2h->h projection.

        Embedding and output head are shared with the main model and not counted again.
        """
        h = self.hidden
        block = self.attention_params_per_layer() + self.layer_norm_params()
        block += self.moe_layer_params() if self.is_moe else self.dense_ffn_params()
        return block + 3 * h + 2 * h * h

    def param_counts(self) -> ParamCounts:
        """Total and active parameters derived from the card's fields (MTP counted apart)."""
        f = self.file
        emb = f.vocab_size * self.hidden
        head = 0 if f.tie_word_embeddings else emb
        attn = self.num_layers * (self.attention_params_per_layer() + self.layer_norm_params())
        dense = self.num_dense_layers * self.dense_ffn_params()
        moe_total = self.num_moe_layers * self.moe_layer_params()
        moe_active = self.num_moe_layers * self.moe_layer_active_params()
        base = attn + dense + self.hidden  # + final norm
        total = base + moe_total + emb + head
        active = base + moe_active
        if f.params.active_includes_embedding:
            active += emb
        tied_and_counted = f.tie_word_embeddings and f.params.active_includes_embedding
        if f.params.active_includes_lm_head and not tied_and_counted:
            active += head if head else emb
        return ParamCounts(total=float(total), active=float(active),
                           mtp=float(f.num_mtp_layers * self.mtp_layer_params()),
                           embedding=float(emb), lm_head=float(head if head else emb))


def params_report(spec: ModelSpec) -> dict[str, dict[str, float]]:
    """Derived counts, the vendor's reported ones, and derived / reported."""
    counts, reported = spec.param_counts(), spec.file.params
    return {
        "params": {"total": counts.total, "active": counts.active, "mtp": counts.mtp,
                   "embedding": counts.embedding, "lm_head": counts.lm_head},
        "reported": {"total": reported.reported_total, "active": reported.reported_active},
        "derived_over_reported": {"total": counts.total / reported.reported_total,
                                  "active": counts.active / reported.reported_active},
    }


def load_model(path: Path) -> ModelSpec:
    """Load and validate a model card TOML."""
    return ModelSpec(file=load_file(ModelFile, path), path=path)
