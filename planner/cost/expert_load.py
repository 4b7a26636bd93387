"""Expert load: how much more than the mean the busiest expert die of an EP group receives.

The model (DESIGN.md section 3; parameters in ``measurements/expert_load.toml``, fitted on the
``A*`` rows of ``measurements/calibration.json`` by :mod:`planner.ops.expert_load_fit`), per MoE
layer ``l`` of ``L``, for an EP group of ``n`` dies holding ``E`` routed experts and ``R``
redundant replicas:

1. **Skew.** Expert popularity is log-normal within a layer, its hottest experts capped at the
   ``1 / top_k`` of the copies a token's distinct picks allow.  Layers differ: a fraction ``h`` of
   them are hot (``sigma_hot``), the rest mild (``sigma_mild``).  The shares ``p`` of the ``E``
   experts are the distribution's quantiles; a measured per-layer count matrix replaces them
   (:func:`layer_shares`).
2. **Placement** (:func:`placement`).  ``eplb`` / ``measured``: replicas go to the hottest experts
   until no replica carries more than ``theta``, with ``sum_i max(1, p_i / theta) = E + R`` (the
   continuous relaxation of greedy replication, so the result is smooth and non-increasing in R);
   the die holding the largest piece carries at least ``n theta`` times the mean, so the floor is
   ``F = max(1, n theta)``.  ``none``: the static contiguous placement (experts ``i`` on die
   ``i // (E / n)``): with the fitted skew the popularity is unrelated to the expert index, so a
   die's load is a sum of ``S = E / n`` random shares, approximated as log-normal with the sum's
   mean and variance (Fenton-Wilkinson; against a Monte Carlo of random placements it reads 1-7%
   low on mild layers and 10-35% low on hot layers from EP8 to EP256, and the skew is fitted
   through it at EP32 and EP256: A01, A02); with a measured matrix it is exact.
3. **Mismatch** (``eplb`` only).  A live step's popularity differs from the statistics the
   placement was computed on by a log-normal factor per expert with squared CV
   ``c0^2 + CV_l^2 * T / (T + tau)``: an in-distribution mismatch ``c0`` (calibrated) that grows
   with the rebalance period ``T`` toward the layer's own popularity CV (the placement then knows
   nothing: as good as random).  A die's load sums its pieces ``w``, so its squared CV is that
   times ``n * sum(w^2)`` (one over the effective number of pieces per die).
4. **Placement residual** ``D_l = 1 + hypot(F - 1, exp(z_n s - s^2 / 2) - 1)``, ``s^2 = ln(1 + V_l)``:
   the die holding the largest piece (``F``) and the expected largest of ``n`` log-normal die
   loads of mean 1 and squared CV ``V_l`` (``z_n`` is the expected largest of ``n`` standard
   normals), their excesses added as independent terms.
5. **Per-step sampling noise.**  A die's token copies in one step are Poisson with mean ``c``:
   ``eta(n, c) = E[max of n Poisson(c)] / c - 1`` (exact sum of the CDF up to ``c = 400``, then the
   Cornish-Fisher normal limit ``(z + (z^2 - 1) / (6 sqrt(c))) / sqrt(c)``).

The busiest die of layer ``l`` carries ``M_l(c) = 1 + sqrt((D_l - 1)^2 + eta^2)`` times the mean:
the two excesses add as independent normal terms do.  ``perfect`` gives exactly 1.  A layer
class is charged the mean of ``M_l`` over its layers (the time of a layer is close to linear in
the busiest die's copies); reports also show the hottest layer.  ``M_l`` is tabulated per
``(n, R)`` on a grid of ``c`` (16 points per decade, linear in ``log c``) so that a million
candidates cost a gather; against the exact value the interpolation is off by at most 0.3% of the
noise excess for ``n >= 8`` and 1.5% for ``n = 2`` (tests/unit/test_expert_load.py).

Where the cost lands (planner/cost/moe.py, planner/serving/layers.py): the busiest expert die
sets the expert time, and every other die waits for it at the combine (``combine_wait``, its own
breakdown row); the slowest attention (DP) rank, from sequences of different lengths and counts
(:func:`dp_excess`), makes every rank wait at the dispatch (``dispatch_wait``).  Both are charged
on the compute side of the layer: the slowest die's own work is on the critical path.

Validity: EP groups of 1 to a few thousand dies, any ``R >= 0``; the skew is DeepSeek-R1 traffic
(machine translation), applied to every MoE model unless a measured matrix is given; the drift
with the rebalance period is fitted at 60 s (A13) and extrapolated by its form elsewhere.

References
----------
TensorRT-LLM tech blog 4, "Scaling Expert Parallelism in TensorRT-LLM" (EP32/36 rank and slot
imbalance with and without EPLB: rows A01-A06); arXiv:2508.02520v6 (xDeepServe, Fig. 11 and the
Figure 20 table: A07, A08, A11-A13); DeepSeek-V3 report sec. 3.4 (redundant experts, A16).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import ndtri, pdtr

from planner.inputs.expert_load import ExpertLoad, LoadParams, Policy

Array = np.ndarray

# Grid of mean copies per die per step the busiest-die ratio is tabulated on (log10 c).
_LOG10_C_MIN, _LOG10_C_MAX, _PER_DECADE = -2.0, 9.0, 16
C_GRID = 10.0 ** np.linspace(_LOG10_C_MIN, _LOG10_C_MAX, int((_LOG10_C_MAX - _LOG10_C_MIN) * _PER_DECADE) + 1)
# Above this mean the Poisson maximum uses its Cornish-Fisher normal limit.
_EXACT_POISSON_MAX_C = 400.0


def expected_max_normal(n: Array) -> Array:
    """Expected largest of ``n`` i.i.d. standard normals (Blom's approximation), 0 for n <= 1."""
    n = np.asarray(n, dtype=float)
    if n.size >= _TABLE_MIN_SIZE:  # a search's rank counts: whole numbers, few distinct
        ints = n.astype(np.int64)
        if np.array_equal(ints, n) and ints.min() >= 0 and ints.max() < _TABLE_MAX_RANKS:
            return _blom(np.arange(ints.max() + 1, dtype=float))[ints]  # each value's own floats, tabulated
    return _blom(n)


def _blom(n: Array) -> Array:
    m = np.maximum(n, 1.0)
    return np.where(n > 1, ndtri((m - 0.375) / (m + 0.25)), 0.0)


# expected_max_normal tabulates whole rank counts 0..max for arrays this large (ndtri is ~25 ns an element)
_TABLE_MIN_SIZE, _TABLE_MAX_RANKS = 4096, 1 << 16


# --------------------------------------------------------------------------- skew


def layer_skew(params: LoadParams) -> tuple[Array, Array]:
    """(popularity sigma, weight) of the fitted layer kinds: mild and hot MoE layers, (2,) each."""
    h = params.skew_hot_layer_frac
    return np.array([params.skew_mild_sigma, params.skew_hot_sigma]), np.array([1.0 - h, h])


def lognormal_shares(sigmas: Array, num_experts: int, top_k: int = 1) -> Array:
    """Expert shares per layer: log-normal quantiles capped at ``1 / top_k``, hottest first, (L, E).

    Notes
    -----
    Quantile ``i`` of ``E`` has weight ``exp(sigma z_i)``, ``z_i = Phi^-1((E - i - 1/2) / E)``.  A
    token picks ``top_k`` distinct experts, so no expert receives more than ``1 / top_k`` of the
    copies: shares are ``min(lambda w_i, 1 / k)`` with ``lambda`` set so they sum to 1 (with ``j``
    experts at the cap, ``lambda = (1 - j / k) / sum_(i >= j) w_i``).
    """
    z = ndtri((np.arange(num_experts, 0, -1) - 0.5) / num_experts)
    w = np.exp(np.outer(sigmas, z - z[0]))
    cap = 1.0 / top_k
    L, E = w.shape
    j = np.arange(E)
    below = np.cumsum(w[:, ::-1], axis=1)[:, ::-1]             # sum_(i >= j) w_i
    lam = (1.0 - j * cap) / below                               # j experts at the cap
    prev = np.concatenate([np.full((L, 1), np.inf), w[:, :-1]], axis=1)
    ok = (lam * w < cap * (1 + 1e-12)) & (lam * prev >= cap * (1 - 1e-12)) & (lam > 0)
    idx = np.argmax(ok, axis=1)
    return np.minimum(lam[np.arange(L), idx][:, None] * w, cap)


def layer_shares(load: ExpertLoad, *, experts: int, top_k: int,
                 rows: tuple[int, ...] | None = None) -> tuple[Array, Array]:
    """(shares of each expert, weight) per layer: the measured matrix's rows (``rows`` of them, or
    all), each weighing the same, or the fitted mild and hot layer kinds; (P, E) and (P,)."""
    if load.counts is not None:
        c = np.asarray(load.counts, dtype=float)
        if rows is not None:
            c = c[list(rows)]
        return c / c.sum(axis=1, keepdims=True), np.full(len(c), 1.0 / len(c))
    sigmas, weights = layer_skew(load.params)
    return lognormal_shares(sigmas, experts, top_k), weights


def popularity_cv2(shares: Array) -> Array:
    """Squared coefficient of variation of the expert shares of each layer, (L,)."""
    E = shares.shape[1]
    return E * np.square(shares).sum(axis=1) - 1.0


# --------------------------------------------------------------------------- placement


def replica_cap(shares: Array, redundant: float) -> tuple[Array, Array]:
    """Largest piece ``theta`` after replication and the sum of squared pieces, per layer, (L,) each.

    Notes
    -----
    Solves ``sum_i max(1, p_i / theta) = E + R`` exactly: with the ``k`` hottest experts split,
    ``theta_k = P_k / (R + k)`` (``P_k`` the top-k share), and the consistent ``k`` has
    ``p_(k) >= theta_k >= p_(k+1)``.  ``R = 0`` gives ``theta = max p``.  The pieces are
    ``theta`` (``p_i / theta`` of them per split expert) and ``p_i`` (the rest), so
    ``sum w^2 = theta P_k + sum_(i > k) p_i^2``.
    """
    p = -np.sort(-shares, axis=1)
    L, E = p.shape
    if redundant <= 0:
        return p[:, 0], np.square(p).sum(axis=1)
    k = np.arange(1, E + 1)
    top = np.cumsum(p, axis=1)
    theta_k = top / (redundant + k)
    nxt = np.concatenate([p[:, 1:], np.zeros((L, 1))], axis=1)
    idx = np.argmax((p >= theta_k) & (theta_k >= nxt), axis=1)
    rows = np.arange(L)
    theta = theta_k[rows, idx]
    rest = np.square(p).sum(axis=1) - np.cumsum(np.square(p), axis=1)[rows, idx]
    return theta, theta * top[rows, idx] + rest


def static_die_shares(shares: Array, ep: int) -> Array:
    """Load share of each die under the static contiguous placement (experts in index order; with more
    dies than experts the last dies hold none), (L, ep)."""
    sizes = np.array([len(a) for a in np.array_split(np.arange(shares.shape[1]), ep)])
    ends = np.cumsum(sizes)
    total = np.concatenate([np.zeros((shares.shape[0], 1)), np.cumsum(shares, axis=1)], axis=1)
    return total[:, ends] - total[:, ends - sizes]


def placement(load: ExpertLoad, shares: Array, ep: int, redundant: float) -> tuple[Array, Array]:
    """(floor ``F``, squared die-load CV ``V``) per layer under the load's policy, (L,) each."""
    L, E = shares.shape
    ones, zeros = np.ones(L), np.zeros(L)
    if load.policy == Policy.PERFECT or ep <= 1:
        return ones, zeros
    if load.policy == Policy.NONE:
        if load.counts is not None:
            return np.maximum(1.0, ep * static_die_shares(shares, ep).max(axis=1)), zeros
        S = E / ep
        return ones, popularity_cv2(shares) / S * (E - S) / max(E - 1, 1)
    theta, sum_w2 = replica_cap(shares, redundant)
    floor = np.maximum(1.0, ep * theta)
    if load.policy == Policy.MEASURED:
        return floor, zeros
    p, T = load.params, load.rebalance_period_s
    drift = T / (T + p.drift_time_constant_s) if T > 0 else 0.0
    mismatch_cv2 = p.mismatch_cv**2 + popularity_cv2(shares) * drift
    return floor, mismatch_cv2 * ep * sum_w2


def placement_residual(load: ExpertLoad, shares: Array, ep: int, redundant: float) -> Array:
    """Expected busiest die / mean with no sampling noise (infinitely many tokens), per layer, (L,)."""
    floor, v = placement(load, shares, ep, redundant)
    s2 = np.log1p(v)
    z = float(expected_max_normal(ep))
    spread = np.maximum(np.exp(z * np.sqrt(s2) - s2 / 2.0), 1.0)
    return 1.0 + np.hypot(floor - 1.0, spread - 1.0)


# --------------------------------------------------------------------------- sampling noise


def poisson_max_excess(n: int, c: Array) -> Array:
    """``E[max of n i.i.d. Poisson(c)] / c - 1``, (len(c),).

    Exact (``sum_k 1 - F(k)^n`` over a window of -10..+10 standard deviations) up to ``c = 400``;
    above, the Cornish-Fisher normal limit ``(z + (z^2 - 1) / (6 sqrt(c))) / sqrt(c)`` (its error
    there is below 1% of the excess).
    """
    c = np.atleast_1d(np.asarray(c, dtype=float))
    if n <= 1:
        return np.zeros_like(c)
    z = float(expected_max_normal(n))
    out = (z + (z * z - 1.0) / (6.0 * np.sqrt(c))) / np.sqrt(c)
    small = c <= _EXACT_POISSON_MAX_C
    if small.any():
        cs = c[small]
        lo, log_cdf = _poisson_window(cs.tobytes())
        tail = -np.expm1(n * log_cdf)
        out[small] = (lo + tail.sum(axis=1)) / cs - 1.0
    return out


@lru_cache(maxsize=64)
def _poisson_window(cs_bytes: bytes) -> tuple[Array, Array]:
    """(window start ``lo``, ``log F(k)`` of Poisson(c) on ``lo .. lo + width``) of :func:`poisson_max_excess`,
    (C,) and (C, width): independent of ``n``, so computed once per ``c`` array (cached by its bytes;
    the search asks for every die count on :data:`C_GRID`, 47 counts in a default plan)."""
    cs = np.frombuffer(cs_bytes, dtype=float)
    lo = np.maximum(0.0, np.floor(cs - 10.0 * np.sqrt(cs) - 10.0))
    width = int(np.ceil((20.0 * np.sqrt(cs) + 40.0).max()))
    k = lo[:, None] + np.arange(width)[None, :]
    log_cdf = np.log(np.maximum(pdtr(k, cs[:, None]), 1e-300))
    lo.flags.writeable = log_cdf.flags.writeable = False
    return lo, log_cdf


@lru_cache(maxsize=1024)
def noise_excess(n: int) -> Array:
    """:func:`poisson_max_excess` of ``n`` dies on :data:`C_GRID`, (G,) (cached per ``n``)."""
    return poisson_max_excess(n, C_GRID)


def layer_ratios(load: ExpertLoad, *, experts: int, top_k: int, ep: int, redundant: float,
                 copies_per_die: float, rows: tuple[int, ...] | None = None) -> tuple[Array, Array]:
    """(busiest die / mean, weight) of every layer at one operating point, exact in ``c``, (P,) each."""
    shares, weights = layer_shares(load, experts=experts, top_k=top_k, rows=rows)
    if load.policy == Policy.PERFECT:
        return np.ones(len(weights)), weights
    excess = placement_residual(load, shares, ep, redundant) - 1.0
    return 1.0 + np.hypot(excess, poisson_max_excess(ep, np.array([copies_per_die]))[0]), weights


# --------------------------------------------------------------------------- tables and the vector entry


def _table(load: ExpertLoad, rows: tuple[int, ...] | None, experts: int, top_k: int, ep: int,
           redundant: float) -> tuple[Array, Array]:
    """(weighted mean over the layers, hottest layer) of the busiest-die ratio on :data:`C_GRID`, (G,) each,
    cached on ``load``."""
    rows = rows if load.counts is not None else None
    key = (rows, experts, top_k, ep, redundant)
    hit = load._tables.get(key)
    if hit is None:
        shares, weights = _layer_shares_cached(load, rows, experts, top_k)
        excess = placement_residual(load, shares, ep, redundant) - 1.0
        ratios = 1.0 + np.hypot(excess[:, None], noise_excess(ep)[None, :])
        hit = load._tables[key] = (weights @ ratios, ratios[weights > 0].max(axis=0))
    return hit


def _layer_shares_cached(load: ExpertLoad, rows: tuple[int, ...] | None, experts: int, top_k: int
                         ) -> tuple[Array, Array]:
    """:func:`layer_shares`, cached on ``load`` (read-only): the same for every (EP, R) pair of a table
    (a default plan builds ~200 tables from one)."""
    key = ("shares", rows, experts, top_k)
    hit = load._tables.get(key)
    if hit is None:
        hit = layer_shares(load, experts=experts, top_k=top_k, rows=rows)
        for a in hit:
            a.flags.writeable = False
        load._tables[key] = hit
    return hit


def _distinct_pairs(ep: Array, redundant: Array, shape: tuple[int, ...]) -> tuple[Array, Array]:
    """Distinct (ep, R) integer pairs and each candidate's index into them, in O(N) (dense key table)."""
    e = np.broadcast_to(np.rint(ep), shape).astype(np.int64).reshape(-1)
    r = np.broadcast_to(np.rint(np.asarray(redundant, dtype=float)), shape).astype(np.int64).reshape(-1)
    width = int(r.max(initial=0)) + 1
    key = e * width + r
    present = np.zeros(int(key.max(initial=0)) + 1, dtype=bool)
    present[key] = True
    uniq = np.flatnonzero(present)
    position = np.cumsum(present) - 1
    return np.stack([uniq // width, uniq % width], axis=1), position[key]


def busiest_die_ratios(load: ExpertLoad, *, experts: int, top_k: int, ep: Array, redundant: Array,
                       copies_per_die: Array, rows: tuple[int, ...] | None = None) -> tuple[Array, Array]:
    """Busiest expert die's token copies / the mean: (averaged over the MoE layers, the hottest layer), (N,) each.

    Parameters
    ----------
    load : the pool's policy, parameters and skew
    experts, top_k : routed experts of the model and experts per token
    ep : dies of the EP group (expert dies in transformerless mode), (N,)
    redundant : redundant expert replicas over the group, (N,)
    copies_per_die : mean token copies one die receives per micro-batch, (N,)
    rows : the MoE layers (0-based among MoE layers) of one layer class; None = every MoE layer
        (with the fitted skew every class sees the same mix of mild and hot layers)

    Notes
    -----
    Exactly 1 under ``perfect``; non-increasing in ``R``; tends to the placement residual
    (:func:`placement_residual`) as ``copies_per_die`` grows.  Linear interpolation in ``log c``
    between the :data:`C_GRID` points (16 per decade).
    """
    ep = np.asarray(ep, dtype=float)
    shape = np.broadcast_shapes(ep.shape, np.shape(redundant), np.shape(copies_per_die))
    if load.policy == Policy.PERFECT:
        return np.ones(shape), np.ones(shape)
    pairs, g = _distinct_pairs(ep, redundant, shape)
    key = ("stack", rows if load.counts is not None else None, experts, top_k, pairs.tobytes())
    stacked = load._tables.get(key)
    if stacked is None:
        tables = [_table(load, rows, experts, top_k, int(e), float(r)) for e, r in pairs]
        stacked = load._tables[key] = (np.stack([t[0] for t in tables]), np.stack([t[1] for t in tables]))
    c = np.broadcast_to(np.asarray(copies_per_die, dtype=float), shape).reshape(-1)
    u = np.clip((np.log10(np.maximum(c, 1e-300)) - _LOG10_C_MIN) * _PER_DECADE, 0.0, len(C_GRID) - 1.0)
    i = np.minimum(np.floor(u).astype(np.int64), len(C_GRID) - 2)
    f = u - i

    def lerp(t: Array) -> Array:
        return (t[g, i] * (1.0 - f) + t[g, i + 1] * f).reshape(shape)

    return lerp(stacked[0]), lerp(stacked[1])


def busiest_die_ratio(load: ExpertLoad, *, experts: int, top_k: int, ep: Array, redundant: Array,
                      copies_per_die: Array, rows: tuple[int, ...] | None = None,
                      hottest: bool = False) -> Array:
    """:func:`busiest_die_ratios`, the mean over layers (or the hottest layer), (N,)."""
    mean, hot = busiest_die_ratios(load, experts=experts, top_k=top_k, ep=ep, redundant=redundant,
                                   copies_per_die=copies_per_die, rows=rows)
    return hot if hottest else mean


# --------------------------------------------------------------------------- DP (attention) imbalance


def dp_excess(*, ranks: Array, seqs_per_die: Array, work_cv: float, count_dispersion: float) -> Array:
    """Slowest DP rank's context-dependent attention work / the mean, minus 1, (N,).

    Notes
    -----
    A rank holds ``b`` sequences whose count has variance ``delta * b`` (``delta`` =
    ``count_dispersion``: 1 for ranks filled at random, 0 for equal counts) and whose
    per-sequence work has coefficient of variation ``work_cv`` (sequence lengths), so its work
    has ``CV^2 = (work_cv^2 + delta) / b``; the slowest of ``n`` ranks is ``z_n CV`` above the
    mean (normal limit, many sequences per rank).  Every other rank waits that long at the
    dispatch (xDeepServe: dispatch absorbs the attention imbalance across DP ranks).
    """
    b = np.maximum(np.asarray(seqs_per_die, dtype=float), 1e-9)
    return expected_max_normal(ranks) * np.sqrt((work_cv**2 + count_dispersion) / b)


def decode_context_cv(input_tokens: float, input_cv: float, output_tokens: float, output_cv: float) -> float:
    """CV of a decoding sequence's context ``I + U O`` (``U`` uniform position in its output).

    ``Var = (I cv_I)^2 + O^2 (1 + cv_O^2) / 3 - O^2 / 4``, mean ``I + O / 2``.
    """
    I, O = input_tokens, output_tokens
    var = (I * input_cv) ** 2 + O * O * (1.0 + output_cv**2) / 3.0 - O * O / 4.0
    return float(np.sqrt(max(var, 0.0)) / (I + O / 2.0))


def prefill_work_cv(input_cv: float) -> float:
    """CV of a prompt's causal attention work ``N^2`` for log-normal lengths: ``sqrt((1 + cv^2)^4 - 1)``."""
    return float(np.sqrt((1.0 + input_cv**2) ** 4 - 1.0))
