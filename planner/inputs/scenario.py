"""Scenario: model + hardware + workload + precision + MTP + SLO + die budget.

The scenario TOML (and the ``[scenario]`` table a layout file may embed) uses these fields;
CLI flags override them.  Defaults are the built-in default scenario (DeepSeek-V3 on
CloudMatrix384, 768 dies, 4096 in / 1024 out, TTFT p90 <= 2 s, TPOT <= 50 ms, int8 weights and
activations, bf16 KV cache, one MTP draft token accepted with probability 0.7).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field, ModelWrapValidatorHandler, model_validator

from planner import catalog
from planner.capped_gamma import min_cap_sd
from planner.errors import DataFileError, UnsupportedDtypeError
from planner.inputs.expert_load import ExpertLoad, LoadParams, Policy, load_params, read_counts
from planner.inputs.files import Dies, Strict, Text, lax, load_file, plain, ranged
from planner.inputs.hardware import HardwareSpec
from planner.inputs.model import ModelSpec
from planner.units import Dtype

# Plausible ranges of the workload (planner.inputs.files has the others, each with its reason).
InputTokens = ranged(int, 1, 10_000_000, "the longest published context is 10M tokens", "tokens")
OutputTokens = ranged(int, 2, 10_000_000, "TPOT needs 2 or more; the longest published context is 10M tokens",
                      "tokens")
Cv = ranged(float, 0.0, 10.0, "a coefficient of variation of request lengths; published traces have 0.5-3")
Weight = ranged(float, 0.0, 1e12, "a relative frequency", open_low=True)
Histogram = Annotated[list[lax(tuple[InputTokens, Weight])], Field(min_length=1, max_length=1000)]
# A cap this close to the smallest the capped-gamma model admits (relative, in standard deviations) is refused
# with it: at the limit the truncated gamma degenerates to a power law and its shape is ill-conditioned.
CAP_SD_MARGIN = 1e-3

# One MTP draft token accepted with probability 0.7 (DeepSeek-V3 report: 85-90% acceptance of the
# second token; 0.7 is conservative).  Models without MTP layers run without it.
DEFAULT_MTP_ACCEPTANCE = 0.7

# xDeepServe collects EPLB statistics about every minute (arXiv:2508.02520v6 sec. 4.5, reference
# row A15); DeepSeek refreshes its prefill placement every ~10 min (A16).
DEFAULT_REBALANCE_PERIOD_S = 60.0
# The one value of the removed key ``experts.hot_expert_ratio`` old files may carry: its default,
# which every layout the planner wrote embeds.  It is dropped; any other value is an error.
_OLD_HOT_EXPERT_RATIO = 30.0

ExpertBalance = Policy
MatrixPath = Annotated[str, Field(min_length=1, max_length=4096)]


class WorkloadSection(Strict):
    """Request lengths: a mean and a coefficient of variation, or a histogram of [tokens, weight] pairs
    (which sets the mean and the CV; the models use those two moments), and optionally the longest
    prompt, ``input_max_tokens`` (prompt lengths are then a gamma capped there with that mean and
    CV: planner/capped_gamma.py; unset, an uncapped gamma)."""

    input_tokens: InputTokens = 4096
    output_tokens: OutputTokens = 1024
    input_cv: Cv = 0.0
    output_cv: Cv = 0.0
    cache_hit_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    input_histogram: Histogram | None = None
    output_histogram: Histogram | None = None
    input_max_tokens: InputTokens | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _moments_from_histograms(cls, data: Any, handler: ModelWrapValidatorHandler[WorkloadSection]
                                 ) -> WorkloadSection:
        """A histogram sets the mean and the CV; given with a different mean or CV, it is an error."""
        section = handler(data)
        derived: dict[str, Any] = {}
        for kind in ("input", "output"):
            hist = getattr(section, f"{kind}_histogram")
            if hist is None:
                continue
            tokens, weights = np.array(hist, dtype=float).T
            mean = float(np.average(tokens, weights=weights))
            cv = float(np.sqrt(np.average((tokens - mean) ** 2, weights=weights)) / mean)
            n = max(round(mean), 2)
            given = section.model_fields_set
            if f"{kind}_tokens" in given and getattr(section, f"{kind}_tokens") != n:
                raise ValueError(f"{kind}_tokens = {getattr(section, f'{kind}_tokens')} and {kind}_histogram "
                                 f"(mean {n} tokens) are both given; give one of them (a flag cannot override "
                                 "a scenario's histogram)")
            if f"{kind}_cv" in given and not math.isclose(getattr(section, f"{kind}_cv"), cv, rel_tol=1e-4,
                                                           abs_tol=1e-6):
                raise ValueError(f"{kind}_cv = {getattr(section, f'{kind}_cv')} and {kind}_histogram "
                                 f"(CV {cv:.3g}) are both given; give one of them")
            derived |= {f"{kind}_tokens": n, f"{kind}_cv": cv}
        section = section.model_copy(update=derived) if derived else section
        _check_input_cap(section)
        return section


def _check_input_cap(w: WorkloadSection) -> None:
    """``input_max_tokens`` at or above the mean and every histogram prompt, and far enough above the mean
    for a capped gamma of ``input_cv`` to exist (planner.capped_gamma.min_cap_sd)."""
    cap, mean, cv = w.input_max_tokens, w.input_tokens, w.input_cv
    if cap is None:
        return
    of = ", the mean of input_histogram" if w.input_histogram else ""
    if cap < mean:
        raise ValueError(f"input_max_tokens = {cap} is below input_tokens = {mean}{of}; give the longest prompt "
                         "(at least the mean), or leave input_max_tokens out (no cap)")
    longest = max(t for t, _ in w.input_histogram) if w.input_histogram else 0
    if longest > cap:
        raise ValueError(f"input_histogram has prompts of {longest} tokens, more than input_max_tokens = {cap}: "
                         f"raise input_max_tokens to at least {longest}, or leave it out")
    need_sd = min_cap_sd(cv) * (1.0 + CAP_SD_MARGIN)
    if cv > 0 and (cap / mean - 1.0) / cv < need_sd:
        least = math.ceil(mean * (1.0 + cv * need_sd))
        raise ValueError(f"input_max_tokens = {cap} is too close to the mean prompt ({mean} tokens{of}) for "
                         f"input_cv = {cv:.3g}: no gamma capped there has that spread (prompt lengths are a gamma "
                         f"truncated at the cap with the mean and CV given); give a cap of at least {least} "
                         "tokens, or leave input_max_tokens out")


class PrecisionSection(Strict):
    weights: lax(Dtype) = Dtype.INT8
    activations: lax(Dtype) = Dtype.INT8
    kv_cache: lax(Dtype) = Dtype.BF16


class MtpSection(Strict):
    """Draft tokens and their acceptance; a model without MTP layers runs without (acceptance 0)."""

    draft_tokens: ranged(int, 0, 4, "MTP drafts 1-2 tokens per step in published deployments") = 1
    acceptance: ranged(float, 0.0, 1.0, "a probability") = DEFAULT_MTP_ACCEPTANCE


class SloSection(Strict):
    """TTFT at a percentile; TPOT as the mean over requests (``tpot_percentile`` unset) or at a percentile."""

    ttft_s: ranged(float, 1e-3, 3600.0, "1 ms to 1 h: no prefill takes under 1 ms; over an hour is batch work",
                   "s") = 2.0
    ttft_percentile: Annotated[float, Field(gt=0, lt=100)] = 90.0
    tpot_s: ranged(float, 1e-4, 60.0, "0.1 ms to 1 min per output token", "s") = 0.05
    tpot_percentile: Annotated[float, Field(ge=50, lt=100)] | None = None


class ExpertsSection(Strict):
    """Expert load (planner/cost/expert_load.py): the balance policy, the rebalance period, and
    measured per-layer expert-count matrices (both pools, or prefill / decode apart)."""

    balance: lax(ExpertBalance) = ExpertBalance.EPLB
    rebalance_period_s: ranged(float, 0.0, 1e7, "0 (in-distribution statistics) to ~4 months", "s") = \
        DEFAULT_REBALANCE_PERIOD_S
    load_file: MatrixPath | None = None
    prefill_load_file: MatrixPath | None = None
    decode_load_file: MatrixPath | None = None

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, data: Any) -> Any:
        """Files written before the per-layer model: ``balance = "skewed"`` reads as ``"eplb"``; the
        default ``hot_expert_ratio = 30`` is dropped, any other value is refused with the fix."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("balance") == "skewed":
            data["balance"] = ExpertBalance.EPLB.value
        if "hot_expert_ratio" in data:
            ratio = data.pop("hot_expert_ratio")
            if ratio != _OLD_HOT_EXPERT_RATIO:
                raise ValueError("hot_expert_ratio was removed: the expert skew is now per layer, fitted on "
                                 "measured rows (measurements/expert_load.toml); delete the key, or give a "
                                 "measured per-layer expert-count matrix with load_file (--expert-load FILE)")
        return data

    @model_validator(mode="after")
    def _measured_needs_a_matrix(self) -> ExpertsSection:
        if self.balance == ExpertBalance.MEASURED and not (self.load_file or self.prefill_load_file
                                                           or self.decode_load_file):
            raise ValueError("balance = 'measured' needs a measured expert-count matrix: set load_file "
                             "(--expert-load FILE), prefill_load_file or decode_load_file")
        return self


