"""Scenario: model + hardware + workload + precision + MTP + SLO + die budget.

The scenario TOML (and the ``[scenario]`` table a layout file may embed) uses these fields;
CLI flags override them.  Defaults are the built-in default scenario (DeepSeek-V3 on
CloudMatrix384, 768 dies, 4096 in / 1024 out, TTFT p90 <= 2 s, TPOT <= 50 ms, int8 weights and
activations, bf16 KV cache, one MTP draft token accepted with probability 0.7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field, model_validator

from planner import catalog
from planner.inputs.files import PositiveFloat, PositiveInt, Strict, load_file, plain
from planner.inputs.hardware import HardwareSpec
from planner.inputs.model import ModelSpec
from planner.units import Dtype

# "The hottest expert sees up to 30x the mean on one layer" (DESIGN.md section 3, published
# figure quoted there; xDeepServe arXiv:2508.02520 discusses the same skew).  Overridable.
DEFAULT_HOT_EXPERT_RATIO = 30.0


class ExpertBalance(StrEnum):
    PERFECT = "perfect"
    SKEWED = "skewed"


class WorkloadSection(Strict):
    """Request lengths: a mean and a coefficient of variation, or a histogram of [tokens, weight] pairs
    (which sets the mean and the CV; the models use those two moments)."""

    input_tokens: PositiveInt = 4096
    output_tokens: Annotated[int, Field(ge=2)] = 1024
    input_cv: Annotated[float, Field(ge=0, le=10)] = 0.0
    output_cv: Annotated[float, Field(ge=0, le=10)] = 0.0
    cache_hit_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    input_histogram: list[tuple[PositiveInt, PositiveFloat]] | None = None
    output_histogram: list[tuple[PositiveInt, PositiveFloat]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _moments_from_histograms(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for kind in ("input", "output"):
            hist = data.get(f"{kind}_histogram")
            if hist:
                tokens = np.array([float(t) for t, _ in hist])
                weights = np.array([float(w) for _, w in hist])
                mean = float(np.average(tokens, weights=weights))
                cv = float(np.sqrt(np.average((tokens - mean) ** 2, weights=weights)) / mean)
                data[f"{kind}_tokens"], data[f"{kind}_cv"] = max(round(mean), 2), cv
        return data


class PrecisionSection(Strict):
    weights: Dtype = Dtype.INT8
    activations: Dtype = Dtype.INT8
    kv_cache: Dtype = Dtype.BF16


class MtpSection(Strict):
    draft_tokens: Annotated[int, Field(ge=0, le=4)] = 1
    acceptance: Annotated[float, Field(ge=0, le=1)] = 0.7


class SloSection(Strict):
    ttft_s: PositiveFloat = 2.0
    ttft_percentile: Annotated[float, Field(gt=0, lt=100)] = 90.0
    tpot_s: PositiveFloat = 0.05


class ExpertsSection(Strict):
    balance: ExpertBalance = ExpertBalance.SKEWED
    hot_expert_ratio: Annotated[float, Field(ge=1, le=1000)] = DEFAULT_HOT_EXPERT_RATIO


class ScenarioFile(Strict):
    model: str = "deepseek-v3"
    hardware: str = "cloudmatrix384"
    dies: PositiveInt = 768
    workload: WorkloadSection = WorkloadSection()
    precision: PrecisionSection = PrecisionSection()
    mtp: MtpSection = MtpSection()
    slo: SloSection = SloSection()
    experts: ExpertsSection = ExpertsSection()


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """Request lengths (mean and coefficient of variation) and the prefix-cache hit rate."""

    input_tokens: int
    output_tokens: int
    input_cv: float
    output_cv: float
    cache_hit_rate: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Precision:
    """Dtypes of weights, GEMM activations and the KV cache."""

    weights: Dtype
    activations: Dtype
    kv_cache: Dtype


@dataclass(frozen=True, slots=True, kw_only=True)
class Mtp:
    """Multi-token prediction: draft tokens per step and the acceptance of each."""

    draft_tokens: int
    acceptance: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Slo:
    """Service-level objectives: TTFT at a percentile, and mean TPOT."""

    ttft_s: float
    ttft_percentile: float
    tpot_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Experts:
    """Expert load: perfectly balanced, or skewed with the hottest expert at ``hot_expert_ratio`` x the mean."""

    balance: ExpertBalance
    hot_expert_ratio: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A resolved scenario: the model and hardware it names loaded, every section as plain values."""

    model: ModelSpec
    hardware: HardwareSpec
    dies: int
    workload: Workload
    precision: Precision
    mtp: Mtp
    slo: Slo
    experts: Experts
    _file: ScenarioFile = field(repr=False, compare=False)

    @classmethod
    def from_file(cls, file: ScenarioFile, model: ModelSpec, hardware: HardwareSpec) -> Scenario:
        """Plain values of a validated scenario whose model and hardware are already loaded."""
        return cls(model=model, hardware=hardware, dies=file.dies, workload=plain(Workload, file.workload),
                   precision=plain(Precision, file.precision), mtp=plain(Mtp, file.mtp), slo=plain(Slo, file.slo),
                   experts=plain(Experts, file.experts), _file=file)

    def document(self) -> dict[str, Any]:
        """The validated scenario as a JSON-ready dict (reports, a layout's ``[scenario]`` table)."""
        return self._file.model_dump(mode="json")

    @property
    def file(self) -> ScenarioFile:
        """Deprecated: the pydantic scenario; use the plain attributes or :meth:`document`."""
        return self._file

    @property
    def mtp_draft_tokens(self) -> int:
        """Draft tokens per step; 0 when MTP is off (no MTP layer or acceptance 0)."""
        m = self.mtp
        if m.acceptance <= 0 or self.model.num_mtp_layers == 0:
            return 0
        return m.draft_tokens

    @property
    def tokens_per_step(self) -> float:
        """Expected tokens emitted per sequence per decode step: 1 + sum_i acceptance**i."""
        a = self.mtp.acceptance
        return 1.0 + sum(a**i for i in range(1, self.mtp_draft_tokens + 1))

    @property
    def decode_context_tokens(self) -> float:
        """Mean KV length over the decode of one request: input + output / 2."""
        return self.workload.input_tokens + self.workload.output_tokens / 2

    @property
    def max_context_tokens(self) -> int:
        """KV length a sequence reaches at its last token (memory is reserved for it)."""
        return self.workload.input_tokens + self.workload.output_tokens


