"""Scenario moments from histograms."""

from __future__ import annotations

import numpy as np
import pytest

from planner.inputs.scenario import WorkloadSection


def test_histogram_sets_mean_and_cv():
    # 1000 and 3000 tokens, equal weight: mean 2000, standard deviation 1000 -> CV 0.5.
    w = WorkloadSection.model_validate({"input_histogram": [[1000, 1.0], [3000, 1.0]]})
    assert w.input_tokens == 2000
    assert w.input_cv == pytest.approx(0.5)
    # 100 x3 and 500 x1: mean 200, variance (3*100^2 + 300^2)/4 = 30000 -> CV sqrt(3)/2.
    w = WorkloadSection.model_validate({"output_histogram": [[100, 3.0], [500, 1.0]]})
    assert w.output_tokens == 200
    assert w.output_cv == pytest.approx(np.sqrt(3) / 2)

