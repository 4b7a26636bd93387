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


def _fill_budget(queue, budget: int) -> tuple[int, list[int]]:
    """One step's prompt tokens taken FCFS from ``queue`` ([tokens left, request] items), a prompt split as
    needed and several sharing the step: (budget left unused, requests whose last token the step holds)."""
    left, done = budget, []
    while left > 0 and queue:
        take = min(queue[0][0], left)
        queue[0][0] -= take
        left -= take
        if queue[0][0] <= 0:
            done.append(queue.popleft()[1])
    return left, done


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
        left, done = _fill_budget(prefill, chunk)
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
    service, servers, quantum, load = gp.prefill_queue(np.array([1.0]), c, ADM_N, np.array([1.0]), chunk, plain)
    kw = dict(input_cv=ADM_CV, output_tokens=ADM_L, service_s=service, servers=servers, fixed_s=quantum,
              quantum_load_s=load, sequences=b, tpot_s=step, fits=np.array([True]))
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
    # a slot is held for the own prefill (0.05 s) and ADM_L steps of 0.04 s
    assert g.goodput_per_s[0] == pytest.approx(64.0 / (ADM_L * 0.04 + 0.05), rel=1e-4)
    assert g.goodput_per_s[0] < 64.0 / (ADM_L * 0.04 + 0.05)
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
    plain = LONG["s0"] + LONG["s1"] * b
    service, slots, quantum, load = gp.prefill_queue(np.array([1.0]), c, n, np.array([1.0]), chunk, plain)
    assert (slots[0], service[0]) == (1.0, pytest.approx(4 * chunk[0]))  # 2,048 tokens = 4 chunks of 512
    residence = gp.slot_residence_s(LONG["out_tokens"], step, service)
    g = gp.goodput(_AdmissionSlo, input_cv=cv, output_tokens=LONG["out_tokens"], service_s=service, servers=slots,
                   fixed_s=quantum, quantum_load_s=load, sequences=b, tpot_s=step, fits=np.array([True]),
                   admission=True)
    rate = 0.3 * float(g.goodput_per_s[0])
    sim = np.concatenate([_simulate_admission(rate, 40000, s, **LONG) for s in (1, 2, 3, 4)])
    for q, band in ((0.5, 0.08), (0.9, 0.08), (0.99, 0.15)):
        model = gp.ttft_parts_s(q, cv, rate, service, slots, quantum, cv, sequences=b, residence_s=residence,
                                quantum_load_s=load)[0][0]
        assert model == pytest.approx(float(np.quantile(sim, q)), rel=band), (q, model)
    old = max(float(queueing.mgc_wait_quantile_s(0.9, rate, service, cv**2, slots)[0]),
              float(queueing.mgc_wait_quantile_s(0.9, rate, residence, 0.0, b)[0])) + service[0]
    assert old < 0.75 * float(np.quantile(sim, 0.9)), "wait quantile + mean prefill misses the long prompts"


