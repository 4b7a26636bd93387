"""collocated: one pool; every step carries a prefill chunk per die beside the decode batch."""

from __future__ import annotations

import numpy as np

from planner.inputs.layout import Mode
from planner.inputs.model import ModelSpec
from planner.modes import pd
from planner.modes.base import Knobs, ModeEntry
from planner.search.space import CandidateSet
from planner.serving.decode import decode_fits, shared_decode_step

CHUNK_TOKENS = (256, 512, 1024, 2048, 4096)


def candidates(model: ModelSpec, budget: int) -> CandidateSet:
    """Collocated instances: pd-decode knobs plus the prefill chunk per die and step."""
    c = pd.candidates(model, budget)
    n = len(c)
    chunks = np.asarray(CHUNK_TOKENS, dtype=np.int64)
    for key in list(c.arrays):
        c.arrays[key] = np.repeat(c.arrays[key], len(chunks))
    c.arrays["prefill_chunk_tokens"] = np.tile(chunks, n)
    return c


def summary(d: Knobs) -> str:
    return f"{pd.summary(d)} chunk{d['prefill_chunk_tokens']}"


COLLOCATED = ModeEntry(mode=Mode.COLLOCATED, prefill_pool=False,
                       decode_keys=(*pd.PD.decode_keys, "prefill_chunk_tokens"), candidates=candidates,
                       step_arrays=pd.step_arrays, fits=decode_fits, step=shared_decode_step,
                       attention_dies=pd.dies, instance_dies=pd.dies, summary=summary)
