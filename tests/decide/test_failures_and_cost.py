"""Failure what-if (an instance losing a die is out; the others absorb the load) and cost per token."""

from __future__ import annotations

from functools import lru_cache

import pytest

from planner.decide.cost import token_cost
from planner.decide.failures import FailureKind, die_hits, failure, node_hits, pod_hits
from planner.decide.plan import RankBy, decide
from planner.evaluate import evaluate, layout_goodput
from planner.inputs.layout import parse_layout
from planner.inputs.scenario import Price, build_scenario, scenario_overrides
from planner.search.plan import plan

SMALL = dict(model="qwen3-30b-a3b", hardware="h100", weights_dtype="fp8", activations_dtype="fp8",
             input_tokens=2048, output_tokens=256, dies=16, pods=2)


@lru_cache(maxsize=2)
def _scenario(**extra):
    return build_scenario(None, scenario_overrides(**SMALL, **extra))


def _collocated(instances: int):
    return parse_layout({"mode": "collocated", "decode": {"instances": instances, "dies": 1, "batch": 64,
                                                           "prefill_chunk_tokens": 2048}}, "test")


def _pd(prefill: int, decode: int):
    return parse_layout({"mode": "pd", "prefill": {"instances": prefill, "dies": 1, "batch_tokens": 8192},
                         "decode": {"instances": decode, "dies": 2, "ep": 2, "batch": 64}}, "test")


def _goodput(layout) -> float:
    return layout_goodput(evaluate(layout, _scenario())).goodput_requests_per_s


def test_a_one_instance_layout_losing_a_die_serves_nothing():
    for layout in (_collocated(1), _pd(2, 1)):
        g = _goodput(layout)
        assert g > 0
        f = failure(layout, _scenario(), FailureKind.DIES, g)
        assert f.surviving_goodput_requests_per_s == 0.0 and f.surviving_frac == 0.0


@pytest.mark.parametrize("n", [2, 4])
def test_losing_one_of_n_equal_instances_keeps_at_most_n_minus_1_over_n(n):
    layout = _collocated(n)
    g = _goodput(layout)
    f = failure(layout, _scenario(), FailureKind.DIES, g)
    assert (f.lost_prefill_instances, f.lost_decode_instances) == (0, 1)
    assert 0 < f.surviving_goodput_requests_per_s <= g * (n - 1) / n * (1 + 1e-9)
    # the survivors are exactly the (n - 1)-instance layout
    assert f.surviving_goodput_requests_per_s == pytest.approx(_goodput(_collocated(n - 1)), rel=1e-12)


def test_where_failures_land():
    pd = _pd(3, 2)  # dies in placement order: P P P | D D | D D  (7 dies)
    assert die_hits(pd, 1) == {(0, 1), (1, 0)}
    assert die_hits(pd, 2) == {(0, 2), (1, 1), (2, 0)}
    assert node_hits(pd, 4) == {(3, 1), (0, 2)}  # dies 0-3: 3 prefill + the first decode; dies 4-7: the next
    assert node_hits(pd, 8) == {(3, 2)}
    assert pod_hits(pd, _scenario()) == {(3, 2)}  # 7 dies fit one 8-GPU pod
    two_pods = _pd(4, 4)  # 4 + 8 = 12 dies: prefill and 2 decode instances in pod 0, 2 decode in pod 1
    assert pod_hits(two_pods, _scenario()) == {(4, 2), (0, 2)}
    g = _goodput(two_pods)
    node = failure(two_pods, _scenario(), FailureKind.NODE, g)  # a node of an H100 server is the whole server
    assert node.failed_dies == 8 and node.surviving_frac == pytest.approx(0.0)


def test_cost_per_million_tokens_worked_by_hand():
    layout = _pd(3, 2)  # 7 dies: 3 prefill, 4 decode
    price = Price(usd_per_die_hour=2.0, source="test")
    c = token_cost(layout, price, goodput_requests_per_s=10.0, input_tokens=2048, output_tokens=256)
    assert c.usd_per_hour == pytest.approx(14.0)
    # 14 $/h = 14/3600 $/s over 2560 output tokens/s -> per million: 14 / 3600 / 2560 * 1e6 = 1.519 $
    assert c.usd_per_million_output_tokens == pytest.approx(14.0 / 3600 / 2560 * 1e6)
    assert c.usd_per_million_input_tokens == pytest.approx(6.0 / 3600 / 20480 * 1e6)
    # the pool shares add up to the layout's cost
    assert (c.usd_per_million_input_tokens * 20480 + c.usd_per_million_output_tokens_decode_pool * 2560) / 1e6 \
        == pytest.approx(14.0 / 3600)
    chunked = token_cost(_collocated(2), price, goodput_requests_per_s=0.0, input_tokens=2048, output_tokens=256)
    assert chunked.usd_per_million_output_tokens is None and chunked.usd_per_million_input_tokens is None
    per_chip = _scenario(usd_per_chip_hour=3.0).price  # an H100 chip is one die
    assert per_chip is not None and per_chip.usd_per_die_hour == 3.0


def test_plan_decisions_rank_by_cost_and_by_what_survives():
    sc = _scenario(usd_per_die_hour=2.0)
    result = plan(sc)
    by_cost, d = decide(result, 5, rank_by=RankBy.COST)
    usd = [d.costs[id(p)].usd_per_million_output_tokens for p in by_cost.layouts[:5]]
    assert usd == sorted(usd)
    # one price per die: cost ranks as goodput per die does
    assert [p.per_die for p in by_cost.layouts[:5]] == sorted((p.per_die for p in result.layouts), reverse=True)[:5]
    survived, d = decide(result, 5, tolerate=FailureKind.DIES)
    kept = [d.failures[id(p)][0].surviving_goodput_requests_per_s / p.dies for p in survived.layouts[:5]]
    assert kept == sorted(kept, reverse=True) and not d.bands  # no spreads given: no bands
