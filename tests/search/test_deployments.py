"""Deployments real systems run: pods, pools priced alone, a hardware per pool, replicated shared experts."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from planner.evaluate import evaluate, layout_goodput
from planner.inputs.layout import Mode, own_scenario, parse_layout
from planner.inputs.scenario import build_scenario, scenario_overrides
from planner.modes import MODES
from planner.placement import place
from planner.search.plan import plan
from planner.serving.context import Env

CM_INFER = "examples/cloudmatrix-infer-r1-decode-ep320.toml"
XDEEPSERVE = "examples/xdeepserve-r1-transformerless-decode.toml"
PD = "examples/deepseek-v3-cloudmatrix384-pd.toml"


def _json(run) -> dict:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("example", [CM_INFER, XDEEPSERVE])
def test_published_layouts_evaluate_with_shared_expert_dies_and_pods(example, run_planner):
    table = run_planner("evaluate", example)
    assert table.returncode == 0, table.stderr
    assert "shared_gate_up_replica" in table.stdout            # the shared expert runs on expert slots
    assert "placement: cloudmatrix384: 1 pod of 768 dies (decode in pod 0)" in table.stdout
    doc = _json(run_planner("evaluate", example, "--json", "-"))
    assert doc["prefill"] is None and doc["decode"] is not None  # decode priced alone
    weights = doc["decode"]["breakdown"]["memory_bytes"]
    assert any("shared_expert_replicas" in k for k in weights) and weights.get("weights_shared_experts", 0) == 0


def test_first_fit_placement_by_hand():
    # pods of 8: a 4-die prefill instance x3 -> pods 0 (4+4), 1 (4); decode 2 x 16 dies span 2 pods each
    pl = place([("prefill", 3, 4), ("decode", 2, 16)], 8)
    assert pl.pods_used == 2 + 4
    pools = {p.pool: p for p in pl.pools}
    assert pools["prefill"].pods == (0, 1) and pools["prefill"].dies_per_pod == (8, 4)
    assert pools["decode"].pods == (2, 3, 4, 5) and pools["decode"].dies_per_pod == (8, 8, 8, 8)
    assert not pl.same_pod and place([("prefill", 1, 4), ("decode", 1, 4)], 8).same_pod


def test_plan_with_two_pods_places_pools_and_moves_kv_over_roce_across_pods():
    from planner.documents.plan import plan_report

    # 896 dies over two 768-die pods: the listing has layouts across both pods and layouts in one, so
    # both KV fabrics are checked (the whole 1,536 dies listed only two-pod layouts).
    doc = plan_report(plan(build_scenario(None, scenario_overrides(pods=2, dies=896)), top=10), 10)
    assert doc.budget_dies == 896 and doc.pods == 2
    crossing = [e for e in doc.layouts if e.pods > 1]
    single = [e for e in doc.layouts if e.pods == 1]
    assert crossing, "some listed layouts use both pods"
    assert single, "some listed layouts fit one pod"
    for e in crossing:
        assert e.kv_fabric == "roce"
    for e in single:
        assert e.kv_fabric == "ub" and e.pods_by_pool == {"prefill": [0], "decode": [0]}


def test_search_candidates_do_not_grow_with_pods():
    from planner.search import space
    from planner.search.plan import instance_cap

    def sizes(pods: int) -> list[int]:
        sc = build_scenario(None, scenario_overrides(pods=pods))
        cap = instance_cap(sc, sc.dies)
        return [len(e.candidates(sc.model, cap)) for e in MODES.values()] + [len(space.prefill_pools(sc.model, cap))]

    assert sizes(2) == sizes(8) == sizes(21)


def test_decode_pool_alone_is_littles_law_at_its_batch():
    lay = parse_layout({"mode": "pd", "decode": {"instances": 2, "dies": 32, "ep": 32, "batch": 16,
                                                  "redundant_experts": 32}}, "test")
    sc = build_scenario(None, scenario_overrides(hardware="h800", pods=8, weights_dtype="fp8", activations_dtype="fp8"))
    ev = evaluate(lay, sc)
    g = layout_goodput(ev)
    tpot = float(ev.decode.step_s[0]) / ev.env.tokens_per_step
    assert g.tpot_s == pytest.approx(tpot) and bool(ev.decode.fits[0])
    expected = 2 * 32 * 16 / (sc.workload.output_tokens * tpot) if tpot <= sc.slo.tpot_s else 0.0
    assert g.goodput_requests_per_s == pytest.approx(expected, rel=1e-12)
    assert g.prefill_capacity_requests_per_s is None and g.ttft_s is None


def test_prefill_pool_alone_sees_only_its_part_of_ttft():
    from planner import goodput as gp

    lay = parse_layout({"mode": "pd", "prefill": {"instances": 2, "dies": 32, "ep": 32, "batch_tokens": 8192,
                                                   "redundant_experts": 32}}, "test")
    sc = build_scenario(None, scenario_overrides(hardware="h800", pods=8, weights_dtype="fp8", activations_dtype="fp8"))
    ev = evaluate(lay, sc)
    g = layout_goodput(ev)
    step = float(ev.prefill.step_s[0])
    # TP 1: each of the 32 dies of an instance is a token stream of 8192 tokens per forward; a 4096-token
    # prompt is half a forward on one of 2 x 32 = 64 streams, plus a whole forward's quantum under load
    assert bool(ev.prefill.fits[0]) and lay.prefill.tp == 1
    rate = gp.ttft_limited_rate_per_s(sc.slo, 0.0, np.array([step / 2]), np.array([64.0]), np.zeros(1),
                                      quantum_load_s=np.array([step]))[0]
    assert g.goodput_requests_per_s == pytest.approx(rate, rel=1e-12) and rate > 0
    assert g.ttft_breakdown.kv_transfer_s == 0 and g.ttft_breakdown.first_decode_step_s == 0
    assert g.ttft_s <= sc.slo.ttft_s * (1 + 1e-9)


def test_a_pool_on_its_own_hardware_evaluates_and_crosses_pods_for_kv(run_planner, tmp_path):
    text = open(PD).read().replace("[prefill]\n", '[prefill]\nhardware = "atlas-800-a2"\n')
    path = tmp_path / "mixed.toml"
    path.write_text(text)
    doc = _json(run_planner("evaluate", str(path), "--json", "-"))
    kinds = {k["hardware"]: k for k in doc["placement"]["hardware"]}
    assert set(kinds) == {"atlas-800-a2", "cloudmatrix384"}
    pre = tomllib.loads(text)["prefill"]
    assert kinds["atlas-800-a2"]["pods_used"] == pre["instances"] * pre["dies"] // 8  # 8 NPUs per server
    assert doc["placement"]["kv_fabric"] == "roce"
    # the prefill pool is priced on the 910B's own profile, not the scenario's 910C: its step moves.
    # (Which die is faster rests on assumptions: the 910B's GEMM asymptote is calibrated, 0.927 on
    # rows B_g1 / B_g2, the 910C's is msmodeling's assumed 0.7, its attention the other way round.)
    same = _json(run_planner("evaluate", PD, "--json", "-"))
    assert doc["prefill"]["step_s"] != pytest.approx(same["prefill"]["step_s"], rel=1e-3)


def test_plan_with_two_hardware_kinds_ranks_splits(run_planner):
    doc = _json(run_planner("plan", "--prefill-hardware", "atlas-800-a2", "--prefill-pods", "16", "--top", "5",
                            "--modes", "pd", "--json", "-"))
    assert doc["layouts"]
    for e in doc["layouts"]:
        assert e["layout"]["prefill"]["hardware"] == "atlas-800-a2" and e["kv_fabric"] == "roce"
        assert e["layout"]["prefill"]["instances"] * e["layout"]["prefill"]["dies"] <= 16 * 8
    per_die = [e["goodput_requests_per_s"] / e["dies"] for e in doc["layouts"]]
    assert per_die == sorted(per_die, reverse=True)


def test_replicated_shared_experts_vector_equals_scalar():
    sc = build_scenario(None, scenario_overrides(model="deepseek-r1"))
    entry = MODES[Mode.PD]
    rows = {"dies": [320, 320, 288], "tp": [1, 1, 1], "ep": [320, 320, 288], "batch": [32, 32, 48],
            "micro_batches": [1, 1, 2], "redundant_experts": [64, 32, 32], "shared_expert_replicas": [0, 32, 0]}
    knobs = {k: np.array(v, dtype=float) for k, v in rows.items()}
    env = Env.of(sc)
    together = entry.price(env, knobs).step_s
    for i in range(3):
        alone = entry.price(env, {k: v[i:i + 1] for k, v in knobs.items()}).step_s[0]
        assert together[i] == pytest.approx(alone, rel=1e-12)


@pytest.mark.parametrize(("args", "needles"), [
    (("plan", "--pods", "40"), ("pods = 40", "at most 32 pods")),
    (("plan", "--dies", "1000"), ("dies = 1000", "--pods 2")),
    (("plan", "--prefill-pods", "2"), ("without prefill_hardware",)),
    (("plan", "--hardware", "h100", "--dies", "32"), ("dies = 32", "--pods 4")),
    (("plan", "--hardware", "h800", "--weights-dtype", "fp8", "--activations-dtype", "fp8",
      "--prefill-hardware", "cloudmatrix384"), ("prefill_hardware", "fp8")),
])
def test_new_scenario_keys_fail_in_one_line(args, needles, run_planner):
    run = run_planner(*args)
    assert run.returncode == 2, (run.returncode, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize(("decode", "needle"), [
    ({"shared_experts": "replicated"}, "needs shared_expert_replicas"),
    ({"shared_experts": "on_token_die", "shared_expert_replicas": 32}, "set shared_experts = 'replicated'"),
    ({"shared_expert_replicas": 7}, "cannot place"),
])
def test_new_layout_keys_fail_in_one_line(decode, needle, run_planner, tmp_path):
    base = {"instances": 1, "dies": 320, "ep": 320, "batch": 32, "redundant_experts": 32, "shared_expert_replicas": 32}
    d = {**base, **decode}
    if "shared_experts" in decode and "shared_expert_replicas" not in decode:
        d.pop("shared_expert_replicas")
    lines = ['mode = "pd"', "[decode]"] + [f"{k} = {json.dumps(v)}" for k, v in d.items()]
    path = tmp_path / "bad.toml"
    path.write_text("\n".join(lines) + "\n")
    run = run_planner("evaluate", str(path))
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1 and needle in run.stderr, run.stderr


def test_a_layout_needing_more_pods_than_asked_names_the_pods(run_planner, tmp_path):
    path = tmp_path / "big.toml"
    path.write_text('mode = "pd"\n[decode]\ninstances = 3\ndies = 288\nep = 288\nbatch = 8\nredundant_experts = 32\n'
                    "[scenario]\ndies = 768\n")
    run = run_planner("evaluate", str(path))
    assert run.returncode == 2 and "needs 2 pods of cloudmatrix384" in run.stderr and "--pods 2" in run.stderr


def test_a_dense_model_too_large_for_one_server_pipelines_across_two():
    """Llama-3.1-405B (FP8 weights, BF16 KV) on two 8-GPU H100 servers: TP8 in one server leaves
    80 GB - 50.6 GB of weights ~ 20 GB for KV (2 sequences of ~10k tokens per die); TP8 x PP2 over
    both servers halves the weights per die and so holds several times the sequences.  The search
    finds the pipeline, its layout file says pp = 2, spans both pods, and evaluates to the goodput
    the search listed; MoE candidates never carry a pipeline."""
    from planner.search import space

    sc = build_scenario(None, scenario_overrides(model="llama-3.1-405b", hardware="h100", dies=16, pods=2,
                                                 weights_dtype="fp8", activations_dtype="fp8", kv_dtype="bf16",
                                                 mtp_acceptance=0.0, ttft_s=3600.0, tpot_s=60.0))
    result = plan(sc, top=3)
    best = result.layouts[0]
    d = best.layout.decode
    assert (d.tp, d.pp, d.dies) == (8, 2, 16), best.layout.to_dict()
    assert best.layout.to_dict()["decode"]["pp"] == 2
    ev = evaluate(parse_layout({**best.layout.to_dict(), "scenario": best.layout.scenario.model_dump(mode="json")},
                               "t"), sc, "t")
    assert ev.placement.decode.pods_used == 2
    assert layout_goodput(ev).goodput_requests_per_s == pytest.approx(best.metrics.goodput_requests_per_s, rel=1e-9)
    assert best.metrics.goodput_requests_per_s == pytest.approx(best.search_goodput_per_s, rel=1e-6)
    assert set(space.prefill_pools(build_scenario(None, {}).model, 64).arrays["pp"]) == {1}
    # each listed layout's pricing inside the plan (pools of several stage counts priced together) is the
    # layout priced alone: the same step and the same once-per-step parts (no pipeline part at one stage)
    for p in result.layouts:
        alone = evaluate(p.layout, own_scenario(p.layout, sc), "t").decode
        inside = p.evaluation.decode
        assert inside.step_s.tobytes() == alone.step_s.tobytes()
        assert set(inside.extra) == set(alone.extra), (p.layout.decode.stages, set(inside.extra) ^ set(alone.extra))
    assert {p.layout.decode.stages for p in result.layouts} == {1, 2}
    # --max-pp 1: the same question without pipelines; every layout one stage, a lower best per die
    flat = plan(sc, top=3, max_pp=1)
    assert flat.rejected["pp_over_max_pp"] > 0 and all(p.layout.decode.stages == 1 for p in flat.layouts)
    per_die = [p.metrics.output_tokens_per_s / p.dies for p in (best, flat.layouts[0])]
    assert per_die[1] < per_die[0]


def test_dense_tp_groups_span_the_pod_not_beyond():
    """Dense models search TP up to 64 where the heads divide (Llama-3.1-405B: 128 heads); an MoE model keeps
    TP_GRID; a group wider than one pod (8-GPU servers) is dropped by name, one within it (CloudMatrix384's
    768-die UB domain) is kept.  At 64 dies the groups past TP8 are TP16 x PP1/2/4, TP32 x PP1/2 and TP64."""
    from planner import catalog
    from planner.search import space
    from planner.search.plan import _within_pod

    llama, dsv3 = catalog.model("llama-3.1-405b"), catalog.model("deepseek-v3")
    assert space.tp_choices(llama, 768) == [1, 2, 4, 8, 16, 32, 64]
    assert space.tp_choices(llama, 16) == [1, 2, 4, 8, 16]
    assert space.tp_choices(dsv3, 768) == [1, 2, 4, 8]
    for pod_dies, kept, dropped in ((8, {1, 2, 4, 8}, 6), (768, {1, 2, 4, 8, 16, 32, 64}, 0)):
        c = _within_pod(space.shared_die_pools(llama, 64, knob="batch", knob_values=(1,), micro_batches=(1,)),
                        pod_dies)
        assert set(c.arrays["tp"].tolist()) == kept
        assert c.rejected.get("tp_beyond_pod", 0) == dropped


def test_a_wider_tp_grid_never_lowers_the_best_goodput(monkeypatch):
    """Llama-3.1-405B on 32 CloudMatrix384 dies at an 80 ms TPOT SLO: with TP16 / TP32 in the grid the best
    goodput per die is at least the TP <= 8 grid's (the search only gains candidates; here TP16 wins)."""
    from planner.search import space

    sc = build_scenario(None, scenario_overrides(model="llama-3.1-405b", hardware="cloudmatrix384", dies=32,
                                                 tpot_s=0.08))
    wide = plan(sc, top=1).layouts[0]
    monkeypatch.setattr(space, "DENSE_TP_GRID", space.TP_GRID)
    narrow = plan(sc, top=1).layouts
    best_narrow = narrow[0].per_die if narrow else 0.0
    assert wide.per_die > best_narrow > 0
    assert wide.layout.decode.tp == 16


