"""Cross-check of the M/G/c closed forms against a seeded discrete-event simulation (DESIGN.md 7).

The simulator is a FIFO M/G/c queue written with numpy and heapq only: Poisson arrivals,
service times deterministic (cs2 = 0), gamma (shape 1/cs2) or lognormal with mean E[S] = 1 s.
c = 1 uses the Lindley recursion in closed form (a cumulative minimum); c > 1 keeps the
servers' next-free times in a heap (the earliest free server takes the next customer).
Each case simulates N customers and drops the first 10 % as warm-up from an empty system.

Accepted band, per case and statistic (DES vs closed form, waiting time in queue: mean, p50, p90,
p99, seconds):

    |DES - CF| <= tol * CF + 3 SE    or    |DES - CF| <= 0.05 E[S]

SE is the batch-means standard error of the DES estimate (20 batches; the simulation noise is not
the approximation's fault: at rho = 0.9 and cs2 = 2 one run of 200,000 customers scatters by ~7 %
between seeds, ~20 % at p99), and the absolute floor covers cases where the statistic itself is a
few percent of a service time.  tol is what the closed form leaves out:

- mean, 10 %: Kimura's interpolation between M/M/c (exact) and M/D/c, with Cosmetatos's M/D/c
  mean (exact at c = 1), is an approximation for other service laws and c > 1;
- quantiles, 20 %: on top of the mean, the conditional wait is taken as exponential (exact for
  M/M/c); for less variable service it is less dispersed than that.

Deterministic service with c > 1, quantiles in the body of the conditional wait (C close to
1 - p): there the exponential shape, not the mean, sets the quantile and it puts too much mass
near 0: the p90 of M/D/4 at rho = 0.5 is 26 % above the closed form (0.04 E[S], inside the
absolute floor; it was 37 % with Allen-Cunneen).

Lognormal service (cs2 = 2) at moderate load with c > 1: the closed form is pessimistic (DES
11-23 % below it at c = 4..16, rho = 0.5..0.8).  Only the safe side is gated for lognormal:
DES <= (1 + tol) CF + 3 SE.

Over a wider grid (c = 1..256, rho = 0.3..0.95, gamma service of CV 0, 0.381, 1; 3 seeds of
300,000 customers, quantiles above 0.05 E[S]), the largest optimistic errors were, for c >= 8:
p50 -11 %, p90 -12 %, p99 -15 % (Allen-Cunneen without the M/D/c correction: -14 %, -20 %, -30 %);
for c = 1..2 the exponential shape is off near the atom (M/D/1 at rho = 0.6: p50 -40 %; M/D/1 at
rho = 0.3: p99 +28 %, pessimistic).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from planner.queueing import erlang_c, mgc_wait_mean_s, mgc_wait_quantile_s

N_CUSTOMERS = 200_000
WARMUP_FRAC = 0.1
N_BATCHES = 20
QUANTILES = (0.5, 0.9, 0.99)
SERVICE_MEAN_S = 1.0
ABS_FLOOR_S = 0.05 * SERVICE_MEAN_S
MEAN_TOL, QUANTILE_TOL = 0.10, 0.20


@dataclass(frozen=True)
class Case:
    servers: int
    rho: float
    service_cv2: float
    law: str = "gamma"  # "gamma" (deterministic when cs2 = 0) or "lognormal"

    @property
    def label(self) -> str:
        return f"c={self.servers} rho={self.rho} cs2={self.service_cv2} {self.law}"


CASES = [Case(c, rho, cs2) for c in (1, 4, 16) for rho in (0.5, 0.8, 0.9) for cs2 in (0.0, 1.0, 2.0)]
# residences of CV 0.381 (MLPerf Llama-3.1-405B's output lengths) over 16-64 batch slots, near the goodput
CASES += [Case(c, rho, 0.145) for c, rho in ((16, 0.58), (16, 0.7), (64, 0.8), (64, 0.9))]
CASES += [Case(c, rho, 2.0, "lognormal") for c, rho in ((1, 0.9), (4, 0.5), (16, 0.8))]


@dataclass(frozen=True)
class Row:
    des_s: tuple[float, ...]  # mean, then the QUANTILES
    se_s: tuple[float, ...]
    cf_s: tuple[float, ...]
    erlang_c: float


def _service_times_s(rng: np.random.Generator, n: int, case: Case) -> np.ndarray:
    mean, cv2 = SERVICE_MEAN_S, case.service_cv2
    if cv2 == 0.0:
        return np.full(n, mean)
    if case.law == "gamma":
        return rng.gamma(shape=1.0 / cv2, scale=mean * cv2, size=n)
    sigma2 = np.log1p(cv2)  # lognormal: cv2 = exp(sigma^2) - 1
    return rng.lognormal(np.log(mean) - sigma2 / 2, np.sqrt(sigma2), size=n)


def _waits_lindley_s(arrivals_s: np.ndarray, services_s: np.ndarray) -> np.ndarray:
    """Single server: W_{n+1} = max(0, W_n + S_n - T_{n+1}) = X_{n+1} - min_{k <= n+1} X_k."""
    x = np.concatenate(([0.0], np.cumsum(services_s[:-1] - np.diff(arrivals_s))))
    return x - np.minimum.accumulate(x)


def _waits_heap_s(arrivals_s: np.ndarray, services_s: np.ndarray, servers: int) -> np.ndarray:
    """FIFO, any c: the earliest free server takes the next arrival."""
    free_at = [0.0] * servers
    waits = []
    for t, s in zip(arrivals_s.tolist(), services_s.tolist(), strict=True):
        start = max(t, free_at[0])
        heapq.heapreplace(free_at, start + s)
        waits.append(start - t)
    return np.array(waits)


def _batch_se(waits_s: np.ndarray, statistic) -> float:
    batches = np.array_split(waits_s, N_BATCHES)
    return float(np.std([statistic(b) for b in batches], ddof=1) / np.sqrt(N_BATCHES))


STATISTICS = [np.mean] + [lambda w, q=q: np.quantile(w, q) for q in QUANTILES]
NAMES = ["mean"] + [f"p{round(q * 100)}" for q in QUANTILES]


@cache
def simulate(case: Case) -> Row:
    rng = np.random.default_rng([case.servers, round(case.rho * 100), round(case.service_cv2 * 10),
                                 case.law == "lognormal"])
    lam = case.rho * case.servers / SERVICE_MEAN_S
    arrivals_s = np.cumsum(rng.exponential(1.0 / lam, N_CUSTOMERS))
    services_s = _service_times_s(rng, N_CUSTOMERS, case)
    if case.servers == 1:
        waits_s = _waits_lindley_s(arrivals_s, services_s)
    else:
        waits_s = _waits_heap_s(arrivals_s, services_s, case.servers)
    waits_s = waits_s[int(WARMUP_FRAC * N_CUSTOMERS):]
    args = (lam, SERVICE_MEAN_S, case.service_cv2, case.servers)
    cf = [float(mgc_wait_mean_s(*args))] + [float(mgc_wait_quantile_s(q, *args)) for q in QUANTILES]
    return Row(tuple(float(f(waits_s)) for f in STATISTICS), tuple(_batch_se(waits_s, f) for f in STATISTICS),
               tuple(cf), float(erlang_c(case.servers, lam * SERVICE_MEAN_S)))


def _table() -> str:
    lines = [f"{'case':<32} {'C':>6} " + "   ".join(f"{n + ' DES':>9} {'CF':>8} {'err':>6}" for n in NAMES)]
    for case in CASES:
        r = simulate(case)
        cells = [f"{d:9.4f} {cf:8.4f} " + (f"{(d / cf - 1) * 100:+5.0f}%" if cf > 0 else "   n/a")
                 for d, cf in zip(r.des_s, r.cf_s, strict=True)]
        lines.append(f"{case.label:<32} {r.erlang_c:6.3f} " + "   ".join(cells))
    return "\n".join(lines)


def _within(des: float, cf: float, se: float, tol: float, one_sided: bool) -> bool:
    diff = des - cf if one_sided else abs(des - cf)
    return diff <= tol * cf + 3 * se or diff <= ABS_FLOOR_S


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.label.replace(" ", "-"))
def test_closed_form_within_band(case: Case) -> None:
    r = simulate(case)
    one_sided = case.law == "lognormal"
    for i, name in enumerate(NAMES):
        tol = MEAN_TOL if i == 0 else QUANTILE_TOL
        assert _within(r.des_s[i], r.cf_s[i], r.se_s[i], tol, one_sided), (case, name, r)


def test_p99_wait_for_16_batch_slots() -> None:
    """The collocated 405B case: 16 slots at 9.3 erlangs, residences of CV 0.381 (output lengths).

    The simulated p99 is 0.134 E[S] (5.2 s for 39 s residences); Allen-Cunneen's was 0.099 E[S]
    (-26 %, fails this test), the M/D/c-corrected conditional wait gives 0.124 E[S] (-8 %).
    Band: four pooled seeded runs of 200,000 customers; eight single runs scatter by 5.7 % (SD) at
    p99, so the pooled p99 by ~2.9 %: 3 SD = 9 %, plus 10 % for what the closed form leaves out in
    the tail (an exponential conditional wait, Kimura's interpolation of the mean): 20 %.  No
    absolute floor (the floor would pass the old form).
    """
    lam, cs2, c = 0.58 * 16, 0.145, 16
    waits = []
    for seed in range(4):
        rng = np.random.default_rng([c, 58, 145, seed])
        arrivals_s = np.cumsum(rng.exponential(1.0 / lam, N_CUSTOMERS))
        services_s = rng.gamma(1.0 / cs2, cs2 * SERVICE_MEAN_S, N_CUSTOMERS)
        waits.append(_waits_heap_s(arrivals_s, services_s, c)[int(WARMUP_FRAC * N_CUSTOMERS):])
    des = float(np.quantile(np.concatenate(waits), 0.99))
    assert float(mgc_wait_quantile_s(0.99, lam, SERVICE_MEAN_S, cs2, c)) == pytest.approx(des, rel=0.20)


def test_simulators_agree_and_mm1_is_exact() -> None:
    """The heap simulator with c = 1 reproduces Lindley; M/M/1 matches rho / (mu - lambda)."""
    rng = np.random.default_rng(7)
    arrivals_s = np.cumsum(rng.exponential(1 / 0.7, 20_000))
    services_s = rng.exponential(1.0, 20_000)
    np.testing.assert_allclose(_waits_heap_s(arrivals_s, services_s, 1),
                               _waits_lindley_s(arrivals_s, services_s), rtol=1e-9, atol=1e-9)
    r = simulate(Case(1, 0.8, 1.0))
    # 4 SE, not 3: batch means of correlated waits understate the SE (one seed in 20 hit 3.0 SE).
    assert abs(r.des_s[0] - 0.8 / 0.2) <= 4 * r.se_s[0]


def test_print_table() -> None:
    """Run with ``-s`` to see DES vs closed form (waiting time in queue, E[S] = 1 s)."""
    print("\n" + _table())


if __name__ == "__main__":
    print(_table())
