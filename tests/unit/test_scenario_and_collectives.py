"""Scenario moments from histograms; ring all-gather against its closed form."""

from __future__ import annotations

import numpy as np
import pytest

from planner import catalog
from planner.inputs.scenario import WorkloadSection
from planner.xccl import allgather_s, allreduce_s, fabric_efficiency


def test_histogram_sets_mean_and_cv():
    # 1000 and 3000 tokens, equal weight: mean 2000, standard deviation 1000 -> CV 0.5.
    w = WorkloadSection.model_validate({"input_histogram": [[1000, 1.0], [3000, 1.0]]})
    assert w.input_tokens == 2000
    assert w.input_cv == pytest.approx(0.5)
    # 100 x3 and 500 x1: mean 200, variance (3*100^2 + 300^2)/4 = 30000 -> CV sqrt(3)/2.
    w = WorkloadSection.model_validate({"output_histogram": [[100, 3.0], [500, 1.0]]})
    assert w.output_tokens == 200
    assert w.output_cv == pytest.approx(np.sqrt(3) / 2)


def test_allgather_is_the_ring_closed_form():
    hw = catalog.hardware("h800")
    nvlink = hw.fabrics[0]
    n, size, call = 8.0, 64e6, 5e-6
    expected = call + (n - 1) * nvlink.latency_s + (n - 1) / n * size / (
        nvlink.bandwidth_bytes_per_s * float(fabric_efficiency(nvlink, np.array([n]))[0]))
    assert float(allgather_s(hw, np.array([size]), np.array([n]), call)[0]) == pytest.approx(expected, rel=1e-12)


def test_allgather_is_cheaper_than_allreduce():
    hw = catalog.hardware("h100")
    size, n = np.array([128e6]), np.array([8.0])
    assert allgather_s(hw, size, n, 0.0)[0] < allreduce_s(hw, size, n, 0.0)[0]
