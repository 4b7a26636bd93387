"""Calibration of the expert-load model (planner/cost/expert_load.py) on the ``A*`` rows.

The rows live in ``measurements/calibration.json`` next to the kernel microbenchmarks, with the
same fields (``predict``, ``measured_si``, ``fits`` / ``check_only`` / ``gap`` / ``bound``,
``tolerance``, ``band_reason``); their ``fits`` name ``{"expert_load": [parameter paths]}``, the
dotted paths of ``measurements/expert_load.toml``.  :func:`predict` evaluates a row with given
parameters (default: the shipped ones); :func:`fit` refits every parameter some row fits, on those
rows only, minimising ``log(predicted / measured)``.  Nothing else is fitted on them, and no other
row is used: the system-level rows (``measurements/validation.json``, e.g. the H100
default-vs-perfect prefill gap) are checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from planner.cost.expert_load import layer_ratios, layer_shares, popularity_cv2
from planner.inputs.expert_load import ExpertLoad, LoadParams, Policy, load_params

Row = Mapping[str, Any]
TARGET = "expert_load"  # the key of a row's ``fits`` that names expert-load parameters

# Parameter path in measurements/expert_load.toml -> LoadParams field, with bounds and a start
# value that depend only on the parameter (never on the stored value), so a refit reproduces it.
PARAMETERS: dict[str, tuple[str, tuple[float, float], float]] = {
    "skew.mild_sigma": ("skew_mild_sigma", (0.05, 5.0), 0.5),
    "skew.hot_sigma": ("skew_hot_sigma", (0.05, 5.0), 1.5),
    "skew.hot_layer_frac": ("skew_hot_layer_frac", (0.01, 0.99), 0.3),
    "mismatch.cv": ("mismatch_cv", (0.0, 1.0), 0.1),
    "drift.time_constant_s": ("drift_time_constant_s", (1.0, 1e9), 86400.0),
    "dp_imbalance.count_dispersion": ("dp_count_dispersion", (0.0, 10.0), 1.0),
}


def with_values(params: LoadParams, values: Mapping[str, float]) -> LoadParams:
    """``params`` with the parameters named by their file paths replaced."""
    return replace(params, **{PARAMETERS[path][0]: float(v) for path, v in values.items()})


# --------------------------------------------------------------------------- predictors


def _load(p: Row, params: LoadParams) -> ExpertLoad:
    return ExpertLoad(policy=Policy(p["policy"]), params=params,
                      rebalance_period_s=float(p.get("rebalance_period_s", 0.0)))


def _ratio(p: Row, params: LoadParams) -> float:
    """Busiest die / mean of an EP group, the layers' weighted mean, median or hottest."""
    ratios, weights = layer_ratios(_load(p, params), experts=p["experts"], top_k=p["top_k"], ep=p["ep"],
                                   redundant=p["redundant"], copies_per_die=p["copies_per_die"])
    statistic = p.get("statistic", "mean")
    if statistic == "mean":
        return float(weights @ ratios)
    if statistic == "hottest":
        return float(ratios[weights > 0].max())
    order = np.argsort(ratios)
    cumulative = np.cumsum(weights[order])
    return float(ratios[order][np.searchsorted(cumulative, 0.5)])


def _hot_layer(p: Row, params: LoadParams) -> float:
    """Of the hottest layer: its hottest expert / the mean, or the fraction of experts above the mean."""
    shares, weights = layer_shares(_load(p, params), experts=p["experts"], top_k=p["top_k"])
    hot = shares[int(np.argmax(np.where(weights > 0, shares.max(axis=1), -1.0)))]
    if p["statistic"] == "hottest_expert_ratio":
        return float(hot.max() * len(hot))
    return float(np.mean(hot > 1.0 / len(hot)))


def _popularity_cv(p: Row, params: LoadParams) -> float:
    """Coefficient of variation of the expert slots' token counts in one step, averaged over the MoE
    layers: the layer's popularity CV and the Poisson noise of ``copies_per_slot`` copies per slot,
    ``sqrt(CV_l^2 + (1 + CV_l^2) / c)``."""
    shares, weights = layer_shares(_load(p, params), experts=p["experts"], top_k=p["top_k"])
    cv2 = popularity_cv2(shares)
    return float(weights @ np.sqrt(cv2 + (1.0 + cv2) / p["copies_per_slot"]))


