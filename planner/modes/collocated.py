"""collocated: one pool; steps carry a prefill chunk per die beside the decode batch when there is prefill work.

The mean step is load-consistent (planner.goodput.chunk_fraction): at a decode batch ``b`` per die
a share ``f = min(1, b mu N / (L C))`` of the steps carries a chunk of ``C`` tokens per die, so
``step = plain + f (chunk - plain)``, both steps priced by planner.serving.decode at the batch.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from planner import goodput as gp
from planner.inputs.layout import Mode
from planner.inputs.model import ModelSpec
from planner.modes import pd
from planner.modes.base import Knobs, ModeEntry
from planner.search.space import CandidateSet
from planner.serving.context import Env
from planner.serving.decode import DecodeArrays, decode_fits, shared_decode_step
from planner.serving.result import PoolStep

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


def collocated_step(env: Env, d: DecodeArrays) -> PoolStep:
    """Mean step of collocated dies at their batch: steps with and without a chunk, mixed by load.

    ``layers`` (per-op costs) are a chunk step's; ``layer_s`` and ``extra`` are mixed like the step,
    so they still add up to it.  Memory and fit are the chunk step's (its workspace is reserved).
    """
    chunk = shared_decode_step(env, d)
    plain = shared_decode_step(env, replace(d, chunk_tokens=0.0 * np.asarray(d.chunk_tokens, dtype=float)))
    f = gp.chunk_fraction(d.batch, d.chunk_tokens, new_tokens=env.new_input_tokens, output_tokens=env.output_tokens,
                          tokens_per_step=env.tokens_per_step)

    def mix(a: dict, b: dict) -> dict:
        return {k: gp.chunked_step_s(b[k], a[k], f) for k in a}

    return replace(chunk, step_s=gp.chunked_step_s(plain.step_s, chunk.step_s, f),
                   layer_s=mix(chunk.layer_s, plain.layer_s), extra=mix(chunk.extra, plain.extra),
                   plain_step_s=plain.step_s, chunk_step_s=chunk.step_s, chunk_fraction=f)


def summary(d: Knobs) -> str:
    return f"{pd.summary(d)} chunk{d['prefill_chunk_tokens']}"


COLLOCATED = ModeEntry(mode=Mode.COLLOCATED, prefill_pool=False,
                       decode_keys=(*pd.PD.decode_keys, "prefill_chunk_tokens"), candidates=candidates,
                       step_arrays=pd.step_arrays, fits=decode_fits, step=collocated_step,
                       attention_dies=pd.dies, instance_dies=pd.dies, summary=summary)
