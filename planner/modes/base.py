"""What a deployment mode is to the planner: one entry with its knobs, candidates, step model and summary.

Knob names are the layout file's decode-pool keys (``planner.inputs.layout``); candidate sets
carry one array per knob under the same names, so a candidate row and a written-down layout go
through the same functions (N candidates in the search, N = 1 in ``evaluate``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from planner import goodput as gp
from planner.cost.roofline import Array
from planner.inputs.layout import Mode
from planner.inputs.model import ModelSpec
from planner.search.space import CandidateSet
from planner.serving.context import Env
from planner.serving.prefill import PrefillArrays
from planner.serving.result import PoolStep

Knobs = Mapping[str, Any]


def knob(knobs: Knobs, name: str) -> Array:
    """A knob as a float array, (N,) (a scalar layout value becomes shape (1,))."""
    return np.atleast_1d(np.asarray(knobs[name], dtype=float))


@dataclass(frozen=True, slots=True, kw_only=True)
class ModeEntry:
    """One deployment mode.

    Attributes
    ----------
    mode : the layout file's ``mode`` value
    prefill_pool : True when prefill runs on its own pool (pd, transformerless); False when
        instances prefill in chunks inside their decode steps (collocated)
    decode_keys : decode-pool knobs besides ``instances`` (layout keys = candidate array names)
    candidates : ``(model, budget) -> CandidateSet`` of decode instances the search enumerates
    step_arrays : knobs -> the arrays the mode's step model takes
    fits : ``(env, arrays) -> (fits, largest batch)``: the memory check alone (cheap)
    step : ``(env, arrays) -> PoolStep``: the decode step model
    attention_dies, instance_dies : knobs -> dies per instance holding the batch / in all, (N,)
    summary : decode-pool knobs (layout dict) -> one line for tables
    step_floor : ``(env, arrays) -> (N,)`` a floor under ``step``'s step time, never above it bit for bit and
        cheaper (None: none), so a search can skip pricing rows it already puts past the TPOT SLO
    """

    mode: Mode
    prefill_pool: bool
    decode_keys: tuple[str, ...]
    candidates: Callable[[ModelSpec, int], CandidateSet]
    step_arrays: Callable[[Knobs], Any]
    fits: Callable[[Env, Any], tuple[Array, Array]]
    step: Callable[[Env, Any], PoolStep]
    attention_dies: Callable[[Knobs], Array]
    instance_dies: Callable[[Knobs], Array]
    summary: Callable[[Knobs], str]
    step_floor: Callable[[Env, Any], Array] | None = None

    def price(self, env: Env, knobs: Knobs) -> PoolStep:
        """Decode step of the given knob arrays."""
        return self.step(env, self.step_arrays(knobs))


def stages(k: Knobs) -> Array:
    """Pipeline stages of a knob set, (N,): a layout's None / 0, a missing knob or nan (a layout without the
    key in a vector of knobs) is one stage."""
    if k.get("pp") is None:
        return 1.0 + 0.0 * knob(k, "batch" if "batch" in k else "batch_tokens")
    pp = knob(k, "pp")
    return np.where(np.isfinite(pp) & (pp > 1.0), pp, 1.0)


def prefill_arrays(k: Knobs) -> PrefillArrays:
    """Prefill-pool knobs (layout keys) -> the prefill step model's arrays (every mode with a prefill pool)."""
    pp = stages(k) if k.get("pp") is not None else None
    return PrefillArrays(dies=knob(k, "dies"), tp=knob(k, "tp"), ep=knob(k, "ep"), batch_tokens=knob(k, "batch_tokens"),
                         micro_batches=knob(k, "micro_batches"), redundant=knob(k, "redundant_experts"), pp=pp)


def chunk_terms(env: Env, step: PoolStep, knobs: Knobs) -> gp.ChunkTerms | None:
    """The TPOT-spread terms of a priced decode step with chunked prefill (None without), (N,) each."""
    if step.chunk_step_s is None:
        return None
    return gp.ChunkTerms.of(plain_step_s=step.plain_step_s, chunk_step_s=step.chunk_step_s,
                            fraction=step.chunk_fraction, tp=knob(knobs, "tp"),
                            chunk_tokens=knob(knobs, "prefill_chunk_tokens"), new_tokens=env.new_input_tokens)