def test_pins_hold_the_search_to_the_stack_and_never_raise_the_best():
    """Llama-2-70B on one 8-GPU H100 server (MLPerf lengths): pinned to TP2 and at most 448 sequences per die
    (the published v4.1 layout's 896 per TP2 instance), every listed layout has TP2, one stage and a batch
    <= 448, and the best goodput per die is at most the unpinned search's (the pins keep a subset of its
    candidates, counted under their reasons)."""
    from planner.search.plan import Pins

    sc = build_scenario(None, scenario_overrides(model="llama-2-70b", hardware="h100", input_tokens=222,
                                                 output_tokens=294, weights_dtype="fp8", activations_dtype="fp8",
                                                 kv_dtype="fp8", mtp_acceptance=0.0))
    free = plan(sc, top=3)
    held = plan(sc, top=3, pins=Pins(tp=2, pp=1, max_batch=448))
    assert held.layouts and all((p.layout.decode.tp, p.layout.decode.stages) == (2, 1) and p.layout.decode.batch <= 448
                                for p in held.layouts)
    prefill = [p.layout.prefill for p in held.layouts if p.layout.prefill is not None]
    assert all((q.tp, q.stages) == (2, 1) for q in prefill)
    assert held.layouts[0].per_die <= free.layouts[0].per_die
    assert {"tp_not_pinned", "pp_not_pinned", "batch_over_max_batch"} <= set(held.rejected)