# ----------------------------------------------------------------------------- prompts sharing chunk steps
#
# The engine above fills each step's budget from the admitted prompts FCFS, a prompt split as needed
# and several sharing a step: a 2,048-token prompt over 1,536-token chunks takes 1.33 steps' worth
# of budget, not two steps (planner.goodput.prefill_queue: one token stream per TP group).  The
# goodput is the rate where the simulated p99 TTFT crosses the SLO: the model's rate meets it at
# 0.95x and misses it at 1.05x (pooled over four seeds).  Band, from the seed spread and what the
# closed form leaves out: the crossing moves by ~3% between groups of four seeded 20,000-step runs;
# the wait for chunk budget after a prompt takes its slot is left out (optimistic: +5% to +12% in
# these engines when the slots bind with a few chunks per prompt, measured at 16 slots), every step
# is priced at the full batch (conservative), and the quantum's load part scales with the stream's
# mean utilization while the p99 prompts arrive in busy periods, where it is a whole forward
# (optimistic where the prompt stream binds).  Measured: +2% with 64 slots (slots bind), +6% with
# 16 slots (the stream binds).  So: within 5% in the first case, -5% / +10% in the second.  The form
# with whole steps per prompt (one slot each, ceil(1.33) = 2 steps) prices the first 32% under.
# The third case is the planner's top layout of the MLPerf Llama-3.1-405B Interactive row (8 H200,
# TP8, 32 slots, 1,024-token chunks per die: 8,192 per step, 1.15 steps per mean prompt; its steps
# from planner.evaluate: 38.3 ms without a chunk, 840 ms with one; prompts capped at 19,988; p99
# TTFT 4.5 s): there the quantum is most of a prompt's prefill, and the simulated crossing (three
# groups of four 400,000-step runs: 0.353, 0.357, 0.359 req/s) sits within 2% of the model's 0.359
# (= planner evaluate's goodput for that layout), where a whole chunk step as the quantum at every
# load would be 22% under and the step without a chunk 7-9% over.  Band 5% (the groups'
# spread and the left-out terms above).

SHARED = [dict(slots=64, out_tokens=128, prompt_tokens=2048.0, cv=0.431, max_tokens=10**9, chunk=1536, s0=0.020,
               s1=0.0001, extra=0.030),
          dict(slots=16, out_tokens=128, prompt_tokens=2048.0, cv=0.431, max_tokens=10**9, chunk=512, s0=0.020,
               s1=0.0001, extra=0.030),
          dict(slots=32, out_tokens=685, prompt_tokens=9429.0, cv=0.431, max_tokens=19988, chunk=8192, s0=0.0383,
               s1=0.0, extra=0.8014)]


def _shared_goodput(kw: dict, whole_steps: bool = False, slo_s: float = 1.0) -> float:
    class Slo(_AdmissionSlo):
        ttft_s = slo_s

    b, c, n = np.array([float(kw["slots"])]), np.array([float(kw["chunk"])]), kw["prompt_tokens"]
    f = gp.chunk_fraction(b, c, groups=1.0, new_tokens=n, output_tokens=kw["out_tokens"], tokens_per_step=1.0)
    plain = kw["s0"] + kw["s1"] * b
    chunk = plain + kw["extra"]
    step = gp.chunked_step_s(plain, chunk, f)
    service, servers, quantum, load = gp.prefill_queue(np.array([1.0]), c, n, np.array([1.0]), chunk, plain)
    if whole_steps:  # one slot per prompt, ceil(N / C) whole steps each, no quantum
        service, quantum, load = np.ceil(n / c) * chunk, np.zeros(1), np.zeros(1)
    cap_sd = (kw["max_tokens"] / n - 1) / kw["cv"] if kw["max_tokens"] < 10**9 else np.inf
    g = gp.goodput(Slo, input_cv=kw["cv"], output_tokens=kw["out_tokens"], service_s=service, input_cap_sd=cap_sd,
                   servers=servers, fixed_s=quantum, quantum_load_s=load, sequences=b, tpot_s=step,
                   fits=np.array([True]), admission=True)
    return float(g.goodput_per_s[0])


@pytest.mark.parametrize(("case", "under", "slo_s", "steps"), [(0, 0.95, 1.0, 20000), (1, 0.90, 1.0, 20000),
                                                           (2, 0.95, 4.5, 400000)],
                         ids=["1.33-chunks-64-slots", "4-chunks-16-slots", "mlperf-405b-interactive-layout"])
def test_goodput_of_prompts_sharing_chunk_steps_matches_simulation(case, under, slo_s, steps):
    kw = SHARED[case]
    rate = _shared_goodput(kw, slo_s=slo_s)

    def p99(r: float) -> float:
        return float(np.quantile(np.concatenate([_simulate_admission(r, steps, s, **kw) for s in (1, 2, 3, 4)]), 0.99))

    assert p99(rate * under) <= slo_s
    assert p99(rate * 1.05) > slo_s
    if case == 0:
        assert _shared_goodput(kw, whole_steps=True) < 0.75 * rate, "whole steps per prompt idle the budget's rest"