UsdPerHour = ranged(float, 0.0, 1e4, "USD per hour; cloud accelerators rent for about 1-10 per die or chip",
                    open_low=True)


class CostSection(Strict):
    """Hardware price per hour (USD), per die or per chip (one of the two), of ``hardware``; the
    ``prefill_`` pair prices ``prefill_hardware`` (planner/decide/cost.py)."""

    usd_per_die_hour: UsdPerHour | None = None
    usd_per_chip_hour: UsdPerHour | None = None
    prefill_usd_per_die_hour: UsdPerHour | None = None
    prefill_usd_per_chip_hour: UsdPerHour | None = None
    source: Text | None = None

    @model_validator(mode="after")
    def _one_price_each(self) -> CostSection:
        for pre in ("", "prefill_"):
            if getattr(self, f"{pre}usd_per_die_hour") is not None and getattr(self, f"{pre}usd_per_chip_hour"):
                raise ValueError(f"give {pre}usd_per_die_hour or {pre}usd_per_chip_hour, not both")
        if self.usd_per_die_hour is None and self.usd_per_chip_hour is None:
            raise ValueError("give usd_per_die_hour or usd_per_chip_hour (the price of `hardware`)")
        return self


class ScenarioFile(Strict):
    model: Annotated[Text, Field(min_length=1)] = "deepseek-v3"
    hardware: Annotated[Text, Field(min_length=1)] = "cloudmatrix384"
    dies: Dies = 768
    # Scale-up domains (pods) the dies may use: one CloudMatrix384, one NVL72 rack, one 8-GPU server
    # each (the profile's num_dies); more than one are joined by the profile's cluster fabric.
    pods: Annotated[int, Field(ge=1, le=4096)] = 1
    # Mixed hardware: the prefill pool on another profile (its own pods and die budget); the decode
    # pool (and collocated instances) stay on `hardware`.  Unset: every pool on `hardware`.
    prefill_hardware: Annotated[Text, Field(min_length=1)] | None = None
    prefill_pods: Annotated[int, Field(ge=1, le=4096)] | None = None
    prefill_dies: Dies | None = None
    workload: WorkloadSection = WorkloadSection()
    precision: PrecisionSection = PrecisionSection()
    mtp: MtpSection = MtpSection()
    slo: SloSection = SloSection()
    experts: ExpertsSection = ExpertsSection()
    cost: CostSection | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """Request lengths (mean and coefficient of variation, the longest prompt) and the prefix-cache hit rate."""

    input_tokens: int
    output_tokens: int
    input_cv: float
    output_cv: float
    cache_hit_rate: float
    input_max_tokens: int | None = None

    @property
    def input_cap_sd(self) -> float:
        """The longest prompt in standard deviations above the mean, ``(max / mean - 1) / cv``; inf: no cap
        (or ``cv = 0``: every prompt the same length).  Any time linear in the prompt has it too."""
        if self.input_max_tokens is None or self.input_cv <= 0:
            return math.inf
        return (self.input_max_tokens / self.input_tokens - 1.0) / self.input_cv


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
    """Service-level objectives: TTFT at a percentile; TPOT mean (``tpot_percentile`` None) or at a percentile."""

    ttft_s: float
    ttft_percentile: float
    tpot_s: float
    tpot_percentile: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Experts:
    """Expert load of each pool: the policy, its parameters and the skew (fitted, or a measured
    matrix read and checked against the model)."""

    balance: ExpertBalance
    rebalance_period_s: float
    prefill: ExpertLoad
    decode: ExpertLoad