def resolve_scenario(file: ScenarioFile) -> Scenario:
    """Load the model card and hardware profile a scenario names; check its precisions."""
    scenario = Scenario.from_file(file, catalog.model(file.model), catalog.hardware(file.hardware))
    p = file.precision
    scenario.hardware.compute_dtype(p.weights, p.activations)
    return scenario


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` (values of None are ignored) into a copy of ``base``."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):
            out[key] = merge_overrides(out.get(key, {}) or {}, value)
        else:
            out[key] = value
    return out


def load_scenario_file(path: Path) -> ScenarioFile:
    return load_file(ScenarioFile, path)


def build_scenario(base: ScenarioFile | None, overrides: dict[str, Any], where: str = "scenario") -> Scenario:
    """Defaults, then ``base`` (a scenario file or a layout's [scenario]), then flag overrides."""
    from planner.inputs.files import validate_data

    data = merge_overrides((base or ScenarioFile()).model_dump(mode="json"), overrides)
    return resolve_scenario(validate_data(ScenarioFile, data, where))


def scenario_overrides(*, model: str | None = None, hardware: str | None = None, dies: int | None = None,
                       input_tokens: int | None = None, output_tokens: int | None = None,
                       weights_dtype: str | None = None, activations_dtype: str | None = None,
                       kv_dtype: str | None = None, mtp_acceptance: float | None = None,
                       expert_balance: str | None = None, hot_expert_ratio: float | None = None,
                       cache_hit_rate: float | None = None, ttft_s: float | None = None,
                       ttft_percentile: float | None = None, tpot_s: float | None = None) -> dict[str, Any]:
    """CLI flags -> the nested override dict :func:`build_scenario` merges (None = not given)."""
    return {
        "model": model, "hardware": hardware, "dies": dies,
        "workload": {"input_tokens": input_tokens, "output_tokens": output_tokens, "cache_hit_rate": cache_hit_rate},
        "precision": {"weights": weights_dtype, "activations": activations_dtype, "kv_cache": kv_dtype},
        "mtp": {"acceptance": mtp_acceptance},
        "experts": {"balance": expert_balance, "hot_expert_ratio": hot_expert_ratio},
        "slo": {"ttft_s": ttft_s, "ttft_percentile": ttft_percentile, "tpot_s": tpot_s},
    }
