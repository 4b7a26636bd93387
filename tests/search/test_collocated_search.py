"""The collocated search returns the optimum of its own space, checked by brute force.

Every feasible collocated candidate (TP, EP, batch, micro-batches, chunk) at every instance count
the search may list (planner.search.combine.admissible) is scored with the goodput model written
out here (chunked prefill: an M/G/c queue of request slots whose service is the chunk step times
the forwards a prompt needs; decode: Little's law at the occupancy up to which TPOT meets its SLO,
capped by the wait for a batch slot); the best
few per die are re-priced exactly (``evaluate`` + ``layout_goodput``, as ``planner evaluate`` does)
and none may beat the search's rank 1.
"""

from __future__ import annotations

import numpy as np
import pytest

from planner import goodput as gp
from planner.evaluate import evaluate, layout_goodput
from planner.inputs.layout import Mode, parse_layout
from planner.inputs.scenario import build_scenario, scenario_overrides
from planner.modes import MODES
from planner.search.combine import admissible
from planner.search.plan import instance_cap, plan
from planner.search.score import score_decode

SCENARIOS = {
    # Llama-3.1-405B on 8 H200 with the MLPerf v5.1 Offline workload (9,429-token prompts): ranked by
    # decode rate alone, the best shapes carry 256-token chunks; with the prefill side, 4,096.
    "llama-405b-h200-8": dict(model="llama-3.1-405b", hardware="h200", dies=8, pods=1, weights_dtype="fp8",
                              activations_dtype="fp8", kv_dtype="fp8", input_tokens=9429, output_tokens=685,
                              tpot_s=60.0, ttft_s=3600.0),
    # a small MoE (EP, TP and instance counts vary) under the default SLOs
    "mixtral-h100-8": dict(model="mixtral-8x7b", hardware="h100", dies=8, pods=1, weights_dtype="fp8",
                           activations_dtype="fp8", input_tokens=2048, output_tokens=256),
}

REPRICED = 4  # brute-force points re-priced exactly (the best by the search's score)


def _brute_force_best(scenario) -> list[tuple[float, dict]]:
    """(exact goodput per die, decode table) of the best few layouts of the collocated space."""
    entry = MODES[Mode.COLLOCATED]
    budget = min(scenario.dies, scenario.pods * scenario.hardware.pod_dies)
    dec = score_decode(scenario, entry.candidates(scenario.model, instance_cap(scenario, budget)), entry)
    w = scenario.workload
    ok = np.flatnonzero(dec.ok)
    points = []
    for n in range(1, budget + 1):
        rows = ok[(dec.dies[ok] * n <= budget) & admissible(dec.dies[ok], n, scenario.hardware.pod_dies)]
        if not len(rows):
            continue
        tp, chunk = dec.knob("tp", rows), dec.knob("prefill_chunk_tokens", rows)
        k = tp * chunk / w.input_tokens  # prompts per chunk step of one TP group (no cache hits here)
        slots = dec.dies[rows] / tp * np.where(k >= 1, np.floor(k), 1.0)
        forwards = np.where(k >= 1, 1.0, np.ceil(1.0 / k))
        g = gp.goodput(scenario.slo, input_cv=w.input_cv, output_tokens=w.output_tokens,
                       service_s=dec.chunk_step_s[rows] * forwards, servers=slots * n, fixed_s=np.zeros(len(rows)),
                       sequences=dec.sequences[rows] * n, tpot_s=dec.tpot_s[rows], fits=dec.ok[rows],
                       tpot_slo_s=dec.tpot_slo_s[rows], admission=True,
                       tpot_rate_per_s=dec.rate_per_s[rows] * n).goodput_per_s
        points += [(float(x) / (int(dec.dies[i]) * n), int(i), n) for x, i in zip(g, rows, strict=True)]
    points.sort(key=lambda p: -p[0])
    out = []
    for _, i, n in points[:REPRICED]:
        table = {key: int(dec.knob(key, i)) for key in entry.decode_keys} | {"instances": n}
        table.pop("shared_expert_replicas", None)
        sc = scenario.document()
        sc["mtp"]["acceptance"] = 0.0
        layout = parse_layout({"mode": "collocated", "decode": table, "scenario": sc}, "brute force")
        m = layout_goodput(evaluate(layout, scenario, "brute force"))
        if m.meets_slo:
            out.append((m.goodput_requests_per_s / layout.dies, table))
    return sorted(out, key=lambda p: -p[0])


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_collocated_layout_beats_the_search(name):
    scenario = build_scenario(None, scenario_overrides(**SCENARIOS[name]))
    assert scenario.mtp_draft_tokens == 0  # the brute force scores MTP off only
    best = plan(scenario, modes=(Mode.COLLOCATED,), top=1).layouts[0]
    brute = _brute_force_best(scenario)
    assert brute, name
    per_die, table = brute[0]
    assert best.per_die >= per_die * (1 - 1e-9), (f"{table} serves {per_die:.6g} req/s per die, "
                                                   f"the search's rank 1 {best.per_die:.6g}")
