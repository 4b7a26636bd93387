"""Envelope.dies_for_each (binary search on the running maximum) equals the scan it replaced, and combine
gives the splits of the scalar loop it replaced, in order."""

from __future__ import annotations

import numpy as np

from planner.search import combine as cb


def _scan(rate: np.ndarray, value: float) -> int:
    reach = rate >= value * (1 - 1e-12)
    return int(np.argmax(reach)) if reach.any() else -1


def _envelope(rng: np.random.Generator, budget: int) -> cb.Envelope:
    dies = rng.integers(1, budget + 1, 40)
    rate = np.round(rng.random(40) * 10, 1)  # ties on purpose
    return cb.scatter_best(budget, dies, rate, np.arange(40), rng.integers(1, 5, 40))


def test_dies_for_each_equals_the_scan_on_envelopes_and_unordered_rates() -> None:
    rng = np.random.default_rng(5)
    env = _envelope(rng, 300)
    values = np.concatenate([np.unique(env.rate), [0.0, 1e-9, 99.0], env.rate[::7] * (1 - 5e-13)])
    assert np.array_equal(env.dies_for_each(values), [_scan(env.rate, v) for v in values])
    assert [env.dies_for(v) for v in values[:5]] == [_scan(env.rate, v) for v in values[:5]]
    bumpy = cb.Envelope(rate=np.array([0.0, 3.0, 1.0, 5.0, 2.0]), index=np.arange(5), instances=np.ones(5, int))
    probe = np.array([0.5, 1.0, 2.5, 4.0, 6.0])
    assert np.array_equal(bumpy.dies_for_each(probe), [_scan(bumpy.rate, v) for v in probe])  # the scan fallback


def test_combine_equals_the_scalar_loop() -> None:
    rng = np.random.default_rng(9)
    budget = 300
    pre, dec = _envelope(rng, budget), _envelope(rng, budget)
    pre_dies, dec_dies = rng.integers(1, 9, 40), rng.integers(1, 9, 40)
    s = np.arange(budget + 1)
    g = np.minimum(pre.rate[s], dec.rate[budget - s])
    want: dict = {}
    for value in np.unique(g[g > 0]):
        sp, sd = _scan(pre.rate, value), _scan(dec.rate, value)
        if sp < 0 or sd < 0 or sp + sd > budget:
            continue
        pi, pn, di, dn = int(pre.index[sp]), int(pre.instances[sp]), int(dec.index[sd]), int(dec.instances[sd])
        dies = pn * int(pre_dies[pi]) + dn * int(dec_dies[di])
        want.setdefault((pi, pn, di, dn), cb.Split(float(min(pre.rate[sp], dec.rate[sd])), pi, pn, di, dn, dies))
    got = cb.combine(budget, pre, dec, pre_dies, dec_dies)
    assert len(want) >= 3 and got == list(want.values())
    assert all(type(x.dies) is int and type(x.goodput_per_s) is float for x in got)