# ----------------------------------------------------------------------------- a prefill pool's token stream
#
# A prefill pool (pd, transformerless) as an engine: Poisson prompts (gamma lengths, clipped at the
# dataset's longest) queue FCFS; each forward takes up to ``B`` prompt tokens, a prompt split across
# forwards and several sharing one; an idle pool starts a forward when a prompt arrives; a forward of
# ``x`` tokens lasts ``t0 + (x / B)(T - t0)``; a prompt's TTFT (its prefill part) ends with the forward
# holding its last token.  planner.goodput.prefill_queue prices it as one token stream of service
# ``N / B`` forwards, the quantum 0 idle and a forward ``T`` at full utilization.  The goodput is where
# the simulated p99 crosses the SLO.  Band, from two seeded runs of 40,000 prompts (the crossing
# moves ~2% between seed pairs) and what the closed form leaves out: with ~9 prompts per forward the
# model is within 1% (measured +0.3%): within 5%; with a prompt of 1.15 forwards (MLPerf 405B-like)
# the quantum's whole forward at full utilization is conservative (measured -12%): the model's rate
# meets the SLO at 0.95x and misses it only past 1.20x.  The form with whole forwards per prompt
# (ceil(1 / 0.87) = 2 forwards each) is 78% under there.

POOL_CASES = [  # N, cv, longest prompt, B, T, t0, SLO (s), over
    (222.0, 0.771, 1021, 2048, 0.2, 0.01, 0.40, 1.05),
    (9429.0, 0.431, 19988, 8192, 0.7, 0.02, 4.5, 1.20),
]


def _simulate_prefill_pool(rate_per_s: float, prompts: int, seed: int, n: float, cv: float, longest: int, budget: int,
                           forward_s: float, t0_s: float) -> np.ndarray:
    """Prefill part of TTFT per prompt after the warm-up fifth."""
    from collections import deque

    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate_per_s, prompts))
    k = 1 / cv**2
    lens = np.clip(np.round(rng.gamma(k, n / k, prompts)), 1, longest)
    ttft = np.empty(prompts)
    waiting: deque[list] = deque()
    t, nxt = 0.0, 0
    while nxt < prompts or waiting:
        if not waiting:
            t = max(t, arrivals[nxt])
        while nxt < prompts and arrivals[nxt] <= t:
            waiting.append([lens[nxt], nxt])
            nxt += 1
        left, done = _fill_budget(waiting, budget)
        t += t0_s + (budget - left) / budget * (forward_s - t0_s)
        for i in done:
            ttft[i] = t - arrivals[i]
    return ttft[prompts // 5:]


@pytest.mark.parametrize("case", range(len(POOL_CASES)), ids=["9-prompts-per-forward", "1.15-forwards-per-prompt"])
def test_prefill_pool_goodput_matches_simulation(case):
    n, cv, longest, budget, forward, t0, slo_s, over = POOL_CASES[case]

    class Slo(_AdmissionSlo):
        ttft_s = slo_s

    service, servers, quantum, load = gp.prefill_queue(np.array([1.0]), np.array([float(budget)]), n, np.array([1.0]),
                                                       np.array([forward]))
    assert quantum[0] == 0.0 and load[0] == forward  # a prefill pool starts a forward at once
    rate = float(gp.ttft_limited_rate_per_s(Slo, cv, service, servers, quantum, None, (longest / n - 1) / cv, load)[0])

    def p99(r: float) -> float:
        runs = [_simulate_prefill_pool(r, 40000, s, n, cv, longest, budget, forward, t0) for s in (1, 2)]
        return float(np.quantile(np.concatenate(runs), 0.99))

    assert p99(rate * 0.95) <= slo_s
    assert p99(rate * over) > slo_s
