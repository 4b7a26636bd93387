"""Pydantic schemas for every hand-edited data file, the one file reader, and :func:`plain`
(a validated section -> the frozen dataclass the rest of the planner uses).

Schemas forbid unknown keys, take types strictly (``true`` is not 1, ``"12"`` is not 12, ``"yes"``
is not a boolean; an integer is a valid float), bound every number to a plausible range (the
``ranged`` types below, each with its reason), and are frozen.  Validation failures become a single-line
:class:`~planner.errors.DataFileError` naming the file and the field.  Only regular files under
:data:`MAX_FILE_BYTES` are read, nested at most :data:`MAX_DEPTH` levels deep.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tomllib
from dataclasses import fields
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic import Strict as StrictType

from planner.errors import DataFileError

SCHEMA_VERSION = 1

# The largest data file read (1 MiB; the largest shipped file is ~20 kB), and the deepest nesting
# of tables and arrays (the schemas need 4).
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 16
# Names (a card's or profile's, a fabric's) and free text (sources, notes).
MAX_NAME_CHARS = 64
MAX_TEXT_CHARS = 4096


def _fmt(x: float) -> str:
    """A range bound as written in an error: ``1000``, ``0.01``, ``1e12``."""
    if float(x).is_integer() and abs(x) < 1e6:
        return str(int(x))
    mantissa, _, exponent = f"{x:g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def ranged(kind: type, lo: float, hi: float, reason: str, unit: str = "", *, open_low: bool = False) -> Any:
    """``kind`` (int or float) restricted to [lo, hi] (``(lo, hi]`` if ``open_low``).

    A value outside is refused with the range and ``reason`` in the message, e.g.
    ``1000000000 is outside the plausible range 1-1000 layers (the largest published model has
    126)``.  NaN and infinities are outside every range.
    """
    span = (f"({_fmt(lo)}, {_fmt(hi)}]" if open_low else f"{_fmt(lo)}-{_fmt(hi)}") + (f" {unit}" if unit else "")

    def check(value: float) -> float:
        inside = (value > lo if open_low else value >= lo) and value <= hi
        if not inside:
            raise ValueError(f"{value!r} is outside the plausible range {span} ({reason})")
        return value

    bound = "exclusiveMinimum" if open_low else "minimum"
    return Annotated[kind, AfterValidator(check), Field(json_schema_extra={bound: lo, "maximum": hi})]


# Plausible ranges, one per kind of number (per die where it matters), each with its reason.
# The README's "Plausible ranges" table lists them.
Fraction = ranged(float, 0.01, 1.0, "a fraction of a peak or a capacity: below 1% is a unit slip, not a kernel")
PeakFlops = ranged(float, 1e12, 1e18, "dense FLOP/s per die: 1 TFLOP/s is below any accelerator, "
                   "1 EFLOP/s is 100x the fastest die", "FLOP/s")
HbmBytes = ranged(float, 1e9, 1e13, "HBM per die: shipped dies hold 64-288 GB", "bytes")
HbmBandwidth = ranged(float, 1e10, 1e15, "HBM bandwidth per die: shipped dies have 1.6-8 TB/s", "bytes/s")
ReserveBytes = ranged(float, 0.0, 1e12, "a reserve per die is ~1 GB today and must fit in HBM", "bytes")
HalfPoint = ranged(float, 0.0, 1e6, "GEMMs reach half their peak within ~1e4 rows or columns")
QueryOverhead = ranged(float, 0.0, 1e5, "a query tile's fixed work is a few key tiles (~100-1000 keys)", "tokens")
FixedCost = ranged(float, 0.0, 0.01, "a per-kernel or per-call cost is microseconds: 10 ms is a unit slip, "
                   "ms or us written as s", "s")
CopyCost = ranged(float, 0.0, 1e-4, "a per-token copy takes ~0.1 us", "s")
StepGap = ranged(float, 0.0, 1.0, "a CPU gap per decode step is milliseconds", "s")
FabricBandwidth = ranged(float, 1e8, 1e14, "link bandwidth per die: shipped fabrics have 25-900 GB/s",
                         "bytes/s")
RankCount = ranged(float, 1.0, 1e5, "a number of communicating ranks", "ranks")
HalfRateBytes = ranged(float, 0.0, 1e10, "a collective reaches half its asymptotic bandwidth at kB-GB messages",
                       "bytes")
DecayExponent = ranged(float, 0.0, 2.0, "eff falls as n^-decay: 2 quarters it per doubling of ranks, steeper "
                       "than any measured fabric, shipped <= 0.34")
Dies = ranged(int, 1, 100_000, "the largest systems have ~1e5 dies", "dies")
DiesPerChip = ranged(int, 1, 16, "packages have 1-8 dies", "dies")
Layers = ranged(int, 1, 1000, "the largest published model has 126, and the search time grows with it", "layers")
Width = ranged(int, 1, 131_072, "the widest published model has hidden size 16384")
Vocab = ranged(int, 1, 10_000_000, "published vocabularies have 32K-256K tokens", "tokens")
ContextTokens = ranged(int, 1, 100_000_000, "the longest published context is 10M tokens", "tokens")
MtpLayers = ranged(int, 0, 16, "published models have 0-1 MTP modules")
Heads = ranged(int, 1, 1024, "published models have 8-128 attention heads", "heads")
HeadDim = ranged(int, 1, 4096, "published head sizes are 64-256")
OptHeadDim = ranged(int, 0, 4096, "published head sizes are 64-256, 0 = unused")
Rank = ranged(int, 0, 65_536, "published MLA ranks are 512-1536, 0 = unused")
Window = ranged(int, 0, 100_000_000, "a window is at most a context, 0 = none", "tokens")
Intermediate = ranged(int, 0, 1_048_576, "the widest published FFN is 53248, 0 = none")
Experts = ranged(int, 0, 4096, "published MoEs have 8-384 routed experts, 0 = dense", "experts")
SharedExperts = ranged(int, 0, 64, "published MoEs have 0-2 shared experts", "experts")
TopK = ranged(int, 0, 256, "published MoEs route each token to 1-8 experts", "experts")
LayerIndex = ranged(int, 0, 999, "a layer index below num_layers, at most 1000 layers")
ParamCount = ranged(float, 1e5, 1e14, "published models have 1e9-2e12 parameters", "parameters")

SourceText = Annotated[str, Field(min_length=3, max_length=MAX_TEXT_CHARS)]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$", max_length=MAX_NAME_CHARS)]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected the integer 1, got {value!r}")
    return value


SchemaVersion = Annotated[Literal[1], BeforeValidator(_not_bool)]


def lax(kind: Any) -> Any:
    """An enum (or tuple) field that takes its value from a TOML string (or array) under strict mode."""
    return Annotated[kind, StrictType(False)]


class Strict(BaseModel):
    """Base: unknown keys are errors, types are strict (no bool-as-number, no "12"-as-int), immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


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

    kind: lax(Kind)
    calibrated_from: Annotated[list[Annotated[str, Field(max_length=MAX_TEXT_CHARS)]],
                               Field(max_length=10_000)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _calibrated_needs_rows(self) -> Factor:
        if self.kind == Kind.CALIBRATED and not self.calibrated_from:
            raise ValueError("kind = 'calibrated' needs calibrated_from = [row ids]")
        return self


# --------------------------------------------------------------------------- hardware


class PeakSection(Sourced):
    """Dense peak FLOP/s per die for each supported dtype; an absent dtype is unsupported."""

    bf16_flops_per_s: PeakFlops | None = None
    fp16_flops_per_s: PeakFlops | None = None
    fp8_flops_per_s: PeakFlops | None = None
    int8_flops_per_s: PeakFlops | None = None
    fp4_flops_per_s: PeakFlops | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> PeakSection:
        if not any(getattr(self, f"{d}_flops_per_s") for d in ("bf16", "fp16", "fp8", "int8", "fp4")):
            raise ValueError("list the dense peak of at least one dtype, e.g. bf16_flops_per_s")
        return self


class MemorySection(Sourced):
    """HBM per die."""

    hbm_bytes: HbmBytes
    hbm_bandwidth_bytes_per_s: HbmBandwidth


class MemoryReserveSection(Factor):
    """What of HBM the model may use: usable fraction and fixed runtime/communication areas."""

    usable_frac: Fraction
    comm_buffer_bytes: ReserveBytes
    runtime_reserved_bytes: ReserveBytes = 0.0


class GemmDtypeEfficiency(Factor):
    """One GEMM math dtype's own asymptote and weight-streaming efficiency (``[efficiency.gemm.by_dtype.fp4]``).

    ``max_frac`` replaces the curve's asymptote and ``memory_frac`` the memory efficiency
    (``efficiency.memory.frac``) of the GEMMs that compute in this dtype; an absent key keeps the
    shared value.  The curve's shape (``m_half_tokens``, ``k_half``) stays shared.
    """

    max_frac: Fraction | None = None
    memory_frac: Fraction | None = None

    @model_validator(mode="after")
    def _overrides_something(self) -> GemmDtypeEfficiency:
        if self.max_frac is None and self.memory_frac is None:
            raise ValueError("a by_dtype table sets max_frac and/or memory_frac (else delete the table)")
        return self


class GemmByDtype(Strict):
    """Per-dtype overrides of the GEMM efficiency, by the GEMM's math dtype (absent: the shared values)."""

    bf16: GemmDtypeEfficiency | None = None
    fp16: GemmDtypeEfficiency | None = None
    fp8: GemmDtypeEfficiency | None = None
    int8: GemmDtypeEfficiency | None = None
    fp4: GemmDtypeEfficiency | None = None


class GemmEfficiency(Factor):
    """eff(M, K) = max_frac * M / (M + m_half_tokens) * K / (K + k_half) of the dense peak."""

    max_frac: Fraction
    m_half_tokens: HalfPoint
    k_half: HalfPoint = 0.0
    by_dtype: GemmByDtype | None = None


class AttentionEfficiency(Factor):
    """Attention core kernels (FlashAttention / FlashMLA class): compute and memory sides.

    ``prefill_query_overhead_tokens``: the work, in attended keys, each query row of a prefill
    (FlashAttention-style) kernel pays beyond its own keys (query-tile prologue and epilogue, the
    masked half of the causal diagonal tile); 0 = none (planner.cost.roofline.attention_prefill_frac).
    """

    compute_frac: Fraction
    memory_frac: Fraction
    prefill_query_overhead_tokens: QueryOverhead = 0.0


class MemoryEfficiency(Factor):
    """Achieved fraction of HBM bandwidth for streaming kernels (weights, elementwise)."""

    frac: Fraction


class EfficiencySection(Strict):
    gemm: GemmEfficiency
    attention: AttentionEfficiency
    memory: MemoryEfficiency


class OverheadSection(Factor):
    """Fixed costs: per kernel (graph mode), extra per kernel launched eagerly, per decode step."""

    kernel_s: FixedCost
    eager_launch_s: FixedCost
    scheduler_gap_s: StepGap


class Scope(StrEnum):
    """Which dies a fabric joins, from the narrowest to the widest."""

    CHIP = "chip"
    SERVER = "server"
    POD = "pod"
    CLUSTER = "cluster"


class FabricEfficiency(Factor):
    """eff(n) = max_frac * min(1, (decay_start_ranks / n) ** decay) for n communicating ranks."""

    max_frac: Fraction
    decay_start_ranks: RankCount = 8.0
    decay: DecayExponent = 0.0


class InSwitchReduction(Factor):
    """All-reduce reduced inside the switch (NVLink SHARP, NCCL's NVLS algorithm), when the fabric has it.

    Each die sends and receives ``(n + 1) / n`` of the message once (not the ring's ``2 (n - 1) / n``);
    the achieved rate is ``max_frac`` of the link bandwidth for large messages and
    ``max_frac / (1 + sqrt(half_rate_bytes / bytes))`` below (half of it at ``half_rate_bytes``),
    after a fixed start-up ``latency_s`` (planner.xccl.allreduce_s).
    """

    latency_s: FixedCost
    max_frac: Fraction
    half_rate_bytes: HalfRateBytes = 0.0


class FabricSection(Sourced):
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
    scope: lax(Scope)
    dies: Dies
    bandwidth_bytes_per_s: FabricBandwidth
    latency_s: FixedCost
    efficiency: FabricEfficiency
    in_switch_reduction: InSwitchReduction | None = None


class CollectiveSection(Factor):
    """Software cost per call of the communication library, on top of the fabric latency."""

    dispatch_s: FixedCost
    combine_s: FixedCost
    p2p_s: FixedCost
    collective_s: FixedCost
    low_latency_copy_s: CopyCost = 0.0


class OverlapDiscipline(StrEnum):
    """How a platform's kernels overlap one micro-batch's communication with another's compute."""

    IDEAL = "ideal"                    # max(m compute, m comm): every byte hidden (an upper bound)
    GPU_TWO_BATCH = "gpu-two-batch"    # DeepSeek TBO: stage-paired (low-latency) / SM-shared (normal kernels)
    ASCEND_MULTI_STREAM = "ascend-multi-stream"  # attention and MoE streams on split cube/vector cores


class OverlapSection(Factor):
    """Which overlap discipline the profile's serving stack follows, and its parameters.

    ``comm_sm_frac``: share of the compute units the bulk (normal-mode) all-to-all kernels take
    while they overlap compute (DeepEP: 24 of 132 SMs).  ``attention_core_frac`` /
    ``moe_core_frac``: core shares of the attention and MoE streams (Ascend recipes: 16 and 8 of
    24 cube cores); ``core_split_exponent``: a kernel on a share f of the cores takes
    ``f ** -exponent`` times its full-die time.  ``calls_on_stream``: the low-latency all-to-all's
    per-call cost (``[collectives] dispatch_s`` / ``combine_s``: its send and receive kernels) runs on
    the compute stream, so only its wire time hides under the paired stage.  ``bulk_host_sync_s``:
    the host gap of one bulk (normal-mode) dispatch, whose CPU waits for the received-token count
    before it can launch the rest (DeepEP normal ``notify_dispatch``): the GPU idles that long.
    """

    discipline: lax(OverlapDiscipline)
    comm_sm_frac: ranged(float, 0.0, 0.9, "a share of the compute units; communication never takes them all") = 0.0
    attention_core_frac: Fraction = 1.0
    moe_core_frac: Fraction = 1.0
    core_split_exponent: ranged(float, 0.0, 1.0, "1 = time inversely proportional to the cores; measured "
                                "0.30-0.65") = 1.0
    calls_on_stream: bool = False
    bulk_host_sync_s: FixedCost = 0.0


class FusedPass(StrEnum):
    """A group of kernels a stack's fused operators run as one (planner/cost/elementwise.py)."""

    MLA_PROLOG = "mla_prolog"          # MLA q_a/q_b/kv_a/absorb_uk GEMMs, q/kv norms and their input quantisation
    SWIGLU_QUANT = "swiglu_quant"      # dense/shared FFN: SiLU-and-multiply and the down input quantisation
    EXPERT_SWIGLU = "expert_swiglu"    # routed experts: SwiGLU (and quantisation) in the grouped GEMM
    EXPERT_PERMUTE = "expert_permute"  # routed experts: permute / unpermute + weighted sum in dispatch / combine


class KernelsSection(Factor):
    """The stack's per-layer kernel inventory: which kernel groups its fused operators run as one.

    ``fused``: the groups the graph-mode stack (decode) runs as one kernel; ``fused_eager``: those of
    the eager-mode stack (prefill), which also pays ``overheads.eager_launch_s`` per kernel.  Absent
    or empty: every kernel of planner/cost/elementwise.py's unfused inventory is launched on its own.
    """

    fused: Annotated[list[lax(FusedPass)], Field(max_length=len(FusedPass))] = Field(default_factory=list)
    fused_eager: Annotated[list[lax(FusedPass)], Field(max_length=len(FusedPass))] = Field(default_factory=list)


class AttentionMathSection(Factor):
    """The dtype the attention core computes in when query and KV cache are quantised to a dtype.

    ``int8_kv = "int8"``: with an INT8 KV cache the stack also quantises the query and runs the
    core in INT8 (CANN W8A8C8).  An absent key: the KV cache is dequantised and the math runs in
    bf16 (FlashMLA FP8 KV).
    """

    int8_kv: Literal["bf16", "fp16", "fp8", "int8"] | None = None
    fp8_kv: Literal["bf16", "fp16", "fp8"] | None = None
    fp4_kv: Literal["bf16", "fp16", "fp8", "fp4"] | None = None


class HardwareFile(Strict):
    schema_version: SchemaVersion
    name: Name
    description: Text
    chip: Text
    dies_per_chip: DiesPerChip
    num_dies: Dies
    # Dies of one node (server, compute tray): what one node failure takes out.  Default: the
    # server-scope fabric's domain, else the whole system (a profile without one should say).
    dies_per_node: Dies | None = None
    source: SourceText
    peak: PeakSection
    memory: MemorySection
    memory_reserve: MemoryReserveSection
    efficiency: EfficiencySection
    overheads: OverheadSection
    collectives: CollectiveSection
    overlap: OverlapSection | None = None
    kernels: KernelsSection | None = None
    attention_math: AttentionMathSection | None = None
    fabrics: list[FabricSection] = Field(min_length=1, max_length=len(Scope))

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

    @model_validator(mode="after")
    def _node_divides(self) -> HardwareFile:
        n = self.dies_per_node
        if n is not None and (n % self.dies_per_chip or self.num_dies % n):
            raise ValueError(f"dies_per_node = {n} must be a multiple of dies_per_chip ({self.dies_per_chip}) "
                             f"and divide num_dies ({self.num_dies})")
        return self

    @model_validator(mode="after")
    def _gemm_overrides_have_peaks(self) -> HardwareFile:
        by = self.efficiency.gemm.by_dtype
        for dtype in GemmByDtype.model_fields:
            if by is not None and getattr(by, dtype) is not None and getattr(self.peak, f"{dtype}_flops_per_s") is None:
                raise ValueError(f"efficiency.gemm.by_dtype.{dtype}: the profile lists no peak.{dtype}_flops_per_s "
                                 f"(delete the table or add the peak)")
        return self

    @model_validator(mode="after")
    def _reserve_fits(self) -> HardwareFile:
        r, usable = self.memory_reserve, self.memory_reserve.usable_frac * self.memory.hbm_bytes
        if r.comm_buffer_bytes + r.runtime_reserved_bytes >= usable:
            raise ValueError(f"memory_reserve: comm_buffer_bytes + runtime_reserved_bytes "
                             f"({r.comm_buffer_bytes + r.runtime_reserved_bytes:.3g}) leave nothing of the usable HBM "
                             f"({usable:.3g} bytes = usable_frac x hbm_bytes)")
        return self


# --------------------------------------------------------------------------- model card


class AttentionKind(StrEnum):
    MHA = "mha"
    GQA = "gqa"
    MLA = "mla"


class ModelAttention(Strict):
    kind: lax(AttentionKind)
    num_heads: Heads
    num_kv_heads: Heads
    head_dim: HeadDim
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    sinks: bool = False
    q_lora_rank: Rank = 0
    kv_lora_rank: Rank = 0
    qk_nope_head_dim: OptHeadDim = 0
    qk_rope_head_dim: OptHeadDim = 0
    v_head_dim: OptHeadDim = 0
    sliding_window_tokens: Window = 0
    sliding_layers: Annotated[list[LayerIndex], Field(max_length=1000)] = Field(default_factory=list)

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
    dense_intermediate_size: Intermediate = 0
    dense_layers: Annotated[list[LayerIndex], Field(max_length=1000)] = Field(default_factory=list)
    moe_intermediate_size: Intermediate = 0
    num_routed_experts: Experts = 0
    num_shared_experts: SharedExperts = 0
    shared_expert_intermediate_size: Intermediate = 0
    top_k: TopK = 0
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

    reported_total: ParamCount
    reported_active: ParamCount
    active_includes_embedding: bool
    active_includes_lm_head: bool = True


class ModelFile(Strict):
    schema_version: SchemaVersion
    name: Name
    display_name: Text
    architecture: Text
    source: SourceText
    native_dtype: Literal["bf16", "fp16", "fp8", "int8", "fp4"]
    native_dtype_note: Text = ""
    num_layers: Layers
    hidden_size: Width
    vocab_size: Vocab
    tie_word_embeddings: bool = False
    max_position_embeddings: ContextTokens
    num_mtp_layers: MtpLayers = 0
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


def read_capped(path: Path, *, what: str = "file", fix: str = "check the path and permissions",
                limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (DataFileError otherwise).

    A FIFO, a device (``/dev/zero``), a directory or a socket is refused before anything is
    read, so none can block or exhaust memory; a symlink to a regular file is followed.
    """
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        reason = "path too long" if exc.errno == errno.ENAMETOOLONG else exc.strerror
        raise DataFileError(f"cannot read {what} ({reason})", where=where[:300], fix=fix) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file but a device, FIFO or socket"
        raise DataFileError(f"cannot read {what}: {kind}", where=where, fix="give a regular file")
    with os.fdopen(fd, "rb") as handle:
        try:
            raw = handle.read(limit + 1)
        except OSError as exc:
            raise DataFileError(f"cannot read {what} ({exc.strerror})", where=where, fix=fix) from None
    if len(raw) > limit:
        raise DataFileError(f"{what} is larger than {limit // 1024} KiB, more than any planner input",
                            where=where, fix="give the right file")
    return raw


def depth(data: Any) -> int:
    """Nesting depth of tables and arrays (a scalar is 0), counted without recursion."""
    deepest, stack = 0, [(data, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level + 1)
            if level + 1 > MAX_DEPTH:
                break
            stack.extend((v, level + 1) for v in item)
    return deepest


def check_depth(data: Any, where: str) -> None:
    if depth(data) > MAX_DEPTH:
        raise DataFileError(f"tables and arrays nested more than {MAX_DEPTH} levels deep", where=where,
                            fix="the planner's files nest at most 4 levels; give the right file")


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; unreadable, oversized or malformed files become a one-line DataFileError."""
    raw = read_capped(path)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DataFileError("not UTF-8 text", where=str(path), fix="save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataFileError(f"malformed TOML ({exc})", where=str(path),
                            fix="correct the TOML syntax") from None
    except RecursionError:
        raise DataFileError(f"tables and arrays nested more than {MAX_DEPTH} levels deep", where=str(path),
                            fix="the planner's files nest at most 4 levels; give the right file") from None
    check_depth(data, str(path))
    return data


def read_json(path: Path, *, what: str = "file", fix: str = "give the right file") -> Any:
    """Parse a JSON file with the same limits as :func:`read_toml` (regular file, size, depth)."""
    raw = read_capped(path, what=what)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DataFileError("not UTF-8 text", where=str(path), fix=fix) from None
    except json.JSONDecodeError as exc:
        raise DataFileError(f"malformed JSON ({exc.msg} at line {exc.lineno})", where=str(path), fix=fix) from None
    except RecursionError:
        raise DataFileError(f"arrays and objects nested more than {MAX_DEPTH} levels deep", where=str(path),
                            fix=fix) from None
    check_depth(data, str(path))
    return data


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    elif kind in ("int_type", "float_type") and isinstance(err.get("input"), bool):
        msg = f"{msg} (got {str(err['input']).lower()}: a boolean is not a number)"
    elif kind in ("int_type", "float_type") and isinstance(err.get("input"), str):
        msg = f"{msg} (got {_shown(err['input'])}: write numbers without quotes)"
    elif kind == "bool_type":
        msg = f"{msg} (got {_shown(err.get('input'))}: write true or false, unquoted)"
    elif kind != "value_error" and "input" in err:
        msg = f"{msg} (got {_shown(err.get('input'))})"
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
