"""planner.evaluate.price_decode_pools prices many layouts' decode pools in one vector call: each row's PoolStep
(PoolStep.row) is, array for array and key for key, the one a call of its own (N = 1) returns."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from planner.evaluate import StepMemo, evaluate, price_decode_pools
from planner.inputs.layout import Mode, load_layout
from planner.inputs.scenario import build_scenario
from planner.modes import MODES
from planner.serving.context import Env


def _leaves(x: Any, path: str = "") -> dict[str, Any]:
    """Every array and scalar of a PoolStep by its path; dict keys (in order) as leaves of their own."""
    out: dict[str, Any] = {}
    if isinstance(x, np.ndarray):
        out[path] = x
    elif isinstance(x, Mapping):  # a dict, or a breakdown built on first use (planner.serving.result.Deferred)
        out[path + ".keys"] = tuple(x)
        for k, v in x.items():
            out.update(_leaves(v, f"{path}.{k}"))
    elif isinstance(x, tuple):
        for i, v in enumerate(x):
            out.update(_leaves(v, f"{path}[{i}]"))
    elif dataclasses.is_dataclass(x):
        for f in dataclasses.fields(x):
            out.update(_leaves(getattr(x, f.name), f"{path}.{f.name}"))
    else:
        out[path] = x
    return out


def _same(a: Any, b: Any) -> None:
    la, lb = _leaves(a), _leaves(b)
    assert list(la) == list(lb)
    for path, x in la.items():
        y = lb[path]
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y, equal_nan=True), path
        else:
            assert x == y, path


def test_rows_priced_together_are_each_priced_alone() -> None:
    """Every mode, MTP off and on, rows with and without shared-expert replicas (priced in separate calls,
    as price_decode_pools groups them): each row's whole PoolStep is bitwise the N = 1 step."""
    scenario = build_scenario(None, {})
    rng = np.random.default_rng(5)
    for drafts in (0, 1):
        env = Env.of(scenario, draft_tokens=drafts)
        for entry in MODES.values():
            cands = entry.candidates(scenario.model, 768)
            replicated = cands.arrays.get("shared_expert_replicas", np.zeros(len(cands))) > 0
            for group in (np.flatnonzero(replicated), np.flatnonzero(~replicated)):
                rows = rng.choice(group, 12, replace=False)
                many = entry.price(env, {k: v[rows] for k, v in cands.arrays.items()})
                for i in (0, 5, 11):
                    alone = entry.price(env, {k: float(v[rows[i]]) for k, v in cands.arrays.items()})
                    _same(many.row(i, len(rows)), alone)


def test_primed_memo_gives_the_evaluation_of_each_layout() -> None:
    """Layouts of one mode (one with replicas, two without) primed into a memo, then evaluated: the decode
    steps are those of evaluate without a memo (the two without replicas priced together, the one with them
    left to evaluate: a group of one)."""
    scenario = build_scenario(None, {})
    base = load_layout("examples/deepseek-v3-cloudmatrix384-pd.toml")
    plain = base.decode.model_copy(update={"shared_experts": None, "shared_expert_replicas": None,
                                            "redundant_experts": 160})  # (256 + 160) / 208 dies
    layouts = [base, base.model_copy(update={"decode": plain}),
               base.model_copy(update={"decode": plain.model_copy(update={"batch": 16})})]
    memo: StepMemo = {}
    price_decode_pools([(lay, scenario) for lay in layouts], "test", memo)
    assert sum(k[0] == "decode" for k in memo) == 2
    for lay in layouts:
        _same(evaluate(lay, scenario, "test", memo).decode, evaluate(lay, scenario, "test").decode)


