"""Pipeline parallelism (dense models): what ``pp`` stages cost beyond the TP group's step.

An instance of ``tp * pp`` dies runs ``pp`` stages of ``L / pp`` layers, each stage one TP group
of ``tp`` dies; ``pp`` micro-batches of ``b * tp`` sequences are in flight (``b`` per die, as for
every shared-die pool).  A stage step moves one micro-batch through its layers, ``1/pp`` of the
TP group's whole-model step at that batch, so one round of ``pp`` stage steps, the time between
two tokens of a sequence, is the TP group's step, plus:

- the sends: ``pp - 1`` activation hand-overs per round, each every token's hidden state
  (``by.out`` bytes per element: the residual stream) from each TP rank to its peer in the next
  stage (a peer-to-peer send per die, as TensorRT-LLM's PP send of the full hidden state); on
  the pod's fabric, or on the fabric joining pods where consecutive stages sit in different
  pods (an instance larger than a pod spans whole pods: ``ceil(tp pp / pod) - 1`` boundaries);
- the slowest stage: the round takes ``pp`` times the slowest stage.  Its layers: ``ceil(L / pp)``,
  so the layers cost ``pp ceil(L / pp) / L`` times the group's (126 layers in 4 stages of 32, 32,
  31, 31: +1.6%); and the LM head runs on the last stage only, so ``(pp - 1)`` times the head is
  added.

Throughput per die is the TP group's at the same batch per die; what a pipeline buys is memory:
a die holds ``1/pp`` of the layers' weights (planner.cost.memory.WeightShare.pp), while its KV
per sequence is the TP group's (``pp`` times the sequences, ``1/pp`` of the layers each).  Left
out: bubbles from micro-batches of unequal work (the in-flight batches of a round differ in
their chunk and context), and the token ids' return from the last stage to the first (a few
bytes per sequence).
"""

from __future__ import annotations

import numpy as np

from planner.cost.roofline import Array
from planner.serving.context import Env
from planner.xccl import p2p_s


def pipeline_extra(env: Env, pp: Array | None, tp: Array, group_tokens: Array, head_s: Array,
                   layers_s: Array) -> dict[str, Array]:
    """Once-per-round costs of ``pp`` stages (seconds, (N,)); empty where no candidate has a pipeline.

    ``group_tokens``: tokens one TP group moves through a stage per round (all micro-batches of
    the two-batch overlap together); ``head_s``: the LM head's time at those tokens; ``layers_s``:
    the TP group's time in all its layers (the step's layer part).
    """
    if pp is None or not np.any(np.asarray(pp) > 1):
        return {}
    stages = np.asarray(pp, dtype=float)
    hops = stages - 1.0
    hw = env.hw
    bytes_per_die = np.asarray(group_tokens, dtype=float) * env.model.hidden * env.by.out
    inside = p2p_s(hw.pod_fabric, bytes_per_die, 1.0, env.calls.p2p_s)
    cluster = hw.cluster_fabric
    if cluster is None:
        sends = hops * inside
    else:
        across = np.minimum(hops, np.maximum(np.ceil(np.asarray(tp, dtype=float) * stages / hw.pod_dies) - 1.0, 0.0))
        sends = (hops - across) * inside + across * p2p_s(cluster, bytes_per_die, 1.0, env.calls.p2p_s)
    layers = env.model.num_layers
    uneven = stages * np.ceil(layers / stages) / layers - 1.0
    return {"pipeline_sends": np.where(stages > 1, sends, 0.0),
            "pipeline_last_stage": hops * head_s + uneven * np.asarray(layers_s, dtype=float)}
