"""Chunked prefill: TPOT is checked at the occupancy the slot wait keeps, not at the full batch.

A collocated layout whose full batch misses the TPOT SLO is feasible when a part-full batch meets
it: its goodput is the largest rate at which both TTFT and TPOT hold (planner.goodput.OccupancyCurve).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from planner import goodput as gp
from planner import queueing
from planner.evaluate import evaluate, layout_goodput, load_point, stable_rate, tpot_slo_statistic_s
from planner.inputs.layout import parse_layout
from planner.inputs.scenario import build_scenario, scenario_overrides


class _Slo:
    ttft_s, ttft_percentile, tpot_s, tpot_percentile = 3600.0, 99.0, 0.05, None


def _linear_curve(s0: float, s1: float, cap: float) -> gp.OccupancyCurve:
    """step(b) = s0 + s1 b on the grid 1, 2, 4, 8 (flat to 0), one token per step, one attention die."""
    pts = np.array([1.0, 2.0, 4.0, 8.0])
    steps = s0 + s1 * pts
    one = np.ones(1)
    return gp.OccupancyCurve(batches=np.concatenate([[0.0], pts])[None, :],
                             step_s=np.concatenate([steps[:1], steps])[None, :], plain_step_s=None, chunk_step_s=None,
                             cap=np.array([cap]), attention_dies=one, tp=one, chunk_tokens=0 * one, groups=one,
                             new_tokens=1000.0, output_tokens=100.0, tokens_per_step=1.0, draft_tokens=0,
                             acceptance=0.0)


def test_part_full_occupancy_meets_tpot_where_the_full_batch_does_not():
    # TPOT(b) = 20 ms + 5 ms b: the full batch of 8 runs 60 ms, over the 50 ms SLO; 50 ms at b = 6.  By
    # Little's law one die at 6 sequences of 100 tokens x 50 ms serves 6 / 5 = 1.2 req/s.
    slo = _Slo()
    curve = _linear_curve(0.020, 0.005, 8.0)
    b = curve.tpot_limited_batch(slo)
    assert b[0] == pytest.approx(6.0, rel=1e-9)
    rate = curve.rate_per_s(b)
    assert rate[0] == pytest.approx(6.0 / (100 * 0.05), rel=1e-9)
    # the pool settles at b = 6 at that rate (the fixed point, solved independently)
    settled, tpot = queueing.fixed_point_on_curve(curve.batches[0], curve.step_s[0], float(rate[0]), 100.0, 1.0)
    assert (settled, tpot) == pytest.approx((6.0, 0.05), rel=1e-9)
    # goodput: prefill far from binding (1,000 servers of 10 ms), 8 slots of 100 x 60 ms = 6 s residence,
    # a 1 h TTFT budget: the slot wait caps near 8 / 6 = 1.33 req/s, so TPOT binds at 1.2
    kw = dict(input_cv=0.0, output_tokens=100.0, service_s=np.array([0.01]), servers=np.array([1000.0]),
              fixed_s=np.zeros(1), sequences=np.array([8.0]), tpot_s=np.array([0.06]), fits=np.array([True]),
              admission=True, output_cv=0.0)
    assert gp.goodput(slo, **kw).goodput_per_s[0] == 0.0  # checked at the full batch: rejected
    g = gp.goodput(slo, **kw, tpot_rate_per_s=rate)
    assert g.goodput_per_s[0] == pytest.approx(1.2, rel=1e-9)
    assert gp.BINDING[int(g.binding[0])] == "tpot"


def test_the_mean_tpot_is_the_same_with_or_without_the_quantile_terms():
    # tpot_s(None, ...) returns the mean before the chunked-prefill terms (they shape only the quantile):
    # bit for bit the mean a quantile call returns, on curves with chunk steps, at and between the points.
    rng = np.random.default_rng(5)
    n, pts = 50, np.array([0.0, 1.0, 2.0, 4.0, 8.0, 16.0])
    plain = 0.01 + np.cumsum(rng.uniform(0.0, 0.004, (n, len(pts))), axis=1)
    chunk = plain + rng.uniform(0.0, 0.02, (n, len(pts)))
    f = rng.uniform(0.0, 0.5, (n, 1))
    curve = gp.OccupancyCurve(batches=np.broadcast_to(pts, (n, len(pts))), step_s=plain + f * (chunk - plain),
                              plain_step_s=plain, chunk_step_s=chunk, cap=np.full(n, 16.0),
                              attention_dies=rng.choice([1.0, 8.0, 64.0], n), tp=rng.choice([1.0, 2.0, 4.0], n),
                              chunk_tokens=rng.choice([0.0, 512.0, 4096.0], n), groups=rng.choice([1.0, 4.0], n),
                              new_tokens=2000.0, output_tokens=500.0, tokens_per_step=1.7, draft_tokens=1,
                              acceptance=0.7)
    for batch in (rng.uniform(0.0, 16.0, n), np.full(n, 4.0), np.zeros(n)):
        mean, same = curve.tpot_s(None, batch)
        for q in (0.5, 0.9, 0.99):
            with_quantile, stat = curve.tpot_s(q, batch)
            assert np.array_equal(mean, with_quantile) and np.array_equal(mean, same)
            assert np.all(stat >= mean)  # a quantile above the median: the quantile terms did run
    # so a mean-TPOT SLO needs neither step (the search leaves them out, planner.search.score): the same
    # occupancy and rate, bit for bit
    bare = dataclasses.replace(curve, plain_step_s=None, chunk_step_s=None)
    for tpot_slo in np.quantile(curve.step_s[:, -1] / curve.tokens_per_step, [0.2, 0.5, 0.8]):
        slo = _Slo()
        slo.tpot_s = float(tpot_slo)
        b_full, b_bare = curve.tpot_limited_batch(slo), bare.tpot_limited_batch(slo)
        assert np.array_equal(b_full, b_bare) and np.array_equal(curve.rate_per_s(b_full), bare.rate_per_s(b_bare))
        assert 0 < int(np.count_nonzero(b_full < 16.0))  # some rows stop below their full batch


def test_a_looser_tpot_slo_never_lowers_the_occupancy():
    curve = _linear_curve(0.020, 0.005, 8.0)
    rates = []
    for tpot_s in (0.01, 0.02, 0.025, 0.03, 0.045, 0.05, 0.055, 0.06, 0.1):
        slo = _Slo()
        slo.tpot_s = tpot_s
        rates.append(float(curve.rate_per_s(curve.tpot_limited_batch(slo))[0]))
    # 10 / 20 ms: not even an empty pool; 25 ms: b = 1 (the flat start: 1 / (100 x 25 ms) = 0.4 req/s)
    assert rates[:3] == [0.0, 0.0, pytest.approx(0.4)]
    assert rates[-2:] == [pytest.approx(8 / 6), pytest.approx(8 / 6)]  # the full batch
    assert all(b >= a for a, b in zip(rates, rates[1:], strict=False))


def test_mlperf_405b_interactive_tp8_batch_4_is_feasible_below_its_full_batch():
    """MLPerf v5.1 Llama-3.1-405B Interactive on 8 H200 (p99 TTFT 4.5 s, p99 TPOT 80 ms): TP8, 4 sequences
    per die, 2 micro-batches, 256-token chunks.  At its full batch the p99 TPOT misses; at the goodput the
    slot wait keeps about one sequence per die in flight, where both SLOs hold."""
    sc = build_scenario(None, scenario_overrides(
        model="llama-3.1-405b", hardware="h200", dies=8, pods=1, weights_dtype="fp8", activations_dtype="fp8",
        kv_dtype="fp8", input_tokens=9429, output_tokens=685, ttft_s=4.5, ttft_percentile=99.0, tpot_s=0.08,
        tpot_percentile=99.0, mtp_acceptance=0.0), "test")
    layout = parse_layout({"mode": "collocated", "decode": {"instances": 1, "tp": 8, "ep": 1, "batch": 4,
                                                            "micro_batches": 2, "dies": 8,
                                                            "prefill_chunk_tokens": 256}}, "test")
    ev = evaluate(layout, sc, "test")
    full_tpot = float(ev.decode.step_s[0]) / ev.env.tokens_per_step
    assert tpot_slo_statistic_s(ev, full_tpot) > 0.08  # the full batch misses p99 TPOT
    g = layout_goodput(ev)
    assert g.goodput_requests_per_s > 0.0
    point = load_point(ev, stable_rate(g.goodput_requests_per_s, g.decode_capacity_requests_per_s))
    assert point.meets_ttft_slo and point.meets_tpot_slo
    assert point.decode_batch_per_die < 4.0
    # a hair faster misses one of the two
    over = load_point(ev, g.goodput_requests_per_s * 1.001)
    assert not (over.meets_ttft_slo and over.meets_tpot_slo)


def test_chunked_goodput_shortcut_equals_the_goodput_model():
    """The search's shortcut (skip the TTFT bisections where TTFT meets the SLO at the decode side's rate)
    gives planner.goodput.goodput's numbers: TTFT-, slot-, TPOT- and memory-bound rows alike."""
    slo = _Slo()
    slo.ttft_s, slo.ttft_percentile = 4.5, 99.0
    kw = dict(input_cv=0.43, output_tokens=685.0, service_s=np.array([0.5, 1.5, 0.5, 0.5, 0.2, 0.5]),
              servers=np.array([8.0, 1.0, 8.0, 8.0, 16.0, 8.0]), fixed_s=np.array([0.05, 0.1, 0.05, 0.05, 0.02, 0.05]),
              sequences=np.array([32.0, 32.0, 16.0, 64.0, 8.0, 8.0]),
              tpot_s=np.array([0.05, 0.05, 0.06, 0.05, 0.04, 0.05]),
              fits=np.array([True, True, True, True, True, False]),
              tpot_rate_per_s=np.array([0.5, 0.5, 0.1, 2.0, 0.01, 0.5]), prefill_cv=0.3, output_cv=0.381)
    fast = gp.chunked_goodput_per_s(slo, **kw)
    full = gp.goodput(slo, admission=True, **kw)
    assert fast == pytest.approx(full.goodput_per_s, rel=1e-12, abs=0)
    assert [gp.BINDING[b] for b in full.binding] == ["tpot", "prefill (ttft)", "tpot", "batch slots (ttft)", "tpot",
                                                    "memory"]
