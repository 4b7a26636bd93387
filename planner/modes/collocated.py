"""collocated: one pool; steps carry a prefill chunk per die beside the decode batch when there is prefill work.

The mean step is load-consistent (planner.goodput.chunk_fraction): at a decode batch ``b`` per die
a TP group carries a chunk of ``C`` tokens per die in a share ``f = min(1, b mu N / (L C))`` of
its steps (an MoE instance of ``g`` groups stepping together: ``1 - (1 - f)^g``), so
``step = plain + f (chunk - plain)``, both steps priced by planner.serving.decode at the batch.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from planner import goodput as gp
from planner.cost.roofline import Cost
from planner.inputs.layout import Mode
from planner.inputs.model import ModelSpec
from planner.modes import pd
from planner.modes.base import Knobs, ModeEntry
from planner.search import space
from planner.search.space import CandidateSet
from planner.serving.context import Env
from planner.serving.decode import DecodeArrays, decode_fits, shared_decode_step
from planner.serving.layers import LayerCost
from planner.serving.result import Deferred, PoolStep

CHUNK_TOKENS = (256, 512, 1024, 2048, 4096)
COST_FIELDS = ("time_s", "flops", "bytes", "compute_s", "memory_s")  # planner.cost.roofline.Cost, in order


def candidates(model: ModelSpec, budget: int) -> CandidateSet:
    """Collocated instances: pd-decode knobs plus the prefill chunk per die and step."""
    c = pd.candidates(model, budget)
    n = len(c)
    chunks = np.asarray(CHUNK_TOKENS, dtype=np.int64)
    for key in list(c.arrays):
        c.arrays[key] = np.repeat(c.arrays[key], len(chunks))
    c.arrays["prefill_chunk_tokens"] = np.tile(chunks, n)
    return c


# Batches per die below the smallest of the search's grid the TPOT(b) curve is also priced at, as
# fractions of the micro-batch count (the smallest batch the grid allows): at a low arrival rate the
# slot wait keeps a small batch (e.g. 4 per die) about one sequence full.
BELOW_GRID = (0.25, 0.5)


def occupancy_batches(batch: float, micro_batches: float) -> np.ndarray:
    """The batches per die a collocated pool's TPOT(b) curve is priced at (0 excluded), increasing up to ``batch``.

    The search's batch grid below ``batch`` (those the micro-batches divide: the search priced them
    as candidates of their own) and ``batch`` itself, after :data:`BELOW_GRID` times the micro-batches.
    """
    mb = float(micro_batches)
    grid = np.asarray(space.DECODE_BATCH_GRID, dtype=float)
    on_grid = grid[(grid < batch) & (grid % mb == 0)]
    return np.concatenate([np.asarray(BELOW_GRID) * mb, on_grid, [float(batch)]])


def synchronised_groups(env: Env, dies, tp, pp=None):
    """TP groups of an instance that step together: an MoE's (the expert all-to-all joins them); a
    dense pipeline's ``pp`` micro-batches (a round of stage steps takes ``pp`` times its heaviest
    micro-batch's stage: one carrying a chunk holds up the others, planner.serving.pipeline); else 1."""
    if env.model.is_moe:
        return np.asarray(dies, dtype=float) / np.asarray(tp, dtype=float)
    if pp is None:
        return np.ones(np.shape(dies))
    return np.maximum(np.asarray(pp, dtype=float), 1.0) + np.zeros(np.shape(dies))


def _take(a, idx):
    return a if a is None or np.ndim(a) == 0 else np.asarray(a)[idx]


