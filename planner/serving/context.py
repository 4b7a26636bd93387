"""Everything a step-time model needs that does not vary across candidates."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from planner.cost.expert_load import decode_context_cv, prefill_work_cv
from planner.cost.precision import BytesPerElement, attention_math_dtype
from planner.cost.roofline import Device
from planner.inputs.expert_load import ExpertLoad
from planner.inputs.hardware import HardwareSpec
from planner.inputs.model import ModelSpec
from planner.inputs.scenario import Scenario
from planner.xccl import CallCosts


@dataclass(frozen=True, slots=True, kw_only=True)
class Env:
    """Model, hardware and scenario scalars shared by every candidate of one evaluation."""

    model: ModelSpec
    hw: HardwareSpec
    dev: Device
    by: BytesPerElement
    calls: CallCosts
    prefill_load: ExpertLoad          # expert load model of the prefill pool
    decode_load: ExpertLoad           # ... of the decode pool
    decode_context_cv: float          # CV of a decoding sequence's context (DP-rank imbalance)
    prefill_work_cv: float            # CV of a prompt's causal attention work (DP-rank imbalance)
    dp_count_dispersion: float        # variance / mean of the sequences a decode DP rank holds
    input_tokens: float
    new_input_tokens: float
    prefix_tokens: float
    output_tokens: float
    decode_context_tokens: float
    max_context_tokens: float
    draft_tokens: int
    tokens_per_step: float

    @classmethod
    def of(cls, scenario: Scenario, *, draft_tokens: int | None = None) -> Env:
        hw, model, p, w = scenario.hardware, scenario.model, scenario.precision, scenario.workload
        by = BytesPerElement.of(hw, p.weights, p.activations, p.kv_cache)
        drafts = scenario.mtp_draft_tokens if draft_tokens is None else draft_tokens
        acc = scenario.mtp.acceptance
        hit = w.cache_hit_rate
        return cls(
            model=model, hw=hw, dev=Device.of(hw, by.compute_dtype, attention_math_dtype(hw, p.kv_cache)), by=by,
            calls=CallCosts.of(hw), prefill_load=scenario.experts.prefill, decode_load=scenario.experts.decode,
            decode_context_cv=decode_context_cv(w.input_tokens, w.input_cv, w.output_tokens, w.output_cv),
            prefill_work_cv=prefill_work_cv(w.input_cv),
            dp_count_dispersion=scenario.experts.decode.params.dp_count_dispersion,
            input_tokens=float(w.input_tokens), new_input_tokens=w.input_tokens * (1 - hit),
            prefix_tokens=w.input_tokens * hit, output_tokens=float(w.output_tokens),
            decode_context_tokens=scenario.decode_context_tokens,
            max_context_tokens=float(scenario.max_context_tokens), draft_tokens=drafts,
            tokens_per_step=1.0 + sum(acc**i for i in range(1, drafts + 1)),
        )

    @property
    def per_row(self) -> bool:
        """Whether hardware parameters are arrays, one value per row (planner.decide prices each sample of the
        efficiencies on rows of its own): rows then differ beyond their knobs, so a step model must not price
        rows with equal knobs once (planner.serving.transformerless.DEDUP_MIN_ROWS)."""
        parts = [self.dev, self.calls, *self.hw.fabrics, *(f.efficiency for f in self.hw.fabrics)]
        return any(np.ndim(getattr(p, f.name)) > 0 for p in parts for f in fields(p))

    @property
    def window(self) -> float:
        return float(self.model.sliding_window_tokens)
