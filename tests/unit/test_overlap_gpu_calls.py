"""GPU two-batch overlap: the low-latency calls' stream time and the bulk dispatch's host gap.

Hand-built layers (times in microseconds, written out below) against the formulas of
planner/serving/overlap.py:

- stage-paired decode with ``calls_on_stream``: per micro-batch
  ``max(P + S + s_d, dispatch) + E + max(A + s_c, combine)``;
- a bulk (normal-mode) dispatch adds ``bulk_host_sync_s`` per micro-batch, serial, with one or
  several micro-batches, and nothing where the layer has no dispatch or the all-to-all is
  low-latency.
"""

from __future__ import annotations

import numpy as np
import pytest

from planner import catalog
from planner.cost.roofline import Cost
from planner.inputs.files import OverlapDiscipline
from planner.inputs.hardware import Overlap
from planner.serving import overlap

US = 1e-6


def _op(t_us: float) -> Cost:
    t = np.array([t_us * US])
    return Cost(t, 0 * t, 0 * t, t, 0 * t)  # compute-bound, no fixed overhead


# P = q_a 10 + kv_a 20, S = shared 30, E = experts 40, A = core 50 + o_proj 10
OPS = {"q_a_proj": _op(10), "kv_a_proj": _op(20), "shared_gate_up": _op(30), "experts_gate_up": _op(40),
       "core": _op(50), "o_proj": _op(10)}
GPU = Overlap(discipline=OverlapDiscipline.GPU_TWO_BATCH, comm_sm_frac=0.25, calls_on_stream=True,
              bulk_host_sync_s=100 * US)


def test_calls_on_stream_hand_values() -> None:
    """s_d = 20, s_c = 30: max(60 + 20, 70) + 40 + max(60 + 30, 80) = 80 + 40 + 90 = 210 us per micro-batch."""
    comm = {"dispatch": np.array([70 * US]), "combine": np.array([80 * US])}
    on = overlap.overlapped(OPS, comm, np.array([2.0]), GPU, bulk_comm=False, stream_s=(20 * US, 30 * US))
    assert on.layer_s[0] == pytest.approx(2 * 210 * US)
    # without the flag the calls hide under their stages: max(60, 70) + 40 + max(60, 80) = 190 us
    off = overlap.overlapped(OPS, comm, np.array([2.0]), Overlap(**{**_fields(GPU), "calls_on_stream": False}),
                             bulk_comm=False, stream_s=(20 * US, 30 * US))
    assert off.layer_s[0] == pytest.approx(2 * 190 * US)
    # waiting: the dispatch pair is stream-bound now (no wait), the combine pair too
    assert all(float(w[0]) == 0.0 for w in on.waiting_s().values())


def test_one_micro_batch_stays_serial_compute_plus_comm() -> None:
    """m = 1 is c + k whatever the stream flag (the call costs are inside k already)."""
    comm = {"dispatch": np.array([70 * US]), "combine": np.array([80 * US])}
    one = overlap.overlapped(OPS, comm, np.array([1.0]), GPU, bulk_comm=False, stream_s=(20 * US, 30 * US))
    assert one.layer_s[0] == pytest.approx((160 + 150) * US)


def test_bulk_dispatch_host_gap_per_micro_batch() -> None:
    """Bulk all-to-all: + 100 us per micro-batch with one or two micro-batches; none without a dispatch."""
    comm = {"dispatch": np.array([70 * US]), "combine": np.array([80 * US])}
    no_sync = Overlap(**{**_fields(GPU), "bulk_host_sync_s": 0.0})
    for m in (1.0, 2.0):
        with_sync = overlap.overlapped(OPS, comm, np.array([m]), GPU, bulk_comm=True)
        without = overlap.overlapped(OPS, comm, np.array([m]), no_sync, bulk_comm=True)
        assert with_sync.layer_s[0] - without.layer_s[0] == pytest.approx(m * 100 * US)
    dense = overlap.overlapped(OPS, {"tp_allreduce_attention": np.array([5 * US])}, np.array([2.0]), GPU,
                               bulk_comm=True)
    dense_no = overlap.overlapped(OPS, {"tp_allreduce_attention": np.array([5 * US])}, np.array([2.0]), no_sync,
                                  bulk_comm=True)
    assert dense.layer_s[0] == pytest.approx(dense_no.layer_s[0])
    low_latency = overlap.overlapped(OPS, comm, np.array([2.0]), GPU, bulk_comm=False)
    low_latency_no = overlap.overlapped(OPS, comm, np.array([2.0]), no_sync, bulk_comm=False)
    assert low_latency.layer_s[0] == pytest.approx(low_latency_no.layer_s[0])


def test_hopper_profiles_take_the_calibrated_call_costs_and_the_measured_host_gap() -> None:
    """The flag reuses [collectives] (no constant of its own); the host gap is the FlashInfer figure, 185 us."""
    for name in ("h800", "h100", "h200"):
        ov = catalog.hardware(name).overlap
        assert ov.calls_on_stream and ov.bulk_host_sync_s == pytest.approx(185e-6)
    assert not catalog.hardware("cloudmatrix384").overlap.calls_on_stream


def _fields(ov: Overlap) -> dict:
    return {f: getattr(ov, f) for f in Overlap.__dataclass_fields__}