@pytest.mark.parametrize(("model", "hardware", "pins", "needle"), [
    ("deepseek-v3", "cloudmatrix384", dict(tp=3), "--tp 3: the search prices TP 1, 2, 4, 8"),
    ("deepseek-v3", "cloudmatrix384", dict(tp=16), "--tp 16: the search prices TP 1, 2, 4, 8"),
    ("deepseek-v3", "cloudmatrix384", dict(pp=2), "dense models only"),
    ("llama-3.1-405b", "h100", dict(tp=16), "wider than one h100 pod"),
    ("llama-3.1-405b", "h100", dict(pp=3), "--pp 3: the search prices 1, 2, 4, 8"),
    ("deepseek-v3", "cloudmatrix384", dict(tp=2), "decode runs at TP1 in every mode"),
    ("llama-3.1-70b", "h100", dict(tp=8, pp=2), "= 16 dies per instance is more than the budget's 8"),
])
def test_pins_the_search_cannot_price_are_refused_naming_the_flag(model, hardware, pins, needle):
    from planner.errors import PlannerError
    from planner.search.plan import Pins

    sc = build_scenario(None, scenario_overrides(model=model, hardware=hardware))
    with pytest.raises(PlannerError, match=needle.replace("+", r"\+")):
        plan(sc, pins=Pins(**pins))


