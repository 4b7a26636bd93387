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
        # tokens per step: 1 + number of consecutively accepted drafts (the same draws and floats as
        # summing the alive masks from zeros, with fewer array operations per step)
        if drafts:
            alive = rng.random(len(left)) < acceptance
            accepted = alive.astype(float)
            for _d in range(1, drafts):
                alive &= rng.random(len(left)) < acceptance
                accepted += alive
            left -= 1.0 + accepted
        else:
            left -= 1.0
        if len(left) and left.min() <= 0:
            done = left <= 0
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


# ----------------------------------------------------------------------------- admission: TTFT near saturation
#
# In-flight batching with a chunk budget, stepped: Poisson prompts of gamma-distributed lengths
# (mean N, CV of the MLPerf Llama-2-70B set, clipped at its max) wait FCFS for one of ``SLOTS``
# batch slots (a prompt takes its slot before its first chunk, as TensorRT-LLM's scheduler admits a
# request to the batch); admitted prompts share a budget of ``C`` prompt tokens per step, FCFS, a
# prompt split across steps as needed; a step lasts ``s0 + s1 n + extra * tokens / C`` for ``n``
# sequences decoding (the planner's load-consistent mean: chunk_fraction is token-linear); a
# prompt's last chunk step emits its first token (TTFT = that step's end - arrival), then it decodes
# ``L - 1`` steps and frees its slot.
#
# planner.goodput.goodput prices the same engine: chunk share and mean step at the full batch
# (chunk_fraction, chunked_step_s), prefill servers from request_slots, and with ``admission`` the
# wait for a slot.  Without it the goodput is the full batch's Little's-law rate, where the slots
# are saturated: the simulated p99 TTFT there is 3-8x the 1 s SLO.
#
# Band, from the simulation's seed spread and what the closed form leaves out: single 20,000-step
# runs put the p99 TTFT at the model's rate anywhere in 0.6-1.3 s (the crossing rate moves by
# ~3%; pooling four seeds halves that); the closed form prices every residence at the full batch's
# step, while the engine steps faster when slots are free (~1-2% conservative here).  So the model's
# rate is within 5%: pooled p99 TTFT meets the SLO at 0.95x and misses it at 1.05x (measured over
# five groups of four seeds: 0.49-0.67 s and 1.67-2.56 s).  Seeded: the same numbers every run.

ADM_SLOTS, ADM_L, ADM_N, ADM_CV, ADM_NMAX, ADM_C = 64, 64, 200.0, 0.771, 1021, 512
ADM_S0, ADM_S1, ADM_EXTRA = 0.020, 0.0002, 0.020


