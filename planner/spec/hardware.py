"""HardwareSpec: a validated hardware profile with the look-ups the cost models need."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from planner.errors import UnsupportedDtypeError
from planner.spec.files import FabricSection, HardwareFile, Scope, load_file
from planner.units import Dtype


@dataclass(frozen=True, slots=True, kw_only=True)
class HardwareSpec:
    """One hardware profile (per-die numbers; see hardware_profiles/*.toml)."""

    file: HardwareFile
    path: Path

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def dies_per_chip(self) -> int:
        return self.file.dies_per_chip

    @property
    def num_dies(self) -> int:
        return self.file.num_dies

    @property
    def num_chips(self) -> int | float:
        """Chips in the system (dies / dies per chip); an int when it divides evenly."""
        chips = self.num_dies / self.dies_per_chip
        return int(chips) if chips.is_integer() else chips

    @property
    def hbm_bytes(self) -> float:
        return self.file.memory.hbm_bytes

    @property
    def hbm_bandwidth_bytes_per_s(self) -> float:
        return self.file.memory.hbm_bandwidth_bytes_per_s

    @property
    def supported_dtypes(self) -> tuple[Dtype, ...]:
        return tuple(d for d in Dtype if getattr(self.file.peak, f"{d.value}_flops_per_s"))

    def peak_flops_per_s(self, dtype: Dtype | str) -> float:
        """Dense peak FLOP/s per die for ``dtype``; an unlisted dtype is an error, never derived."""
        dtype = Dtype(dtype)
        value = getattr(self.file.peak, f"{dtype.value}_flops_per_s")
        if not value:
            have = ", ".join(d.value for d in self.supported_dtypes)
            raise UnsupportedDtypeError(
                f"{dtype.value} is not supported by this hardware (it lists no "
                f"{dtype.value}_flops_per_s)",
                where=f"{self.path.name}: peak",
                fix=f"choose one of: {have}",
            )
        return value

    def compute_dtype(self, weights: Dtype | str, activations: Dtype | str) -> Dtype:
        """The GEMM math dtype: the wider of weights and activations (w4a8 runs at a8)."""
        w, a = Dtype(weights), Dtype(activations)
        chosen = a if a.bytes_per_element >= w.bytes_per_element else w
        self.peak_flops_per_s(chosen)
        return chosen

    @property
    def fabrics(self) -> tuple[FabricSection, ...]:
        return tuple(self.file.fabrics)

    def fabric_for(self, group_dies: int) -> FabricSection:
        """Narrowest fabric whose one domain joins ``group_dies`` contiguous dies."""
        for fabric in self.file.fabrics:
            if fabric.dies >= group_dies:
                return fabric
        return self.file.fabrics[-1]

    def fabric(self, scope: Scope) -> FabricSection | None:
        for fabric in self.file.fabrics:
            if fabric.scope == scope:
                return fabric
        return None


def load_hardware(path: Path) -> HardwareSpec:
    """Load and validate a hardware profile TOML."""
    return HardwareSpec(file=load_file(HardwareFile, path), path=path)
