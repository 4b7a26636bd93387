"""Pydantic schemas for every hand-edited data file, the one TOML loader, and :func:`plain`
(a validated section -> the frozen dataclass the rest of the planner uses).

Schemas forbid unknown keys, constrain every number, and are frozen.  Validation failures
become a single-line :class:`~planner.errors.DataFileError` naming the file and the field.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from planner.errors import DataFileError

SCHEMA_VERSION = 1

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
SourceText = Annotated[str, Field(min_length=3)]


class Strict(BaseModel):
    """Base: unknown keys are errors, objects are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Kind(StrEnum):
    """Where an empirical number comes from."""

    SPEC = "spec"
    MEASURED = "measured"
    ASSUMED = "assumed"
    CALIBRATED = "calibrated"


class Sourced(Strict):
    """A section whose numbers share one source."""

    source: SourceText


class Factor(Sourced):
    """An empirical factor: tagged with its kind; calibrated ones name the rows they fit."""

    kind: Kind
    calibrated_from: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _calibrated_needs_rows(self) -> Factor:
        if self.kind == Kind.CALIBRATED and not self.calibrated_from:
            raise ValueError("kind = 'calibrated' needs calibrated_from = [row ids]")
        return self


# --------------------------------------------------------------------------- hardware


class PeakSection(Sourced):
    """Dense peak FLOP/s per die for each supported dtype; an absent dtype is unsupported."""

    bf16_flops_per_s: PositiveFloat | None = None
    fp16_flops_per_s: PositiveFloat | None = None
    fp8_flops_per_s: PositiveFloat | None = None
    int8_flops_per_s: PositiveFloat | None = None
    fp4_flops_per_s: PositiveFloat | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> PeakSection:
        if not any(getattr(self, f"{d}_flops_per_s") for d in ("bf16", "fp16", "fp8", "int8", "fp4")):
            raise ValueError("list the dense peak of at least one dtype, e.g. bf16_flops_per_s")
        return self


class MemorySection(Sourced):
    """HBM per die."""

    hbm_bytes: PositiveFloat
    hbm_bandwidth_bytes_per_s: PositiveFloat


class MemoryReserveSection(Factor):
    """What of HBM the model may use: usable fraction and fixed runtime/communication areas."""

    usable_frac: Fraction
    comm_buffer_bytes: NonNegFloat
    runtime_reserved_bytes: NonNegFloat = 0.0


class GemmEfficiency(Factor):
    """eff(M, K) = max_frac * M / (M + m_half_tokens) * K / (K + k_half) of the dense peak."""

    max_frac: Fraction
    m_half_tokens: NonNegFloat
    k_half: NonNegFloat = 0.0


class AttentionEfficiency(Factor):
    """Attention core kernels (FlashAttention / FlashMLA class): compute and memory sides."""

    compute_frac: Fraction
    memory_frac: Fraction


class MemoryEfficiency(Factor):
    """Achieved fraction of HBM bandwidth for streaming kernels (weights, elementwise)."""

    frac: Fraction


class EfficiencySection(Strict):
    gemm: GemmEfficiency
    attention: AttentionEfficiency
    memory: MemoryEfficiency


class OverheadSection(Factor):
    """Fixed costs: per kernel (graph mode), extra per kernel launched eagerly, per decode step."""

    kernel_s: NonNegFloat
    eager_launch_s: NonNegFloat
    scheduler_gap_s: NonNegFloat


class Scope(StrEnum):
    """Which dies a fabric joins, from the narrowest to the widest."""

    CHIP = "chip"
    SERVER = "server"
    POD = "pod"
    CLUSTER = "cluster"


class FabricEfficiency(Factor):
    """eff(n) = max_frac * min(1, (decay_start_ranks / n) ** decay) for n communicating ranks."""

    max_frac: Fraction
    decay_start_ranks: PositiveFloat = 8.0
    decay: NonNegFloat = 0.0


class FabricSection(Sourced):
    name: Annotated[str, Field(min_length=1)]
    scope: Scope
    dies: PositiveInt
    bandwidth_bytes_per_s: PositiveFloat
    latency_s: NonNegFloat
    efficiency: FabricEfficiency


class CollectiveSection(Factor):
    """Software cost per call of the communication library, on top of the fabric latency."""

    dispatch_s: NonNegFloat
    combine_s: NonNegFloat
    p2p_s: NonNegFloat
    collective_s: NonNegFloat
    low_latency_copy_s: NonNegFloat = 0.0


class HardwareFile(Strict):
    schema_version: Literal[1]
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")]
    description: str
    chip: str
    dies_per_chip: PositiveInt
    num_dies: PositiveInt
    source: SourceText
    peak: PeakSection
    memory: MemorySection
    memory_reserve: MemoryReserveSection
    efficiency: EfficiencySection
    overheads: OverheadSection
    collectives: CollectiveSection
    fabrics: list[FabricSection] = Field(min_length=1)

    @model_validator(mode="after")
    def _fabrics_ordered(self) -> HardwareFile:
        order = list(Scope)
        scopes = [order.index(f.scope) for f in self.fabrics]
        if scopes != sorted(scopes) or len(set(scopes)) != len(scopes):
            raise ValueError("fabrics: list one fabric per scope, narrowest first (chip, server, pod, cluster)")
        sizes = [f.dies for f in self.fabrics]
        if sizes != sorted(sizes):
            raise ValueError("fabrics: a wider scope must join at least as many dies as a narrower one")
        return self