def _balanced_over_native(p: Row, params: LoadParams) -> float:
    """Busiest-die copies with EPLB / without (static placement): the expert time the balance saves."""
    eplb = _ratio({**p, "policy": "eplb"}, params)
    native = _ratio({**p, "policy": "none", "redundant": 0}, params)
    return eplb / native


def _layer_wait(p: Row, params: LoadParams) -> float:
    """Seconds of one wait op (``dispatch_wait`` or ``combine_wait``) of one MoE layer class of a
    layout's pool, per micro-batch, as ``planner evaluate`` prices it."""
    from planner.evaluate import evaluate
    from planner.inputs.layout import parse_layout
    from planner.inputs.scenario import ScenarioFile, build_scenario, experts_of

    where = "expert-load calibration row"
    file = ScenarioFile.model_validate(p["scenario"])
    scenario = build_scenario(file, {}, where)
    scenario = replace(scenario, experts=experts_of(file.experts, scenario.model, params))
    ev = evaluate(parse_layout(p["layout"], where), scenario, where)
    pool = ev.decode if p["pool"] == "decode" else ev.prefill
    assert pool is not None
    return float(np.asarray(pool.layers[p["layer_class"]].ops[p["op"]].time_s).reshape(-1)[0])


PREDICTORS: dict[str, Callable[[Row, LoadParams], float]] = {
    "expert_load_ratio": _ratio, "expert_load_hot_layer": _hot_layer,
    "expert_load_balanced_over_native": _balanced_over_native,
    "expert_load_cv": _popularity_cv, "wait_latency": _layer_wait,
}


def predict(row: Row, params: LoadParams | None = None) -> float:
    """Predicted value of an ``A*`` row (a ratio, a fraction or seconds) with ``params`` (default: shipped)."""
    p = row["predict"]
    return PREDICTORS[p["kind"]](p, params or load_params())


def hardware_predictor(kind: str) -> Callable[[Any, Row], float]:
    """The predictor of ``kind`` with the calibration table's ``(hardware, predict block)`` signature
    (the hardware is the row's own, named in the block; the parameters are the shipped ones)."""
    return lambda hw, p: PREDICTORS[kind](p, load_params())


# --------------------------------------------------------------------------- fit


def fit_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows that fit expert-load parameters (never check-only, gap or bound rows)."""
    return [r for r in rows if TARGET in r.get("fits", {}) and not r.get("check_only")]


def fit(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Fit every parameter some ``A*`` row of ``rows`` (planner.ops.calibration.load_rows) names, on those
    rows, deterministically.

    Returns
    -------
    dict mapping parameter paths of ``measurements/expert_load.toml`` to fitted values.

    Notes
    -----
    ``scipy.optimize.least_squares`` (trust-region reflective) on ``log(predicted / measured)``,
    one residual per row, equal weights; bounds and start values per parameter
    (:data:`PARAMETERS`), never the stored values.  The other parameters keep their stored values.
    """
    rows = fit_rows(rows)
    paths = sorted({path for r in rows for path in r["fits"][TARGET]})
    if not paths:
        return {}
    log = np.array([q.endswith("_s") for q in paths])  # time constants are fitted in log10
    lo, hi, x0 = (np.array([PARAMETERS[q][1][0] for q in paths]), np.array([PARAMETERS[q][1][1] for q in paths]),
                  np.array([PARAMETERS[q][2] for q in paths]))
    lo, hi, x0 = (np.where(log, np.log10(np.where(log, v, 1.0)), v) for v in (lo, hi, x0))
    base = load_params()
    measured = np.array([r["measured_si"] for r in rows])

    def values(x: np.ndarray) -> dict[str, float]:
        return dict(zip(paths, np.where(log, 10.0**x, x).tolist(), strict=True))

    def residuals(x: np.ndarray) -> np.ndarray:
        params = with_values(base, values(x))
        return np.log(np.array([predict(r, params) for r in rows]) / measured)

    from scipy.optimize import least_squares  # here, not at the top: its import costs ~0.12 s of every CLI run

    result = least_squares(residuals, x0, bounds=(lo, hi), method="trf", xtol=1e-12, ftol=1e-12, gtol=1e-12,
                           max_nfev=2000)
    return values(result.x)
