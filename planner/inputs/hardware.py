"""HardwareSpec: a hardware profile as plain values, with the look-ups the cost models need.

Every section of the profile becomes a small frozen dataclass with the file's SI field names;
provenance (``source``, ``kind``, ``calibrated_from``) stays in the file (:meth:`HardwareSpec.document`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.errors import UnsupportedDtypeError
from planner.inputs.files import FusedPass, HardwareFile, OverlapDiscipline, Scope, load_file, plain, validate_data
from planner.units import Dtype


@dataclass(frozen=True, slots=True, kw_only=True)
class Peaks:
    """Dense peak FLOP/s per die for each dtype; None = the dtype is unsupported."""

    bf16_flops_per_s: float | None
    fp16_flops_per_s: float | None
    fp8_flops_per_s: float | None
    int8_flops_per_s: float | None
    fp4_flops_per_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Memory:
    """HBM per die."""

    hbm_bytes: float
    hbm_bandwidth_bytes_per_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryReserve:
    """What of HBM a model may use: usable fraction, runtime and communication areas."""

    usable_frac: float
    comm_buffer_bytes: float
    runtime_reserved_bytes: float


@dataclass(frozen=True, slots=True, kw_only=True)
class GemmDtypeEfficiency:
    """One math dtype's own GEMM asymptote and weight-streaming efficiency; None = the shared value."""

    max_frac: float | None = None
    memory_frac: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GemmEfficiency:
    """``eff(M, K) = max_frac * M / (M + m_half_tokens) * K / (K + k_half)`` of the dense peak.

    ``by_dtype``: the dtypes whose GEMMs have their own ``max_frac`` and/or ``memory_frac``
    (``[efficiency.gemm.by_dtype.<dtype>]``); the others use the shared values.
    """

    max_frac: float
    m_half_tokens: float
    k_half: float
    by_dtype: dict[Dtype, GemmDtypeEfficiency] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttentionEfficiency:
    """Attention core kernels (FlashAttention / FlashMLA class): compute and memory sides, and a
    prefill kernel's fixed work per query row in attended keys (0: none)."""

    compute_frac: float
    memory_frac: float
    prefill_query_overhead_tokens: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryEfficiency:
    """Achieved fraction of HBM bandwidth for streaming kernels."""

    frac: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Overheads:
    """Fixed costs: per kernel (graph mode), extra per eager launch, per decode step."""

    kernel_s: float
    eager_launch_s: float
    scheduler_gap_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Collectives:
    """Software cost per call of the communication library, on top of the fabric latency."""

    dispatch_s: float
    combine_s: float
    p2p_s: float
    collective_s: float
    low_latency_copy_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Overlap:
    """The overlap discipline of the profile's stack (planner/serving/overlap.py) and its parameters."""

    discipline: OverlapDiscipline = OverlapDiscipline.IDEAL
    comm_sm_frac: float = 0.0
    attention_core_frac: float = 1.0
    moe_core_frac: float = 1.0
    core_split_exponent: float = 1.0
    calls_on_stream: bool = False   # low-latency call costs hold the compute stream (gpu-two-batch decode)
    bulk_host_sync_s: float = 0.0   # host gap per bulk (normal-mode) dispatch: CPU waits for the counts


@dataclass(frozen=True, slots=True, kw_only=True)
class Kernels:
    """The stack's kernel inventory: the kernel groups its fused operators run as one (``[kernels]``)."""

    fused: frozenset[FusedPass] = frozenset()        # graph mode (decode)
    fused_eager: frozenset[FusedPass] = frozenset()  # eager mode (prefill)


