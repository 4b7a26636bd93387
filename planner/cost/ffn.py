"""Dense FFN (gated: gate, up, down) per layer and die."""

from __future__ import annotations

import numpy as np

from planner.cost.precision import BytesPerElement
from planner.cost.roofline import Array, Cost, Device, gemm
from planner.inputs.model import ModelSpec


def dense_ffn(dev: Device, model: ModelSpec, by: BytesPerElement, *, tokens: Array, tp: Array,
              launch_s: float | Array = 0.0) -> dict[str, Cost]:
    """One dense FFN layer on one die: ``[M x h] @ [h x 2I/tp]`` then ``[M x I/tp] @ [I/tp x h]``.

    TP splits the intermediate dimension; the partial outputs are all-reduced by the caller.
    """
    inter = model.ffn.dense_intermediate_size / np.asarray(tp, dtype=float)
    kw = dict(weight_bytes=by.weight, act_bytes=by.act, out_bytes=by.out, launch_s=launch_s)
    return {"ffn_gate_up": gemm(dev, tokens, 2 * inter, model.hidden, **kw),
            "ffn_down": gemm(dev, tokens, model.hidden, inter, **kw)}
