"""Cross-check of the M/G/c closed forms against a seeded discrete-event simulation (DESIGN.md 7).

The simulator is a FIFO M/G/c queue written with numpy and heapq only: Poisson arrivals,
service times deterministic (cs2 = 0), gamma (shape 1/cs2) or lognormal with mean E[S] = 1 s.
c = 1 uses the Lindley recursion in closed form (a cumulative minimum); c > 1 keeps the
servers' next-free times in a heap (the earliest free server takes the next customer).
Each case simulates N customers and drops the first 10 % as warm-up from an empty system.

Accepted band, per case (DES vs closed form, waiting time in queue, seconds):

    |DES - CF| <= tol * CF + 3 SE    or    |DES - CF| <= 0.05 E[S]

with tol = 15 % for the mean and 20 % for the p90, SE the batch-means standard error of the
DES estimate (20 batches; the simulation noise is not the approximation's fault: at rho = 0.9
and cs2 = 2 one run of 200,000 customers scatters by ~7 % between seeds), and the absolute
floor for cases where the wait itself is a few percent of a service time.

Known deviations, stated rather than hidden (measured over 10 seeds while writing the test):

- Deterministic service with c > 1 (M/D/c) at moderate load: Allen-Cunneen uses the M/M/c
  probability of waiting C(c, a) for every service law, and the true M/D/c delay is larger
  there (Cosmetatos 1976 corrects the mean for this).  Measured: mean +14 % and p90 +37 %
  (DES above CF) at c = 4, rho = 0.5; mean +11 %, p90 +19 % at c = 16, rho = 0.8; the bias
  fades by rho = 0.9.  These cases get tol = 20 % (mean) and 45 % (p90): the closed form is
  optimistic by that much and a caller that needs better must add the correction.
- Lognormal service (cs2 = 2) at moderate load with c > 1: the closed form is pessimistic
  (DES 18-34 % below it at c = 4..16, rho = 0.5..0.8).  Only the safe side is gated for
  lognormal: DES <= (1 + tol) CF + 3 SE.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from planner.queueing import mgc_wait_mean_s, mgc_wait_quantile_s

N_CUSTOMERS = 200_000
WARMUP_FRAC = 0.1
N_BATCHES = 20
P = 0.9
SERVICE_MEAN_S = 1.0
ABS_FLOOR_S = 0.05 * SERVICE_MEAN_S
MEAN_TOL, P90_TOL = 0.15, 0.20
MDC_MEAN_TOL, MDC_P90_TOL = 0.20, 0.45  # M/D/c, c > 1: Allen-Cunneen is optimistic (see docstring)


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
CASES += [Case(c, rho, 2.0, "lognormal") for c, rho in ((1, 0.9), (4, 0.5), (16, 0.8))]


@dataclass(frozen=True)
class Row:
    des_mean_s: float
    des_p90_s: float
    se_mean_s: float
    se_p90_s: float
    cf_mean_s: float
    cf_p90_s: float


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


def _p90(waits_s: np.ndarray) -> float:
    return float(np.quantile(waits_s, P))


def _batch_se(waits_s: np.ndarray, statistic) -> float:
    batches = np.array_split(waits_s, N_BATCHES)
    return float(np.std([statistic(b) for b in batches], ddof=1) / np.sqrt(N_BATCHES))


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
    return Row(float(waits_s.mean()), _p90(waits_s), _batch_se(waits_s, np.mean), _batch_se(waits_s, _p90),
               float(mgc_wait_mean_s(*args)), float(mgc_wait_quantile_s(P, *args)))


def _table() -> str:
    lines = [f"{'case':<32} {'mean DES':>9} {'CF':>8} {'err':>6}   {'p90 DES':>9} {'CF':>8} {'err':>6}"]
    for case in CASES:
        r = simulate(case)
        errs = [f"{(d / cf - 1) * 100:+5.0f}%" if cf > 0 else "   n/a" for d, cf in
                ((r.des_mean_s, r.cf_mean_s), (r.des_p90_s, r.cf_p90_s))]
        lines.append(f"{case.label:<32} {r.des_mean_s:9.4f} {r.cf_mean_s:8.4f} {errs[0]}   "
                     f"{r.des_p90_s:9.4f} {r.cf_p90_s:8.4f} {errs[1]}")
    return "\n".join(lines)


def _within(des: float, cf: float, se: float, tol: float, one_sided: bool) -> bool:
    diff = des - cf if one_sided else abs(des - cf)
    return diff <= tol * cf + 3 * se or diff <= ABS_FLOOR_S


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.label.replace(" ", "-"))
def test_closed_form_within_band(case: Case) -> None:
    r = simulate(case)
    mdc = case.service_cv2 == 0.0 and case.servers > 1
    mean_tol, p90_tol = (MDC_MEAN_TOL, MDC_P90_TOL) if mdc else (MEAN_TOL, P90_TOL)
    one_sided = case.law == "lognormal"
    assert _within(r.des_mean_s, r.cf_mean_s, r.se_mean_s, mean_tol, one_sided), (case, r)
    assert _within(r.des_p90_s, r.cf_p90_s, r.se_p90_s, p90_tol, one_sided), (case, r)


def test_simulators_agree_and_mm1_is_exact() -> None:
    """The heap simulator with c = 1 reproduces Lindley; M/M/1 matches rho / (mu - lambda)."""
    rng = np.random.default_rng(7)
    arrivals_s = np.cumsum(rng.exponential(1 / 0.7, 20_000))
    services_s = rng.exponential(1.0, 20_000)
    np.testing.assert_allclose(_waits_heap_s(arrivals_s, services_s, 1),
                               _waits_lindley_s(arrivals_s, services_s), rtol=1e-9, atol=1e-9)
    r = simulate(Case(1, 0.8, 1.0))
    # 4 SE, not 3: batch means of correlated waits understate the SE (one seed in 20 hit 3.0 SE).
    assert abs(r.des_mean_s - 0.8 / 0.2) <= 4 * r.se_mean_s


def test_print_table() -> None:
    """Run with ``-s`` to see DES vs closed form (waiting time in queue, E[S] = 1 s)."""
    print("\n" + _table())


if __name__ == "__main__":
    print(_table())