@dataclass(frozen=True, slots=True, kw_only=True)
class FabricEfficiency:
    """``eff(n) = max_frac * min(1, (decay_start_ranks / n) ** decay)`` for ``n`` ranks."""

    max_frac: float
    decay_start_ranks: float
    decay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class InSwitchReduction:
    """All-reduce reduced in the switch (NVLS): start-up, large-message fraction of the link rate and the
    message size at half that rate (``[fabrics.in_switch_reduction]``; planner.xccl.allreduce_s)."""

    latency_s: float
    max_frac: float
    half_rate_bytes: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Fabric:
    """One level of the interconnect: the dies one domain joins, bandwidth and latency per die.

    ``in_switch_reduction``: the switch reduces all-reduce traffic itself (NVLink SHARP), None if not.
    """

    name: str
    scope: Scope
    dies: int
    bandwidth_bytes_per_s: float
    latency_s: float
    efficiency: FabricEfficiency
    in_switch_reduction: InSwitchReduction | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HardwareSpec:
    """One hardware profile (per-die numbers; see hardware_profiles/*.toml)."""

    name: str
    description: str
    chip: str
    path: Path
    dies_per_chip: int
    num_dies: int
    dies_per_node: int  # one node (server, compute tray): the unit a node failure takes out
    peaks: Peaks
    memory: Memory
    memory_reserve: MemoryReserve
    gemm_efficiency: GemmEfficiency
    attention_efficiency: AttentionEfficiency
    memory_efficiency: MemoryEfficiency
    overheads: Overheads
    collectives: Collectives
    fabrics: tuple[Fabric, ...]
    overlap: Overlap = field(default_factory=Overlap)
    kernels: Kernels = field(default_factory=Kernels)
    # math dtype of the attention core by quantised KV dtype (absent: dequantised to bf16)
    attention_math: dict[Dtype, Dtype] = field(default_factory=dict)
    _file: HardwareFile = field(repr=False, compare=False)

    @classmethod
    def from_file(cls, file: HardwareFile, path: Path) -> HardwareSpec:
        """Plain values of a validated profile."""
        e = file.efficiency
        fabrics = tuple(plain(Fabric, f, efficiency=plain(FabricEfficiency, f.efficiency),
                              in_switch_reduction=None if f.in_switch_reduction is None
                              else plain(InSwitchReduction, f.in_switch_reduction))
                        for f in file.fabrics)
        return cls(
            name=file.name, description=file.description, chip=file.chip, path=path,
            dies_per_chip=file.dies_per_chip, num_dies=file.num_dies, dies_per_node=_dies_per_node(file),
            peaks=plain(Peaks, file.peak),
            memory=plain(Memory, file.memory), memory_reserve=plain(MemoryReserve, file.memory_reserve),
            gemm_efficiency=plain(GemmEfficiency, e.gemm, by_dtype=_gemm_by_dtype(file)),
            attention_efficiency=plain(AttentionEfficiency, e.attention),
            memory_efficiency=plain(MemoryEfficiency, e.memory), overheads=plain(Overheads, file.overheads),
            collectives=plain(Collectives, file.collectives), fabrics=fabrics,
            overlap=plain(Overlap, file.overlap) if file.overlap is not None else Overlap(),
            kernels=Kernels(fused=frozenset(file.kernels.fused), fused_eager=frozenset(file.kernels.fused_eager))
            if file.kernels is not None else Kernels(),
            attention_math=_attention_math(file), _file=file,
        )

    def document(self) -> dict[str, Any]:
        """The validated profile as a JSON-ready dict (for ``profiles show``, reports, calibration)."""
        return self._file.model_dump(mode="json")

    @property
    def num_chips(self) -> int | float:
        """Chips in the system (dies / dies per chip); an int when it divides evenly."""
        chips = self.num_dies / self.dies_per_chip
        return int(chips) if chips.is_integer() else chips

    @property
    def hbm_bytes(self) -> float:
        return self.memory.hbm_bytes

    @property
    def hbm_bandwidth_bytes_per_s(self) -> float:
        return self.memory.hbm_bandwidth_bytes_per_s

    @property
    def supported_dtypes(self) -> tuple[Dtype, ...]:
        return tuple(d for d in Dtype if getattr(self.peaks, f"{d.value}_flops_per_s"))

    def peak_flops_per_s(self, dtype: Dtype | str) -> float:
        """Dense peak FLOP/s per die for ``dtype``; an unlisted dtype is an error, never derived."""
        dtype = Dtype(dtype)
        value = getattr(self.peaks, f"{dtype.value}_flops_per_s")
        if not value:
            have = ", ".join(d.value for d in self.supported_dtypes)
            raise UnsupportedDtypeError(
                f"{dtype.value} is not supported by this hardware (it lists no "
                f"{dtype.value}_flops_per_s)",
                where=f"{self.path.name}: peak",
                fix=f"choose one of: {have}",
            )
        return value

    def gemm_max_frac(self, dtype: Dtype | str) -> float:
        """The GEMM curve's asymptote for GEMMs computing in ``dtype`` (its override, else the shared one)."""
        own = self.gemm_efficiency.by_dtype.get(Dtype(dtype))
        return own.max_frac if own is not None and own.max_frac is not None else self.gemm_efficiency.max_frac

    def gemm_memory_frac(self, dtype: Dtype | str) -> float:
        """HBM efficiency of the weight stream of GEMMs computing in ``dtype`` (its override, else
        ``efficiency.memory.frac``)."""
        own = self.gemm_efficiency.by_dtype.get(Dtype(dtype))
        return own.memory_frac if own is not None and own.memory_frac is not None else self.memory_efficiency.frac

    def compute_dtype(self, weights: Dtype | str, activations: Dtype | str) -> Dtype:
        """The GEMM math dtype: the wider of weights and activations (w4a8 runs at a8)."""
        w, a = Dtype(weights), Dtype(activations)
        chosen = a if a.bytes_per_element >= w.bytes_per_element else w
        self.peak_flops_per_s(chosen)
        return chosen

    @property
    def pod_dies(self) -> int:
        """Dies of one scale-up domain (a pod: one CloudMatrix384, one NVL72 rack, one 8-GPU server)."""
        return self.num_dies

    @property
    def pod_fabric(self) -> Fabric:
        """The widest fabric inside one pod (UB, NVLink, HCCS)."""
        return self.fabric_for(self.num_dies)

    @property
    def cluster_fabric(self) -> Fabric | None:
        """The fabric that joins pods (RoCE, InfiniBand), or None when the profile describes none."""
        wider = [f for f in self.fabrics if f.dies > self.num_dies]
        return wider[-1] if wider else None

    def kv_fabric(self, same_pod: bool) -> Fabric:
        """The fabric a request's KV crosses: the pod's when prefill and decode share one, else the one
        joining pods (the pod's when the profile describes none)."""
        cluster = self.cluster_fabric
        return self.pod_fabric if same_pod or cluster is None else cluster

    @property
    def max_pods(self) -> int:
        """Pods the cluster fabric joins at most (its ``dies`` over the pod's); 1 without one."""
        cluster = self.cluster_fabric
        return cluster.dies // self.num_dies if cluster is not None else 1

    def fabric_for(self, group_dies: int) -> Fabric:
        """Narrowest fabric whose one domain joins ``group_dies`` contiguous dies."""
        for fabric in self.fabrics:
            if fabric.dies >= group_dies:
                return fabric
        return self.fabrics[-1]

    def fabric(self, scope: Scope) -> Fabric | None:
        for fabric in self.fabrics:
            if fabric.scope == scope:
                return fabric
        return None

    def fabric_named(self, name: str) -> Fabric:
        """The fabric called ``name``; KeyError if the profile has none."""
        for fabric in self.fabrics:
            if fabric.name == name:
                return fabric
        raise KeyError(f"{self.name} has no fabric '{name}'")