# --------------------------------------------------------------------------- model card


class AttentionKind(StrEnum):
    MHA = "mha"
    GQA = "gqa"
    MLA = "mla"


class ModelAttention(Strict):
    kind: AttentionKind
    num_heads: PositiveInt
    num_kv_heads: PositiveInt
    head_dim: PositiveInt
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    sinks: bool = False
    q_lora_rank: NonNegInt = 0
    kv_lora_rank: NonNegInt = 0
    qk_nope_head_dim: NonNegInt = 0
    qk_rope_head_dim: NonNegInt = 0
    v_head_dim: NonNegInt = 0
    sliding_window_tokens: NonNegInt = 0
    sliding_layers: list[NonNegInt] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ModelAttention:
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        if self.kind == AttentionKind.MLA:
            if not (self.kv_lora_rank and self.qk_nope_head_dim and self.qk_rope_head_dim and self.v_head_dim):
                raise ValueError("mla needs kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim")
        elif self.kind == AttentionKind.MHA and self.num_kv_heads != self.num_heads:
            raise ValueError("mha has num_kv_heads == num_heads (use kind = 'gqa')")
        if self.sliding_layers and not self.sliding_window_tokens:
            raise ValueError("sliding_layers needs sliding_window_tokens > 0")
        return self


class ModelFfn(Strict):
    dense_intermediate_size: NonNegInt = 0
    dense_layers: list[NonNegInt] = Field(default_factory=list)
    moe_intermediate_size: NonNegInt = 0
    num_routed_experts: NonNegInt = 0
    num_shared_experts: NonNegInt = 0
    shared_expert_intermediate_size: NonNegInt = 0
    top_k: NonNegInt = 0
    router_bias: bool = False
    expert_bias: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> ModelFfn:
        if self.num_routed_experts:
            if not (self.moe_intermediate_size and 0 < self.top_k <= self.num_routed_experts):
                raise ValueError("an MoE needs moe_intermediate_size and 0 < top_k <= num_routed_experts")
            if self.num_shared_experts and not self.shared_expert_intermediate_size:
                raise ValueError("shared experts need shared_expert_intermediate_size")
        elif not self.dense_intermediate_size:
            raise ValueError("a dense model needs dense_intermediate_size")
        if self.dense_layers and not self.dense_intermediate_size:
            raise ValueError("dense_layers need dense_intermediate_size")
        return self


class ModelParams(Sourced):
    """Parameter counts as the vendor reports them (checked against the derived counts)."""

    reported_total: PositiveFloat
    reported_active: PositiveFloat
    active_includes_embedding: bool
    active_includes_lm_head: bool = True


class ModelFile(Strict):
    schema_version: Literal[1]
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")]
    display_name: str
    architecture: str
    source: SourceText
    native_dtype: Literal["bf16", "fp16", "fp8", "int8", "fp4"]
    native_dtype_note: str = ""
    num_layers: PositiveInt
    hidden_size: PositiveInt
    vocab_size: PositiveInt
    tie_word_embeddings: bool = False
    max_position_embeddings: PositiveInt
    num_mtp_layers: NonNegInt = 0
    attention: ModelAttention
    ffn: ModelFfn
    params: ModelParams

    @model_validator(mode="after")
    def _layers_in_range(self) -> ModelFile:
        for field, layers in (("ffn.dense_layers", self.ffn.dense_layers),
                              ("attention.sliding_layers", self.attention.sliding_layers)):
            if any(i >= self.num_layers for i in layers) or len(set(layers)) != len(layers):
                raise ValueError(f"{field}: indices must be distinct and < num_layers")
        return self


# --------------------------------------------------------------------------- loading

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def plain(cls: type[T], section: BaseModel, **override: Any) -> T:
    """The frozen dataclass ``cls`` filled from the same-named fields of a validated section."""
    names = [f.name for f in fields(cls) if f.name not in override]
    return cls(**{n: getattr(section, n) for n in names}, **override)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; unreadable or malformed files become a one-line DataFileError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataFileError(f"cannot read file ({exc.strerror})", where=str(path),
                            fix="check the path and permissions") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DataFileError("not UTF-8 text", where=str(path), fix="save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataFileError(f"malformed TOML ({exc})", where=str(path),
                            fix="correct the TOML syntax") from None


def validation_message(exc: ValidationError) -> tuple[str, str]:
    """First error of a pydantic ValidationError as (field path, message with fix)."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        msg = "unknown key; remove it or check its spelling"
    elif kind == "missing":
        msg = "required field is missing; add it"
    elif kind in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        msg = f"{msg} (got {err.get('input')!r})"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (+{more} more error{'s' if more > 1 else ''})"
    return loc, msg


def validate_data(schema: type[M], data: dict[str, Any], where: str) -> M:
    """Validate ``data`` against ``schema``; errors become one line naming file and field."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        loc, msg = validation_message(exc)
        raise DataFileError(f"field '{loc}': {msg}", where=where) from None


def load_file(schema: type[M], path: Path) -> M:
    """Read and validate a TOML data file."""
    return validate_data(schema, read_toml(path), str(path))