def _simulate_admission(rate_per_s: float, steps: int, seed: int, *, slots: int = ADM_SLOTS, out_tokens: int = ADM_L,
                        prompt_tokens: float = ADM_N, cv: float = ADM_CV, max_tokens: int = ADM_NMAX,
                        chunk: int = ADM_C, s0: float = ADM_S0, s1: float = ADM_S1,
                        extra: float = ADM_EXTRA) -> np.ndarray:
    """TTFT per request after the warm-up fifth (inf for requests never served)."""
    from collections import deque

    rng = np.random.default_rng(seed)
    n_arr = int(rate_per_s * steps * 0.1) + 1000
    arrivals = np.cumsum(rng.exponential(1 / rate_per_s, n_arr))
    k = 1 / cv**2
    lens = np.clip(np.round(rng.gamma(k, prompt_tokens / k, n_arr)), 1, max_tokens)
    ttft = np.full(n_arr, np.inf)
    waiting: deque[int] = deque()
    prefill: deque[list] = deque()          # [tokens left, request], admitted
    live: deque[int] = deque()              # last decode step of each decoding sequence, in order
    t, nxt, used = 0.0, 0, 0
    for j in range(1, steps + 1):
        while arrivals[nxt] <= t:
            waiting.append(nxt)
            nxt += 1
        while waiting and used < slots:
            i = waiting.popleft()
            prefill.append([lens[i], i])
            used += 1
        left, done = chunk, []
        while left > 0 and prefill:
            take = min(prefill[0][0], left)
            prefill[0][0] -= take
            left -= take
            if prefill[0][0] <= 0:
                done.append(prefill.popleft()[1])
        t += s0 + s1 * len(live) + extra * (chunk - left) / chunk
        while live and live[0] == j:
            live.popleft()
            used -= 1
        for i in done:
            ttft[i] = t - arrivals[i]
            live.append(j + out_tokens - 1)
    return ttft[nxt // 5:nxt]


class _AdmissionSlo:
    ttft_s, ttft_percentile, tpot_s, tpot_percentile = 1.0, 99.0, 1.0, None


def test_admission_wait_matches_simulated_ttft_near_saturation():
    b, c = np.array([float(ADM_SLOTS)]), np.array([float(ADM_C)])
    f = gp.chunk_fraction(b, c, groups=1.0, new_tokens=ADM_N, output_tokens=ADM_L, tokens_per_step=1.0)
    plain, chunk = ADM_S0 + ADM_S1 * b, ADM_S0 + ADM_S1 * b + ADM_EXTRA
    step = gp.chunked_step_s(plain, chunk, f)
    slots, forwards = gp.request_slots(np.array([1.0]), c, ADM_N, np.array([1.0]))
    kw = dict(input_cv=ADM_CV, output_tokens=ADM_L, service_s=forwards * chunk, servers=slots, fixed_s=np.zeros(1),
              sequences=b, tpot_s=step, fits=np.array([True]))
    little = float(gp.goodput(_AdmissionSlo, **kw).goodput_per_s[0])
    g = gp.goodput(_AdmissionSlo, admission=True, **kw)
    rate = float(g.goodput_per_s[0])
    assert little == pytest.approx(ADM_SLOTS / (ADM_L * step[0]))  # the full batch's Little's-law rate
    assert gp.BINDING[int(g.binding[0])] == "batch slots (ttft)"
    assert little > rate * 1.05, "the Little's-law rate lies past where the simulation misses the SLO"

    def p99(r: float) -> float:
        return float(np.quantile(np.concatenate([_simulate_admission(r, 20000, s) for s in (1, 2, 3, 4)]), 0.99))

    assert p99(rate * 0.95) <= _AdmissionSlo.ttft_s
    assert p99(rate * 1.05) > _AdmissionSlo.ttft_s


def test_admission_leaves_a_loose_ttft_slo_at_the_littles_law_rate():
    # Offline-style SLO (1 h): the slots run within 1e-4 of full (the M/D/c p99 wait, ~C ln(100) s / (c - a)
    # with s = 2.56 s and c = 64, reaches 1 h only at c - a ~ 2e-3 erlang), so the goodput is the full batch's rate
    class Loose(_AdmissionSlo):
        ttft_s = 3600.0

    kw = dict(input_cv=ADM_CV, output_tokens=ADM_L, service_s=np.array([0.05]), servers=np.array([2.0]),
              fixed_s=np.zeros(1), sequences=np.array([64.0]), tpot_s=np.array([0.04]), fits=np.array([True]))
    g = gp.goodput(Loose, admission=True, **kw)
    assert g.goodput_per_s[0] == pytest.approx(64.0 / (ADM_L * 0.04), rel=1e-4)
    assert g.goodput_per_s[0] < 64.0 / (ADM_L * 0.04)
    assert gp.BINDING[int(g.binding[0])] == "decode (batch x tpot)"


# ----------------------------------------------------------------------------- TTFT of long prompts
#
# The same engine with prompts that span several chunks (MLPerf Llama-3.1-405B: mean 9,429 tokens,
# CV 0.431, over 1,024-2,048-token chunk budgets): a request's own prefill then varies with its
# length (p99 ~2.3x the mean), and TTFT's percentile is that of wait + own prefill
# (planner.goodput.ttft_parts_s), not the waiting quantile plus the mean prefill.  Scaled down
# (4 chunks per mean prompt, 16 slots, 128 output tokens, a step nearly independent of the batch)
# at 30% of the planner's goodput, where the prompt's own length sets the quantiles.
#
# Band, from the seed spread and what the closed form leaves out: four groups of four seeded
# 40,000-step runs differ by 1.5% (p50), 4.5% (p90) and 7% (p99); the engine prefills whole
# chunk steps and a prompt waits for the next step boundary (half a step, ~10% of the mean
# prefill), which the continuous gamma leaves out (low at p50), and its steps run below the full
# batch the planner prices (high); at p99 the Allen-Cunneen tail of the chunk queue's wait (an
# exponential of rate 2 (c mu - lambda) / (1 + cs^2); the M/G/1 Cramer-Lundberg rate is ~25% faster
# here) adds on top.  Measured: p50 -5%, p90 -3%, p99 +11%.  So: p50 and p90 within 8%, p99 within
# 15%.  The old combination (waiting quantile + mean prefill) is 37% under the simulated p90 (at
# p99, +3%, where the wait's pessimism hides the prompt's own spread: near the slots' saturation,
# in the full-size 405B layout, it no longer does; see planner.goodput's module notes).

LONG = dict(slots=16, out_tokens=128, prompt_tokens=2048.0, cv=0.431, max_tokens=10**9, chunk=512, s0=0.020,
            s1=0.0001, extra=0.030)


def test_ttft_quantiles_of_long_prompts_match_simulation():
    from planner import queueing

    b, c, n, cv = np.array([16.0]), np.array([512.0]), LONG["prompt_tokens"], LONG["cv"]
    f = gp.chunk_fraction(b, c, groups=1.0, new_tokens=n, output_tokens=LONG["out_tokens"], tokens_per_step=1.0)
    chunk = LONG["s0"] + LONG["s1"] * b + LONG["extra"]
    step = gp.chunked_step_s(LONG["s0"] + LONG["s1"] * b, chunk, f)
    slots, forwards = gp.request_slots(np.array([1.0]), c, n, np.array([1.0]))
    own_cv = gp.prefill_cv(cv, np.array([1.0]), c, n)
    assert (slots[0], forwards[0], own_cv[0]) == (1.0, 4.0, pytest.approx(cv))  # 2,048 tokens = 4 chunks of 512
    service, residence = forwards * chunk, LONG["out_tokens"] * step
    g = gp.goodput(_AdmissionSlo, input_cv=cv, output_tokens=LONG["out_tokens"], service_s=service, servers=slots,
                   fixed_s=np.zeros(1), sequences=b, tpot_s=step, fits=np.array([True]), admission=True,
                   prefill_cv=own_cv)
    rate = 0.3 * float(g.goodput_per_s[0])
    sim = np.concatenate([_simulate_admission(rate, 40000, s, **LONG) for s in (1, 2, 3, 4)])
    for q, band in ((0.5, 0.08), (0.9, 0.08), (0.99, 0.15)):
        model = gp.ttft_parts_s(q, cv, rate, service, slots, 0.0, own_cv, sequences=b, residence_s=residence)[0][0]
        assert model == pytest.approx(float(np.quantile(sim, q)), rel=band), (q, model)
    old = max(float(queueing.mgc_wait_quantile_s(0.9, rate, service, cv**2, slots)[0]),
              float(queueing.mgc_wait_quantile_s(0.9, rate, residence, 0.0, b)[0])) + service[0]
    assert old < 0.75 * float(np.quantile(sim, 0.9)), "wait quantile + mean prefill misses the long prompts"


def test_prefill_cv_by_hand():
    # k = tp C / N prompts per forward: k >= 1 -> one forward each, CV input_cv / k (a shorter prompt still
    # takes the forward); k < 1 -> ceil(1/k) forwards, CV input_cv (1/k) / ceil(1/k)
    cv = 0.5
    out = gp.prefill_cv(cv, np.array([4.0, 1.0, 1.0]), np.array([256.0, 512.0, 512.0]), 222.0)
    np.testing.assert_allclose(out, [cv * 222 / 1024, cv * 222 / 512, cv * 222 / 512])
    out = gp.prefill_cv(cv, np.array([1.0, 2.0]), np.array([512.0, 256.0]), 2000.0)
    np.testing.assert_allclose(out, [cv * (2000 / 512) / 4] * 2)
    assert gp.prefill_cv(cv, np.array([1.0]), np.array([512.0]), 2048.0)[0] == pytest.approx(cv)