def test_pins_allow_a_layout_exactly_when_every_pool_meets_them():
    """Pins.allow (validate reuses the free search's top when it meets the pins) reads every pool: the decode
    pool's TP, stages and batch, the prefill pool's TP and stages (its batch is tokens, not capped)."""
    from planner.search.plan import Pins

    lay = parse_layout({"mode": "pd", "prefill": {"instances": 1, "dies": 2, "tp": 2, "batch_tokens": 8192},
                        "decode": {"instances": 2, "dies": 2, "tp": 2, "batch": 384}}, "t")
    assert Pins(tp=2, pp=1, max_batch=448).allow(lay) and Pins().allow(lay)
    assert not Pins(max_batch=256).allow(lay)
    assert not Pins(pp=2).allow(lay)
    mixed = parse_layout({"mode": "pd", "prefill": {"instances": 1, "dies": 4, "tp": 4, "batch_tokens": 8192},
                          "decode": {"instances": 1, "dies": 2, "tp": 2, "batch": 64}}, "t")
    assert not Pins(tp=2).allow(mixed) and Pins(max_batch=64).allow(mixed)


def test_modes_that_leave_no_decode_pool_say_so_not_memory():
    """A dense model asked for transformerless alone has no decode candidate at all (its routed experts are
    what that mode puts on dies of their own): one line naming the modes (exit 2), not 'nothing fits in memory'."""
    from planner.errors import PlannerError

    sc = build_scenario(None, scenario_overrides(model="llama-3.1-70b", hardware="h100"))
    with pytest.raises(PlannerError, match="no decode pool of llama-3.1-70b on h100 in --modes transformerless; "
                                           "transformerless puts routed experts"):
        plan(sc, modes=(Mode.TRANSFORMERLESS,))


def test_a_budget_below_the_smallest_transformerless_instance_says_so():
    """DeepSeek-V3 on one 8-GPU server, transformerless only: an instance takes at least 8 attention dies and
    2 expert dies, so there is no candidate; the line says why (not a memory miss)."""
    from planner.errors import PlannerError

    sc = build_scenario(None, scenario_overrides(model="deepseek-v3", hardware="h100"))
    with pytest.raises(PlannerError, match=r"at least 8 attention dies beside 2 or more expert dies \(10\), the budget "
                                           r"is 8"):
        plan(sc, modes=(Mode.TRANSFORMERLESS,))
