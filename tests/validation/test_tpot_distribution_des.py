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


# ----------------------------------------------------------------------------- chunked prefill (collocated)
#
# One TP group of one die, stepped: Poisson prompts queue for the chunk budget; a step carries one
# chunk while a prompt waits (``F`` chunk steps per prompt) and lasts ``s0 + s1 n + extra`` (else
# ``s0 + s1 n``) for ``n`` sequences decoding; a prompt's last chunk step emits its first token,
# then it decodes ``L - 1`` steps.  Its TPOT is the time of those steps over ``L - 1``.
#
# Fixed point by hand: ``b = lambda (L - 1) s``, ``f = lambda F s`` and ``s = s0 + s1 b + f extra``,
# so ``s = s0 / (1 - lambda (s1 (L - 1) + F extra))``; the planner's chunk_fraction at that batch
# (``b N / (L C)`` with ``N = F C``) and chunked_step_s must give the same ``f`` and ``s``.
#
# Band, from the simulation's seed spread and what the closed form leaves out:
# - five groups of four seeded 100,000-step runs differ by up to 1.2% (p50, p90) and 3% (p99) of
#   TPOT, by 1.6% in the share of chunk steps and 0.6% in the mean step;
# - requests arriving in a burst see their own burst's load (a request-weighted, not step-weighted,
#   mean): the mean TPOT over requests runs 1-3% above the mean step in these runs, a term the
#   closed form leaves out (it scales as 1/b); skew beyond the normal limit adds at p99.
# So: chunk share within 3%, mean step within 1.5%; p50 and p90 within 4%, p99 within 7%.

COLLOCATED_CASES = [  # s0, s1, extra (s), chunk steps per prompt, output tokens, arrivals (1/s)
    (0.020, 0.0002, 0.020, 4, 256, 3.0),   # b ~ 25, f ~ 0.40
    (0.020, 0.0001, 0.020, 2, 256, 5.0),   # b ~ 38, f ~ 0.30
]


def _simulate_chunked(rate_per_s: float, steps: int, seed: int, s0: float, s1: float, extra: float, chunks: int,
                      out_tokens: int) -> tuple[np.ndarray, float, float]:
    """(TPOT per request after the warm-up fifth, share of chunk steps, mean step)."""
    from collections import deque

    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate_per_s, size=int(rate_per_s * steps * 0.2) + 1000))
    nxt, t, waiting, head_left, chunk_steps = 0, 0.0, 0, chunks, 0
    live: deque[tuple[int, float]] = deque()   # (last decode step, first-token time), in order
    tpots: list[float] = []
    for j in range(1, steps + 1):
        while arrivals[nxt] <= t:
            waiting, nxt = waiting + 1, nxt + 1
        chunk = waiting > 0
        t += s0 + s1 * len(live) + (extra if chunk else 0.0)
        while live and live[0][0] == j:
            tpots.append((t - live.popleft()[1]) / (out_tokens - 1))
        if chunk:
            chunk_steps, head_left = chunk_steps + 1, head_left - 1
            if head_left == 0:
                waiting, head_left = waiting - 1, chunks
                live.append((j + out_tokens - 1, t))
    out = np.array(tpots)
    return out[len(out) // 5:], chunk_steps / steps, t / steps


@pytest.mark.parametrize(("s0", "s1", "extra", "chunks", "out_tokens", "rate"), COLLOCATED_CASES)
def test_chunked_prefill_fixed_point_and_tpot_quantiles_match_simulation(s0, s1, extra, chunks, out_tokens, rate):
    residence = out_tokens - 1
    step = s0 / (1 - rate * (s1 * residence + chunks * extra))   # the fixed point, by hand
    b = rate * residence * step
    chunk_tokens = 512.0
    f = gp.chunk_fraction(np.array([b]), np.array([chunk_tokens]), groups=1.0, new_tokens=chunks * chunk_tokens,
                          output_tokens=residence, tokens_per_step=1.0)
    assert f[0] == pytest.approx(rate * chunks * step, rel=1e-12)
    assert gp.chunked_step_s(np.array([s0 + s1 * b]), np.array([s0 + s1 * b + extra]), f)[0] == pytest.approx(step)
    runs = [_simulate_chunked(rate, 100_000, seed, s0, s1, extra, chunks, out_tokens) for seed in (1, 2, 3, 4)]
    sim = np.concatenate([r[0] for r in runs])
    assert np.mean([r[1] for r in runs]) == pytest.approx(f[0], rel=0.03), "share of chunk steps"
    assert np.mean([r[2] for r in runs]) == pytest.approx(step, rel=0.015), "mean step"
    terms = gp.ChunkTerms.of(plain_step_s=np.array([s0 + s1 * b]), chunk_step_s=np.array([s0 + s1 * b + extra]),
                             fraction=f, tp=np.array([1.0]), chunk_tokens=np.array([chunk_tokens]),
                             new_tokens=chunks * chunk_tokens)
    for q, band in ((0.5, 0.04), (0.9, 0.04), (0.99, 0.07)):
        model = gp.tpot_quantile_s(q, tpot_s=np.array([step]), step_slope_s=np.array([s1]), batch=np.array([b]),
                                   batch_cap=np.array([1e9]), attention_dies=np.array([1.0]), output_tokens=residence,
                                   draft_tokens=0, acceptance=0.0, chunk=terms)[0]
        assert model == pytest.approx(float(np.quantile(sim, q)), rel=band), (q, model / step)
    # without the chunk term the spread at p99 falls well short of the simulation's
    bare = gp.tpot_quantile_s(0.99, tpot_s=np.array([step]), step_slope_s=np.array([s1]), batch=np.array([b]),
                              batch_cap=np.array([1e9]), attention_dies=np.array([1.0]), output_tokens=residence,
                              draft_tokens=0, acceptance=0.0)[0]
    assert bare < float(np.quantile(sim, 0.99)) * (1 - 0.07)