def test_primed_variants_give_each_layouts_expert_load() -> None:
    """planner.imbalance.price_variants (the balanced and even steps of many pools in one call each) then
    layout_load: the same PoolLoad floats as layout_load without a memo, layout by layout."""
    from planner.imbalance import LoadMemo, layout_load, price_variants

    scenario = build_scenario(None, {})
    base = load_layout("examples/deepseek-v3-cloudmatrix384-pd.toml")
    plain = base.decode.model_copy(update={"shared_experts": None, "shared_expert_replicas": None,
                                           "redundant_experts": 160})
    layouts = [base.model_copy(update={"decode": plain}),
               base.model_copy(update={"decode": plain.model_copy(update={"batch": 16}),
                                       "prefill": base.prefill.model_copy(update={"batch_tokens": 8192})})]
    memo: StepMemo = {}
    evs = [evaluate(lay, scenario, "test", memo) for lay in layouts]
    load_memo: LoadMemo = {}
    price_variants(evs, load_memo)
    assert sum(isinstance(v[1], float) for v in load_memo.values()) == 8  # 2 layouts x 2 pools x 2 variants
    for ev in evs:
        assert layout_load(ev, load_memo) == layout_load(ev)


def test_tpot_limited_rates_of_many_collocated_layouts_are_each_layouts_own() -> None:
    """planner.evaluate.tpot_limited_rates_per_s: collocated layouts' occupancy curves (grids of different lengths,
    padded with nan) as the rows of one, each rate the one of its own curve."""
    from planner.evaluate import tpot_limited_rate_per_s, tpot_limited_rates_per_s
    from planner.inputs.layout import parse_layout
    from planner.inputs.scenario import scenario_overrides

    scenario = build_scenario(None, scenario_overrides(model="qwen3-30b-a3b", hardware="h100", weights_dtype="fp8",
                                                       activations_dtype="fp8", input_tokens=2048,
                                                       output_tokens=256, dies=16, pods=2))
    evs = [evaluate(parse_layout({"mode": "collocated", "decode": {"instances": 2, "dies": 1, "batch": b,
                                                                    "prefill_chunk_tokens": c}}, "test"), scenario)
           for b, c in ((64, 2048), (8, 512), (256, 1024), (24, 4096))]
    rates = tpot_limited_rates_per_s(evs)
    for ev, rate in zip(evs, rates, strict=True):
        alone = tpot_limited_rate_per_s(ev)
        assert rate.shape == alone.shape == (1,) and rate[0] == alone[0]
    assert sum(r[0] > 0 for r in rates) >= 3


def test_deferred_breakdown_is_built_once_and_sliced_lazily() -> None:
    """planner.serving.result.Deferred: built on first read, once; PoolStep.part keeps it deferred, and reading
    a part gives the rows of the whole."""
    from planner.serving.result import Deferred

    calls = []

    def build() -> dict:
        calls.append(1)
        return {"a": np.arange(4.0)}

    d = Deferred(build)
    assert not calls
    assert list(d) == ["a"] and len(d) == 1 and np.array_equal(d["a"], np.arange(4.0)) and len(calls) == 1
    scenario = build_scenario(None, {})
    entry = MODES[Mode.COLLOCATED]
    cands = entry.candidates(scenario.model, 768)
    step = entry.price(Env.of(scenario), {k: v[:6] for k, v in cands.arrays.items()})
    assert isinstance(step.layers, Deferred)
    part = step.part(2, 4, 6)
    assert isinstance(part.layers, Deferred)
    for name, layer in part.layers.items():
        whole = step.layers[name].ops
        for op, cost in layer.ops.items():
            assert np.array_equal(cost.time_s, whole[op].time_s[2:4]), (name, op)


def test_part_defers_a_plain_breakdown_too() -> None:
    """A step whose breakdown is a plain dict (pd, transformerless): its parts cut the breakdown when first read,
    array for array the rows of the whole (test_rows_priced_together_are_each_priced_alone checks them bitwise
    against N = 1 steps)."""
    from planner.serving.result import Deferred

    scenario = build_scenario(None, {})
    for mode in (Mode.PD, Mode.TRANSFORMERLESS):
        entry = MODES[mode]
        cands = entry.candidates(scenario.model, 768)
        step = entry.price(Env.of(scenario), {k: v[:6] for k, v in cands.arrays.items()})
        assert isinstance(step.layers, dict)
        part = step.part(1, 4, 6)
        assert isinstance(part.layers, Deferred) and list(part.layers) == list(step.layers)
        for name, layer in part.layers.items():
            for op, cost in layer.ops.items():
                assert np.array_equal(cost.time_s, step.layers[name].ops[op].time_s[1:4]), (mode, name, op)
