"""Inverse sizing (``plan --target-rate``): the fewest dies that serve a rate, checked by brute force."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from planner import goodput as gp
from planner.inputs.scenario import build_scenario, scenario_overrides
from planner.modes import MODES
from planner.search import space
from planner.search.combine import admissible
from planner.search.plan import _chunked_side, plan
from planner.search.score import score_decode, score_prefill
from planner.serving.context import Env

SMALL = dict(model="qwen3-30b-a3b", hardware="h100", weights_dtype="fp8", activations_dtype="fp8",
             input_tokens=2048, output_tokens=256, dies=32, pods=4)


@lru_cache(maxsize=1)
def _scenario():
    return build_scenario(None, scenario_overrides(**SMALL))


def _smallest_serving(scenario, rate: float, below: int) -> list[tuple[str, int, float]]:
    """Every layout of the search space with fewer than ``below`` dies whose exact goodput reaches ``rate``.

    The search space: each pool fits in one pod, or its instances divide a pod or take whole pods
    (planner.search.combine.admissible), and the layout packs into the scenario's pods.
    """
    budget, found = below - 1, []
    pod = scenario.hardware.pod_dies
    env = Env.of(scenario, draft_tokens=0)
    w, slo = scenario.workload, scenario.slo
    pre = score_prefill(scenario, space.prefill_pools(scenario.model, budget))
    for mode, entry in MODES.items():
        cands = entry.candidates(scenario.model, budget)
        if len(cands) == 0:
            continue
        dec = score_decode(scenario, cands, entry)
        d_rows = np.flatnonzero(dec.ok)
        for n_d in range(1, budget + 1):
            rows = d_rows[(dec.dies[d_rows] * n_d <= budget) & admissible(dec.dies[d_rows], n_d, pod)]
            if not len(rows):
                continue
            if not entry.prefill_pool:
                # chunked prefill as the model prices it: the wait for a batch slot, TPOT at the occupancy
                # the slots keep (planner.goodput.goodput with admission and tpot_rate_per_s)
                service, slots, quantum, load = _chunked_side(scenario, dec, rows)
                g = gp.goodput(slo, input_cv=w.input_cv, output_tokens=w.output_tokens, service_s=service,
                               servers=slots * n_d, fixed_s=quantum, sequences=dec.sequences[rows] * n_d,
                               tpot_s=dec.tpot_s[rows], fits=dec.ok[rows], admission=True, quantum_load_s=load,
                               output_cv=w.output_cv, tpot_rate_per_s=dec.rate_per_s[rows] * n_d,
                               input_cap_sd=w.input_cap_sd)
                hit = rows[g.goodput_per_s >= rate]
                found += [(mode.value, int(dec.dies[i] * n_d), rate) for i in hit]
                continue
            p_rows = np.flatnonzero(pre.ok)
            for n_p in range(1, budget + 1):
                pr = p_rows[(pre.dies[p_rows] * n_p <= budget) & admissible(pre.dies[p_rows], n_p, pod)]
                if not len(pr):
                    break
                P, D = np.meshgrid(pr, rows, indexing="ij")
                P, D = P.ravel(), D.ravel()
                dies = pre.dies[P] * n_p + dec.dies[D] * n_d
                # Only a pair whose two capacities both reach the rate can serve it: its goodput is the
                # smaller of the TTFT-limited prefill rate, below the queue's stability limit
                # servers / service (queueing.max_arrival_rate_per_s; tests/property/test_queueing_props.py),
                # and the decode rate, at most Little's law at the batch (planner.goodput.goodput).  The
                # other pairs are not priced: at 120 req/s they were ~420,000 pairs and 4 s of this test.
                capacity = np.minimum(pre.slots[P] * n_p / pre.service_s[P],
                                      dec.sequences[D] * n_d / (w.output_tokens * dec.tpot_s[D]))
                keep = (dies <= budget) & (capacity >= rate * (1 - 1e-9))
                P, D, dies = P[keep], D[keep], dies[keep]
                kv = gp.kv_handoff_s(scenario.hardware, env.model, env.by, input_tokens=env.input_tokens,
                                     prefill_tp=pre.cands.arrays["tp"][P], decode_tp=dec.knob("tp", D),
                                     same_pod=dies <= scenario.hardware.pod_dies, p2p_s=env.calls.p2p_s)
                g = gp.goodput(slo, input_cv=w.input_cv, output_tokens=w.output_tokens, service_s=pre.service_s[P],
                               servers=pre.slots[P] * n_p, fixed_s=kv + dec.tpot_s[D],
                               sequences=dec.sequences[D] * n_d, tpot_s=dec.tpot_s[D], fits=np.ones(len(P), bool))
                found += [(mode.value, int(d), rate) for d in dies[g.goodput_per_s >= rate]]
    return found


@pytest.mark.parametrize("rate", [20.0, 60.0, 120.0])
def test_target_rate_finds_the_fewest_dies(rate):
    scenario = _scenario()
    result = plan(scenario, top=5, target_rate_per_s=rate)
    assert result.layouts, rate
    best = result.layouts[0]
    assert best.metrics.goodput_requests_per_s >= rate * (1 - 1e-12)
    assert best.dies < scenario.dies, "fewer dies than the budget"
    assert [p.dies for p in result.layouts] == sorted(p.dies for p in result.layouts)
    smaller = _smallest_serving(scenario, rate, best.dies)
    assert not smaller, f"{len(smaller)} layouts with fewer than {best.dies} dies serve {rate} req/s: {smaller[:3]}"


def test_target_rate_beyond_the_budget_finds_nothing(shared_plan):
    # shared_plan (tests/conftest.py): the same plan as tests/search/test_plan.py's 32-die one
    best_total = max(p.metrics.goodput_requests_per_s for p in shared_plan(_scenario(), top=10).layouts)
    assert not plan(_scenario(), top=5, target_rate_per_s=best_total * 3).layouts
