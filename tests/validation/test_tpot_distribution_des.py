"""TPOT percentiles over requests (planner.goodput.tpot_quantile_s) against a discrete-event simulation.

The simulation runs one decode instance step by step: Poisson arrivals join at step boundaries
(continuous batching, at most ``A * cap`` sequences), every step lasts ``s0 + s1 * n / A`` for
``n`` sequences in flight, and each sequence emits 1 + (accepted MTP drafts) tokens, drafts
accepted in order with probability ``a``.  A request's TPOT is its decode time over its tokens.

Band, from two sources of error:
- the simulation's own sampling error: requests that overlap see the same batch, so two seeded
  runs of 60,000 steps (~250 independent residences) differ by ~0.5% of TPOT at p50 and p90 and
  ~2% at p99 (measured across seeds);
- the closed form's approximations: normal limits (no skew) and a mean-field feedback of the
  batch on the step time, taken to be good to about a quarter of the spread above the mean
  (the spread is ~7% of TPOT at p90 and ~14% at p99 here).
So: p50 within 1.5%, p90 within 3%, p99 within 5% of the simulated TPOT.  Seeded: the same
numbers every run.
"""

from __future__ import annotations

import numpy as np
import pytest

from planner import goodput as gp

A, CAP, S0, S1 = 8, 48, 0.020, 0.0008   # attention dies, batch cap per die, step = S0 + S1 * batch per die
L = 256                                  # output tokens (255 decode tokens after the first)


def _simulate(rate_per_s: float, drafts: int, acceptance: float, steps: int = 30000, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t, pending = 0.0, 0.0            # time; next arrival time
    pending = rng.exponential(1 / rate_per_s)
    queue: list[float] = []
    left = np.zeros(0)
    start = np.zeros(0)
    tpots: list[np.ndarray] = []
    for _ in range(steps):
        while pending <= t:
            queue.append(pending)
            pending += rng.exponential(1 / rate_per_s)
        room = A * CAP - len(left)
        if room > 0 and queue:
            joined = queue[:room]
            del queue[:room]
            left = np.concatenate([left, np.full(len(joined), L - 1.0)])
            start = np.concatenate([start, np.full(len(joined), t)])
        dt = S0 + S1 * len(left) / A
        t += dt
        # tokens per step: 1 + number of consecutively accepted drafts
        accepted = np.zeros(len(left))
        alive = np.ones(len(left), dtype=bool)
        for _d in range(drafts):
            alive &= rng.random(len(left)) < acceptance
            accepted += alive
        left -= 1.0 + accepted
        done = left <= 0
        if done.any():
            tpots.append((t - start[done]) / (L - 1))
            left, start = left[~done], start[~done]
    out = np.concatenate(tpots)
    return out[len(out) // 5:]  # drop the warm-up fifth


@pytest.mark.parametrize(("drafts", "acceptance", "batch"), [(1, 0.7, 24.0), (0, 0.0, 30.0)])
def test_tpot_quantiles_match_simulation(drafts, acceptance, batch):
    mu, _ = gp.mtp_tokens_per_step_moments(drafts, acceptance)
    step = S0 + S1 * batch
    # Little's law at the operating batch: b = lambda * (L - 1) * step(b) / (mu * A)
    rate = batch * mu * A / ((L - 1) * step)
    sim = np.concatenate([_simulate(rate, drafts, acceptance, steps=60000, seed=seed) for seed in (1, 2)])
    assert abs(sim.mean() / (step / mu) - 1) < 0.015, "the simulation runs at the intended batch"
    for q, band in ((0.5, 0.015), (0.9, 0.03), (0.99, 0.05)):
        model = gp.tpot_quantile_s(q, tpot_s=np.array([step / mu]), step_slope_s=np.array([S1]),
                                   batch=np.array([batch]), batch_cap=np.array([CAP]), attention_dies=np.array([A]),
                                   output_tokens=L - 1, draft_tokens=drafts, acceptance=acceptance)[0]
        measured = float(np.quantile(sim, q))
        assert model == pytest.approx(measured, rel=band), (q, model, measured)


def test_mtp_moments_by_hand():
    # one draft, a = 0.7: X = 1 w.p. 0.3, 2 w.p. 0.7 -> mean 1.7, variance 0.21
    assert gp.mtp_tokens_per_step_moments(1, 0.7) == pytest.approx((1.7, 0.21))
    # two drafts, a = 0.5: X = 1, 2, 3 w.p. 0.5, 0.25, 0.25 -> mean 1.75, E[X^2] = 3.75, var 0.6875
    assert gp.mtp_tokens_per_step_moments(2, 0.5) == pytest.approx((1.75, 0.6875))
    assert gp.mtp_tokens_per_step_moments(0, 0.0) == pytest.approx((1.0, 0.0))
