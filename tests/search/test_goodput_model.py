"""One goodput model: hand-derived values of its parts, vector == scalar, search score == exact re-pricing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner import goodput as gp
from planner import queueing
from planner.evaluate import evaluate, layout_goodput
from planner.inputs.scenario import build_scenario, resolve_scenario, scenario_overrides


class _Slo:
    ttft_s, ttft_percentile, tpot_s = 2.0, 90.0, 0.05


SLO = _Slo()


def test_prefill_queue_by_hand():
    # One token stream per TP group (3 and 5 groups), service = the prompt's share of forwards:
    # tp 2 x 4096 tokens per die = 8,192 tokens per forward, 2,048-token prompts -> 1/4 forward of 0.2 s;
    # 4,096 x 1 tokens per forward, 16,384-token prompts -> 4 forwards of 0.1 s; 6,144-token prompts
    # -> 1.5 forwards (no idle remainder: the next prompt fills it).  The quantum: the idle step at zero
    # load (a prefill pool: 0; a collocated pool: its step without a chunk), a whole forward when busy.
    service, servers, quantum, load = gp.prefill_queue(
        np.array([2.0, 1.0, 1.0]), np.array([4096.0, 4096.0, 4096.0]), np.array([2048.0, 16384.0, 6144.0]),
        np.array([3.0, 5.0, 5.0]), np.array([0.2, 0.1, 0.1]), np.array([0.0, 0.0, 0.04]))
    assert servers.tolist() == [3.0, 5.0, 5.0]
    assert service.tolist() == pytest.approx([0.05, 0.4, 0.15])
    assert quantum.tolist() == [0.0, 0.0, 0.04]
    assert load.tolist() == pytest.approx([0.2, 0.1, 0.06])


def test_decode_rate_is_littles_law_and_zero_past_the_slo():
    # 1,024 sequences, 1,000 output tokens, TPOT 40 ms: 1024 / (1000 * 0.04) = 25.6 req/s.
    rate = gp.decode_rate_per_s(SLO, np.array([1024.0] * 3), 1000.0, np.array([0.04, 0.06, 0.04]),
                                np.array([True, True, False]))
    assert rate.tolist() == pytest.approx([25.6, 0.0, 0.0])


def test_decode_rate_divides_only_where_it_qualifies_with_the_same_floats():
    # The fast path (the division on qualifying rows only) against the plain formula on every row:
    # bit for bit, with misfits, SLO misses, inf / nan / zero TPOTs, a statistic apart from the mean,
    # and scalar sequences broadcast.
    rng = np.random.default_rng(7)
    n = 4000
    tpot = rng.uniform(0.001, 0.09, n)
    tpot[::97], tpot[1::89], tpot[2::83] = np.inf, np.nan, 0.0
    stat = tpot * rng.uniform(1.0, 1.5, n)
    fits = rng.random(n) < 0.6
    for seqs in (rng.uniform(1.0, 4096.0, n), 512.0):
        for slo_stat in (None, stat):
            with np.errstate(divide="ignore", invalid="ignore"):
                plain = np.where(fits & ((tpot if slo_stat is None else slo_stat) <= SLO.tpot_s),
                                 np.asarray(seqs, dtype=float) / (1000.0 * tpot), 0.0)
            fast = gp.decode_rate_per_s(SLO, seqs, 1000.0, tpot, fits, slo_stat)
            assert fast.shape == plain.shape and fast.dtype == plain.dtype
            assert np.array_equal(fast.view(np.int64), plain.view(np.int64))  # every bit, signed zeros too
            assert 0 < int((fast > 0).sum()) < n


def test_goodput_is_the_smaller_side_and_names_it():
    kw = dict(input_cv=0.0, output_tokens=1000.0, service_s=np.full(4, 0.5), servers=np.full(4, 8.0),
              fixed_s=np.array([0.1, 0.1, 1.9, 0.1]), sequences=np.array([1e6, 10.0, 1e6, 1e6]),
              tpot_s=np.array([0.04, 0.04, 0.04, 0.04]), fits=np.array([True, True, True, False]))
    g = gp.goodput(SLO, **kw)
    pre = gp.ttft_limited_rate_per_s(SLO, 0.0, kw["service_s"], kw["servers"], kw["fixed_s"])
    # the prefill side alone: the rate whose p90 wait is exactly the 1.4 s left of the TTFT budget
    wait = queueing.mgc_wait_quantile_s(0.9, pre[0], 0.5, 0.0, 8.0)
    assert float(wait) == pytest.approx(2.0 - 0.5 - 0.1, rel=1e-6)
    assert g.goodput_per_s[0] == pytest.approx(pre[0])
    assert g.goodput_per_s[1] == pytest.approx(10.0 / (1000 * 0.04))  # decode-bound
    assert g.goodput_per_s[2] == 0.0  # 0.5 s service + 1.9 s fixed > 2 s: TTFT missed at zero load
    assert g.goodput_per_s[3] == 0.0
    assert [gp.BINDING[b] for b in g.binding] == ["prefill (ttft)", "decode (batch x tpot)", "ttft", "memory"]


def test_batch_slot_wait_by_hand_with_the_output_spread():
    # One slot held 10.5 s per request (0.5 s own prefill + 250 x 0.04 s); exponential residences (output CV 1)
    # make it M/M/1, whose p90 wait is ln(rho / 0.1) / (mu - lambda) (rho > 0.1).  TTFT p90 = wait + 0.5 s
    # prefill (constant) + 0.1 s <= 2 s: the wait may take 1.4 s; solved here by bisection on lambda.
    mu, lo, hi = 1 / 10.5, 0.0, 1 / 10.5
    for _ in range(200):
        lam = 0.5 * (lo + hi)
        lo, hi = (lam, hi) if math.log(max(lam / mu, 0.1) / 0.1) / (mu - lam) <= 1.4 else (lo, lam)
    kw = dict(input_cv=0.0, output_tokens=250.0, service_s=np.array([0.5]), servers=np.array([1e3]),
              fixed_s=np.array([0.1]), sequences=np.array([1.0]), tpot_s=np.array([0.04]), fits=np.array([True]),
              admission=True)
    g = gp.goodput(SLO, output_cv=1.0, **kw)
    assert g.decode_rate_per_s[0] == pytest.approx(lo, rel=1e-9)
    assert gp.BINDING[int(g.binding[0])] == "batch slots (ttft)"
    # fixed residences (output CV 0) halve the Allen-Cunneen wait: a larger rate
    assert gp.goodput(SLO, **kw).decode_rate_per_s[0] > lo * 1.05


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 1.0), st.integers(1, 64), st.floats(0.0, 1.0), st.integers(1, 4096),
                          st.floats(0.005, 0.08)), min_size=2, max_size=6))
def test_vector_equals_scalar(rows):
    service, servers, fixed, seqs, tpot = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    fits = np.ones(len(rows), dtype=bool)
    kw = dict(input_cv=0.5, output_tokens=512.0)
    g = gp.goodput(SLO, service_s=service, servers=servers, fixed_s=fixed, sequences=seqs, tpot_s=tpot, fits=fits, **kw)
    for i in range(len(rows)):
        one = gp.goodput(SLO, service_s=service[i:i + 1], servers=servers[i:i + 1], fixed_s=fixed[i:i + 1],
                         sequences=seqs[i:i + 1], tpot_s=tpot[i:i + 1], fits=fits[i:i + 1], **kw)
        assert one.goodput_per_s[0] == g.goodput_per_s[i]
        assert one.binding[0] == g.binding[i]


SCENARIOS = {
    "qwen3-30b-h100-32": dict(model="qwen3-30b-a3b", hardware="h100", weights_dtype="fp8", activations_dtype="fp8",
                              input_tokens=2048, output_tokens=256, dies=32, pods=4),
    "deepseek-v3-h800-64": dict(hardware="h800", weights_dtype="fp8", activations_dtype="fp8", dies=64, pods=8),
    "llama-70b-h100-16": dict(model="llama-3.1-70b", hardware="h100", weights_dtype="fp8", activations_dtype="fp8",
                              dies=16, pods=2),
    "deepseek-v3-cm384-128": dict(dies=128, input_tokens=2048),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_search_score_equals_exact_repricing(name, shared_plan):
    """Every listed layout: the goodput the search ranked it by is what evaluate gives for its TOML.
    (``shared_plan``: qwen3-30b-h100-32 is the plan tests/search/test_plan.py checks too.)"""
    result = shared_plan(build_scenario(None, scenario_overrides(**SCENARIOS[name])), top=10)
    assert result.layouts, name
    for p in result.layouts + result.pareto:
        layout = p.layout
        exact = layout_goodput(evaluate(layout, resolve_scenario(layout.scenario), "test"))
        assert p.search_goodput_per_s == pytest.approx(exact.goodput_requests_per_s, rel=1e-9, abs=0), layout


@pytest.mark.parametrize("example", ["deepseek-v3-cloudmatrix384-transformerless", "llama-3.1-70b-h100-collocated"])
def test_curves_priced_together_are_each_curve_priced_alone(example):
    """planner.search.plan prices the listed layouts' TPOT(b) curves in one vector call: the same
    floats, to the bit, as each layout's curve priced by itself (layouts of different batches)."""
    import dataclasses

    from planner.evaluate import priced_curves
    from planner.inputs.layout import load_layout

    layout = load_layout(f"examples/{example}.toml")
    sc = resolve_scenario(layout.scenario) if layout.scenario else build_scenario(None, {})
    other = layout.model_copy(update={"decode": layout.decode.model_copy(update={"batch": layout.decode.batch // 2})})
    evs = [evaluate(lay, sc) for lay in (layout, other)]
    together = priced_curves(evs)
    for ev, (batches, steps) in zip(evs, together, strict=True):
        alone_batches, alone = priced_curves([ev])[0]
        assert np.array_equal(batches, alone_batches)
        for f in dataclasses.fields(alone):
            a, b = getattr(steps, f.name), getattr(alone, f.name)
            assert (a is None and b is None) or np.array_equal(a, b), f.name


def test_layouts_priced_together_equal_each_priced_alone():
    # plan's exact pricing (planner.search.plan._exact) prices the listed layouts' goodputs in one vector
    # call per scenario; each must be what its own call gives, to the bit: two CloudMatrix384 layouts
    # (pd and transformerless, one group), a collocated H100 one (another group, chunked prefill).
    from planner.evaluate import layout_goodputs
    from planner.inputs.layout import load_layout

    names = ("deepseek-v3-cloudmatrix384-pd", "deepseek-v3-cloudmatrix384-transformerless",
             "llama-3.1-70b-h100-collocated")
    evs = []
    for name in names:
        layout = load_layout(f"examples/{name}.toml")
        evs.append(evaluate(layout, resolve_scenario(layout.scenario), "test"))
    together = layout_goodputs(evs)
    alone = [layout_goodput(ev) for ev in evs]
    assert together == alone  # dataclasses: every field equal (floats to the bit)
    assert all(p.goodput_requests_per_s > 0 for p in alone)


def test_rate_limits_with_step_boundaries_sit_where_the_ttft_quantile_meets_the_slo():
    """The two code paths of the step boundaries agree: the rate bisections take the boundaries' load part as
    a budget that shrinks with the utilization (queueing.max_arrival_rate_per_s), ttft_parts_s adds it at
    the rate.  At each limit the quantile meets the SLO, and 0.1% faster misses it (unless the limit is
    the stability edge); a larger load part never raises a limit."""
    rng = np.random.default_rng(5)
    n = 64
    service = rng.uniform(0.02, 0.8, n)
    servers = rng.integers(1, 9, n).astype(float)
    idle = rng.uniform(0.0, 0.05, n)
    load = rng.uniform(0.0, 1.0, n) * service * rng.uniform(1.0, 8.0, n)
    seqs = rng.integers(8, 256, n).astype(float)
    residence = rng.uniform(5.0, 60.0, n)

    class Slo:
        ttft_s, ttft_percentile, tpot_s, tpot_percentile = 4.0, 99.0, 1.0, None

    q = Slo.ttft_percentile / 100.0
    pre = gp.ttft_limited_rate_per_s(Slo, 0.4, service, servers, idle, None, np.inf, load)
    slot = gp.admission_limited_rate_per_s(Slo, seqs, residence, service, idle, 0.4, 0.381, np.inf, load, servers)
    at = gp.ttft_parts_s(q, 0.4, pre, service, servers, idle, 0.4, quantum_load_s=load)[0]
    assert np.all(at[pre > 0] <= Slo.ttft_s * (1 + 1e-9))
    edge = pre >= servers / service * (1 - 1e-6)
    over = gp.ttft_parts_s(q, 0.4, pre * 1.001, service, servers, idle, 0.4, quantum_load_s=load)[0]
    assert np.all(over[(pre > 0) & ~edge] > Slo.ttft_s)
    # the slot queue alone, its boundaries at the prefill stream's utilization
    wait = queueing.mgc_wait_plus_gamma_quantile_s(q, slot, residence, 0.381**2, seqs, service, 0.4, iterations=60)
    busy = gp.prefill_quantum_s(idle, load, slot, service, servers)
    assert np.all((wait + busy)[slot > 0] <= Slo.ttft_s * (1 + 1e-6))
    assert np.all(gp.ttft_limited_rate_per_s(Slo, 0.4, service, servers, idle, None, np.inf, 2 * load) <= pre)
    assert np.all(gp.admission_limited_rate_per_s(Slo, seqs, residence, service, idle, 0.4, 0.381, np.inf, 2 * load,
                                                  servers) <= slot)