def experts_of(section: ExpertsSection, model: ModelSpec, params: LoadParams | None = None) -> Experts:
    """Each pool's :class:`ExpertLoad`; its matrix file (pool-specific, else ``load_file``) is read here.

    Under ``measured`` a pool given no matrix runs ``eplb`` on the fitted skew (a matrix for decode
    only leaves prefill as it was)."""
    params = params or load_params()

    def pool(path: str | None) -> ExpertLoad:
        counts = read_counts(path, model) if path else None
        policy = ExpertBalance.EPLB if section.balance == ExpertBalance.MEASURED and counts is None else section.balance
        return ExpertLoad(policy=policy, params=params, rebalance_period_s=section.rebalance_period_s, counts=counts)

    return Experts(balance=section.balance, rebalance_period_s=section.rebalance_period_s,
                   prefill=pool(section.prefill_load_file or section.load_file),
                   decode=pool(section.decode_load_file or section.load_file))


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """Hardware price per die-hour (USD; a chip-hour price spread over the chip's dies) and its source."""

    usd_per_die_hour: float
    source: str


def prices_of(section: CostSection | None, hardware: HardwareSpec, prefill_hardware: HardwareSpec | None
              ) -> tuple[Price | None, Price | None]:
    """(price of ``hardware``, of ``prefill_hardware``) from the ``[cost]`` section (None: not priced)."""
    if section is None:
        return None, None
    source = section.source or "assumed (no source given)"

    def price(pre: str, hw: HardwareSpec | None) -> Price | None:
        die, chip = getattr(section, f"{pre}usd_per_die_hour"), getattr(section, f"{pre}usd_per_chip_hour")
        if hw is None or (die is None and chip is None):
            return None
        return Price(usd_per_die_hour=die if die is not None else chip / hw.dies_per_chip, source=source)

    main = price("", hardware)
    has_prefill_price = section.prefill_usd_per_die_hour is not None or section.prefill_usd_per_chip_hour is not None
    if prefill_hardware is None:
        if has_prefill_price:
            raise DataFileError("cost.prefill_usd_per_* is given but the prefill pool has no hardware of its own",
                                fix="leave it out, or set prefill_hardware (--prefill-hardware)")
        return main, main
    if main is not None and not has_prefill_price:  # never charge one chip's price for another
        raise DataFileError(f"cost prices {hardware.name} but not the prefill hardware {prefill_hardware.name}",
                            fix="add cost.prefill_usd_per_die_hour or prefill_usd_per_chip_hour")
    return main, price("prefill_", prefill_hardware)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A resolved scenario: the model and hardware it names loaded, every section as plain values."""

    model: ModelSpec
    hardware: HardwareSpec
    dies: int
    pods: int
    workload: Workload
    precision: Precision
    mtp: Mtp
    slo: Slo
    experts: Experts
    _file: ScenarioFile = field(repr=False, compare=False)
    # Mixed hardware: the prefill pool's own profile and budget (None: prefill runs on `hardware`).
    prefill_hardware: HardwareSpec | None = None
    prefill_pods: int = 1
    prefill_dies: int = 0
    # Dotted fields nobody gave (neither the scenario file nor a flag): the header states them as assumed.
    assumed: tuple[str, ...] = ()
    # Hardware prices (``[cost]``): of `hardware`, and of the prefill pool's hardware (None: not priced).
    price: Price | None = None
    prefill_price: Price | None = None

    @classmethod
    def from_file(cls, file: ScenarioFile, model: ModelSpec, hardware: HardwareSpec,
                  prefill_hardware: HardwareSpec | None = None) -> Scenario:
        """Plain values of a validated scenario whose model and hardware are already loaded."""
        pre_pods = file.prefill_pods or 1
        pre_dies = file.prefill_dies or (pre_pods * prefill_hardware.pod_dies if prefill_hardware else 0)
        price, prefill_price = prices_of(file.cost, hardware, prefill_hardware)
        return cls(model=model, hardware=hardware, dies=file.dies, pods=file.pods, price=price,
                   prefill_price=prefill_price,
                   workload=plain(Workload, file.workload), precision=plain(Precision, file.precision),
                   mtp=plain(Mtp, file.mtp), slo=plain(Slo, file.slo), experts=experts_of(file.experts, model),
                   _file=file, prefill_hardware=prefill_hardware, prefill_pods=pre_pods, prefill_dies=pre_dies)

    def document(self) -> dict[str, Any]:
        """The validated scenario as a JSON-ready dict (reports, a layout's ``[scenario]`` table).

        A file given by absolute path (``--model /home/me/card.toml``) is written relative to the
        working directory: machine output holds no absolute paths.
        """
        return _portable(self._file.model_dump(mode="json"))

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


def _portable(value: Any) -> Any:
    """``value`` with every absolute path string made relative to the working directory."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, str) and os.path.isabs(value):
        return os.path.relpath(value)
    return value


def check_dtypes(hardware: HardwareSpec, precision: PrecisionSection | Precision, where: str | None = None) -> None:
    """Weights, activations and KV cache each in a dtype the profile lists (never derived from another)."""
    have = ", ".join(d.value for d in hardware.supported_dtypes)
    for role, flag in (("weights", "--weights-dtype"), ("activations", "--activations-dtype"),
                       ("kv_cache", "--kv-dtype")):
        dtype = getattr(precision, role)
        if dtype not in hardware.supported_dtypes:
            raise UnsupportedDtypeError(
                f"precision.{role} = {dtype.value}, which {hardware.name} does not support (its profile lists no "
                f"{dtype.value}_flops_per_s; it has {have})", where=where, fix=f"choose {flag} from: {have}")
    hardware.compute_dtype(precision.weights, precision.activations)


def _check_pods(dies: int, pods: int, hardware: HardwareSpec, keys: tuple[str, str]) -> None:
    """``dies`` within ``pods`` pods of ``hardware``, and no more pods than its cluster fabric joins."""
    pod, (dies_key, pods_key) = hardware.pod_dies, keys
    flag = "--" + pods_key.replace("_", "-")
    if pods > hardware.max_pods:
        joined = (f"its cluster fabric ({hardware.cluster_fabric.name}) joins at most {hardware.max_pods} pods"
                  if hardware.cluster_fabric is not None else "its profile describes no fabric joining pods")
        raise DataFileError(f"{pods_key} = {pods} but {hardware.name} cannot have that many: {joined}",
                            fix=f"ask for at most {hardware.max_pods} pods")
    if dies > pods * pod:
        need = -(-dies // pod)
        raise DataFileError(
            f"{dies_key} = {dies} is more than {pods} pod{'s' if pods > 1 else ''} of {hardware.name} hold "
            f"({pod} dies each)", fix=f"ask for {flag} {need} ({pods_key} = {need} in the scenario) or fewer dies")


def _check_fits(file: ScenarioFile, model: ModelSpec, hardware: HardwareSpec) -> None:
    """The question must be one the model and hardware can answer: dies it has, contexts the model takes."""
    _check_pods(file.dies, file.pods, hardware, ("dies", "pods"))
    w = file.workload
    longest_in = w.input_max_tokens or (max(t for t, _ in w.input_histogram) if w.input_histogram else w.input_tokens)
    longest_out = max(t for t, _ in w.output_histogram) if w.output_histogram else w.output_tokens
    limit = model.max_position_embeddings
    if longest_in + longest_out > limit:
        what = ("input_max_tokens" if w.input_max_tokens else "the longest prompt" if w.input_histogram
                else "input_tokens")
        raise DataFileError(
            f"{what} ({longest_in}) + output ({longest_out}) = {longest_in + longest_out} tokens is more than "
            f"{model.name} takes (max_position_embeddings = {limit})",
            fix=f"keep input + output tokens within {limit}, or choose a model with a longer context")


def resolve_scenario(file: ScenarioFile) -> Scenario:
    """Load the model card and hardware profile a scenario names; check it asks what they can answer.

    Refused (exit 2): more dies than the hardware has, a request longer than the model's context,
    a weights, activations or KV-cache dtype the hardware does not list.
    """
    model, hardware = catalog.model(file.model), catalog.hardware(file.hardware)
    _check_fits(file, model, hardware)
    check_dtypes(hardware, file.precision)
    prefill_hw = None
    if file.prefill_hardware is not None:
        prefill_hw = catalog.hardware(file.prefill_hardware)
        pods = file.prefill_pods or 1
        _check_pods(file.prefill_dies or pods * prefill_hw.pod_dies, pods, prefill_hw, ("prefill_dies", "prefill_pods"))
        check_dtypes(prefill_hw, file.precision, "prefill_hardware")
    elif file.prefill_pods is not None or file.prefill_dies is not None:
        raise DataFileError("prefill_pods / prefill_dies are given without prefill_hardware",
                            fix="add --prefill-hardware NAME, or leave them out (prefill then shares --pods)")
    return Scenario.from_file(file, model, hardware, prefill_hw)


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
    scenario = resolve_scenario(_with_model_defaults(validate_data(ScenarioFile, data, where), base, overrides, where))
    return dataclasses.replace(scenario, assumed=assumed_fields(base, overrides))


def assumed_fields(base: ScenarioFile | None, overrides: dict[str, Any]) -> tuple[str, ...]:
    """Dotted names of the scenario fields neither ``base`` (as written) nor a flag gave, in schema order.

    A histogram gives the mean and CV of its lengths; optional fields (default None: no histogram,
    a mean TPOT SLO, no measured expert load) are not listed.
    """
    out = []
    for name, info in ScenarioFile.model_fields.items():
        given = base is not None and name in base.model_fields_set
        if info.default is None:  # optional: no mixed hardware, no price
            continue
        if not isinstance(info.default, Strict):
            if not given and overrides.get(name) is None:
                out.append(name)
            continue
        written = getattr(base, name).model_fields_set if given else set()
        flags = overrides.get(name) or {}
        for key, sub in type(info.default).model_fields.items():
            histogram = key.replace("_tokens", "_histogram").replace("_cv", "_histogram")
            if sub.default is None or written & {key, histogram} or flags.get(key) is not None:
                continue
            out.append(f"{name}.{key}")
    return tuple(out)


def _with_model_defaults(file: ScenarioFile, base: ScenarioFile | None, overrides: dict[str, Any],
                         where: str) -> ScenarioFile:
    """Defaults that depend on the model and hardware, applied only where the user gave no value.

    The die budget defaults to every die of the pods asked for (one pod by default); MTP acceptance defaults to 0.7
    on a model with MTP layers and to 0 on one without (asking for MTP there is an error).
    """
    def asked(section: str | None, key: str) -> bool:
        flag = (overrides.get(section) or {}).get(key) if section else overrides.get(key)
        given = base is not None and key in (getattr(base, section) if section else base).model_fields_set
        return flag is not None or given

    update: dict[str, Any] = {}
    hardware = catalog.hardware(file.hardware)
    if not asked(None, "dies"):
        update["dies"] = file.pods * hardware.pod_dies  # every die of the pods asked for
    model = catalog.model(file.model)
    if model.num_mtp_layers == 0 and file.mtp.acceptance > 0:
        if asked("mtp", "acceptance"):
            raise DataFileError(f"mtp.acceptance = {file.mtp.acceptance} but {model.name} has no MTP layers "
                                "(num_mtp_layers = 0)", where=where,
                                fix="leave out --mtp-acceptance (or set mtp.acceptance = 0) for this model")
        update["mtp"] = file.mtp.model_copy(update={"acceptance": 0.0})
    return file.model_copy(update=update) if update else file


def scenario_overrides(*, model: str | None = None, hardware: str | None = None, dies: int | None = None,
                       pods: int | None = None, prefill_hardware: str | None = None,
                       prefill_pods: int | None = None, prefill_dies: int | None = None,
                       input_tokens: int | None = None, output_tokens: int | None = None,
                       weights_dtype: str | None = None, activations_dtype: str | None = None,
                       kv_dtype: str | None = None, mtp_acceptance: float | None = None,
                       expert_balance: str | None = None,
                       rebalance_period_s: float | None = None, expert_load: str | None = None,
                       prefill_expert_load: str | None = None, decode_expert_load: str | None = None,
                       cache_hit_rate: float | None = None, ttft_s: float | None = None,
                       ttft_percentile: float | None = None, tpot_s: float | None = None,
                       tpot_percentile: float | None = None, usd_per_die_hour: float | None = None,
                       usd_per_chip_hour: float | None = None) -> dict[str, Any]:
    """CLI flags -> the nested override dict :func:`build_scenario` merges (None = not given).

    A measured expert-load matrix (``expert_load``, ``prefill_expert_load``, ``decode_expert_load``)
    without ``expert_balance`` selects the ``measured`` policy (EPLB on the matrix)."""
    if expert_balance is None and (expert_load or prefill_expert_load or decode_expert_load):
        expert_balance = ExpertBalance.MEASURED.value
    return {
        "model": model, "hardware": hardware, "dies": dies, "pods": pods, "prefill_hardware": prefill_hardware,
        "prefill_pods": prefill_pods, "prefill_dies": prefill_dies,
        "workload": {"input_tokens": input_tokens, "output_tokens": output_tokens, "cache_hit_rate": cache_hit_rate},
        "precision": {"weights": weights_dtype, "activations": activations_dtype, "kv_cache": kv_dtype},
        "mtp": {"acceptance": mtp_acceptance},
        "experts": {"balance": expert_balance,
                    "rebalance_period_s": rebalance_period_s, "load_file": expert_load,
                    "prefill_load_file": prefill_expert_load, "decode_load_file": decode_expert_load},
        "slo": {"ttft_s": ttft_s, "ttft_percentile": ttft_percentile, "tpot_s": tpot_s,
                "tpot_percentile": tpot_percentile},
        "cost": ({"usd_per_die_hour": usd_per_die_hour, "usd_per_chip_hour": usd_per_chip_hour}
                 if usd_per_die_hour is not None or usd_per_chip_hour is not None else None),
    }