def _plain_step(env: Env, d: DecodeArrays) -> PoolStep:
    """The step without a chunk, priced once per run of rows that differ only in their chunk (the
    candidate grid repeats each pd candidate over the chunk sizes), then spread back to every row."""
    fields = [np.asarray(getattr(d, n)) for n in DecodeArrays.__dataclass_fields__
              if n != "chunk_tokens" and getattr(d, n) is not None and np.ndim(getattr(d, n))]
    n = len(np.atleast_1d(d.batch))
    new = np.ones(n, dtype=bool)
    new[1:] = False
    for a in fields:
        new[1:] |= a[1:] != a[:-1]
    first = np.flatnonzero(new)
    if len(first) == n or env.per_row:  # per-row (sampled) hardware: equal knobs are not equal rows
        return shared_decode_step(env, replace(d, chunk_tokens=np.zeros(n)))
    rows = {k: _take(getattr(d, k), first) for k in DecodeArrays.__dataclass_fields__}
    rows["chunk_tokens"] = np.zeros(len(first))
    step = shared_decode_step(env, DecodeArrays(**rows))
    back = np.cumsum(new) - 1

    def spread(x):
        return np.asarray(x)[back] if np.ndim(x) else x

    def layer(c: LayerCost) -> LayerCost:
        return LayerCost(ops={k: Cost(*(spread(getattr(v, f)) for f in COST_FIELDS)) for k, v in c.ops.items()},
                         comm={k: spread(v) for k, v in c.comm.items()},
                         load_ratio=None if c.load_ratio is None else spread(c.load_ratio),
                         load_ratio_hottest=None if c.load_ratio_hottest is None else spread(c.load_ratio_hottest),
                         pairs=None if c.pairs is None else
                         {k: tuple(spread(x) for x in v) for k, v in c.pairs.items()})

    layers = Deferred(lambda: {k: layer(v) for k, v in step.layers.items()})  # the breakdown: built when read
    return replace(step, step_s=spread(step.step_s), layers=layers,
                   layer_s={k: spread(v) for k, v in step.layer_s.items()},
                   extra={k: spread(v) for k, v in step.extra.items()})


def collocated_step(env: Env, d: DecodeArrays) -> PoolStep:
    """Mean step of collocated dies at their batch: steps with and without a chunk, mixed by load.

    Every part of the breakdown (per-op costs, layer times, once-per-step costs) is the same mix,
    so the breakdown still adds up to the mean step.  Memory and fit are the chunk step's (its
    workspace is reserved).
    """
    chunk = shared_decode_step(env, d)
    plain = _plain_step(env, d)
    f = gp.chunk_fraction(d.batch, d.chunk_tokens, groups=synchronised_groups(env, d.dies, d.tp, d.pp),
                          new_tokens=env.new_input_tokens, output_tokens=env.output_tokens,
                          tokens_per_step=env.tokens_per_step)

    def mix(a, b):  # the chunk step's value a, the plain step's b (None: the plain step has no such part)
        return a * f if b is None else gp.chunked_step_s(b, a, f)

    def mix_layer(a: LayerCost, b: LayerCost) -> LayerCost:
        ops = {k: Cost(*(mix(getattr(c, n), None if k not in b.ops else getattr(b.ops[k], n)) for n in COST_FIELDS))
               for k, c in a.ops.items()}
        pairs = None if a.pairs is None else {
            k: tuple(mix(x, None if not b.pairs or k not in b.pairs else b.pairs[k][i]) for i, x in enumerate(v))
            for k, v in a.pairs.items()}
        return LayerCost(ops=ops, comm={k: mix(v, b.comm.get(k)) for k, v in a.comm.items()},
                         load_ratio=a.load_ratio, load_ratio_hottest=a.load_ratio_hottest, pairs=pairs)

    return replace(chunk, step_s=gp.chunked_step_s(plain.step_s, chunk.step_s, f),
                   layers=Deferred(lambda: {k: mix_layer(v, plain.layers[k]) for k, v in chunk.layers.items()}),
                   layer_s={k: mix(v, plain.layer_s[k]) for k, v in chunk.layer_s.items()},
                   extra={k: mix(v, plain.extra.get(k)) for k, v in chunk.extra.items()},
                   plain_step_s=plain.step_s, chunk_step_s=chunk.step_s, chunk_fraction=f)


def summary(d: Knobs) -> str:
    return f"{pd.summary(d)} chunk{d['prefill_chunk_tokens']}"


COLLOCATED = ModeEntry(mode=Mode.COLLOCATED, prefill_pool=False,
                       decode_keys=(*pd.PD.decode_keys, "prefill_chunk_tokens"), candidates=candidates,
                       step_arrays=pd.step_arrays, fits=decode_fits, step=collocated_step,
                       attention_dies=pd.dies, instance_dies=pd.dies, summary=summary)