def _attention_math(file: HardwareFile) -> dict[Dtype, Dtype]:
    """``{kv dtype: attention math dtype}`` for the quantised KV dtypes the profile lists."""
    section = file.attention_math
    if section is None:
        return {}
    pairs = {Dtype.INT8: section.int8_kv, Dtype.FP8: section.fp8_kv, Dtype.FP4: section.fp4_kv}
    return {kv: Dtype(math) for kv, math in pairs.items() if math is not None}


def _gemm_by_dtype(file: HardwareFile) -> dict[Dtype, GemmDtypeEfficiency]:
    """``{math dtype: its GEMM overrides}`` for the ``[efficiency.gemm.by_dtype.*]`` tables present."""
    by = file.efficiency.gemm.by_dtype
    if by is None:
        return {}
    return {Dtype(name): plain(GemmDtypeEfficiency, table) for name in type(by).model_fields
            if (table := getattr(by, name)) is not None}


def _dies_per_node(file: HardwareFile) -> int:
    """The profile's ``dies_per_node``, else its server-scope fabric's domain, else the whole pod."""
    if file.dies_per_node is not None:
        return file.dies_per_node
    return next((f.dies for f in file.fabrics if f.scope == Scope.SERVER), file.num_dies)


def load_hardware(path: Path) -> HardwareSpec:
    """Load and validate a hardware profile TOML."""
    return HardwareSpec.from_file(load_file(HardwareFile, path), path)


def hardware_from_document(document: dict[str, Any], path: Path) -> HardwareSpec:
    """Validate a (possibly edited) profile document, as :meth:`HardwareSpec.document` gives it."""
    return HardwareSpec.from_file(validate_data(HardwareFile, document, str(path)), path)
