"""Calibration of hardware-profile efficiencies on published microbenchmarks.

The rows live in ``measurements/calibration.json`` (shipped with the package): each is a
published kernel or communication microbenchmark with its source, the measured value in SI
units (``measured_si``) and a ``predict`` block saying which cost-model function reproduces it.
:func:`predict` evaluates a row with the planner's own cost model; :func:`fit` varies the
profile parameters named by the rows' ``fits`` to minimise ``log(predicted / measured)``.

The team rule: calibrate on microbenchmarks, validate on systems.  Rows marked
``check_only`` are predicted and reported but never fitted on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from planner import catalog
from planner.cost.precision import BytesPerElement
from planner.cost.roofline import Cost, Device, attention_core, gemm, streaming, sum_costs
from planner.inputs.hardware import HardwareSpec, hardware_from_document
from planner.ops import expert_load_fit
from planner.serving.overlap import core_split_slowdown
from planner.units import Dtype
from planner.xccl import AllReduce, CallCosts, a2e, all_to_all_s, allreduce_s, distinct, p2p_s, transfer_s

Row = Mapping[str, Any]
ROWS_FILE = "calibration.json"

# --------------------------------------------------------------------------- rows


@lru_cache(maxsize=4)
def _document(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def rows_path() -> Path:
    """The shipped ``measurements/calibration.json``."""
    return catalog.data_dir("measurements") / ROWS_FILE


def load_document(path: Path | str | None = None) -> dict[str, Any]:
    """The whole calibration file: ``rows`` and ``excluded`` (rows not used, with reasons)."""
    return _document(str(path or rows_path()))


def load_rows(path: Path | str | None = None) -> list[dict[str, Any]]:
    """Calibration rows (the ``rows`` array of ``measurements/calibration.json``)."""
    return [dict(row) for row in load_document(path)["rows"]]


def row_key(row: Row) -> str:
    """Unique key of a row: its published id, plus ``/variant`` when one id gives two metrics."""
    return f"{row['id']}/{row['variant']}" if row.get("variant") else row["id"]


# --------------------------------------------------------------------------- parameters


def _section(hw: HardwareSpec, document: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """(table of ``document`` holding the parameter ``path``, the parameter's key)."""
    keys = path.split(".")
    table = document
    if keys[0] == "fabrics":
        names = [fabric.name for fabric in hw.fabrics]
        if keys[1] not in names:
            raise KeyError(f"{hw.name} has no fabric '{keys[1]}'")
        table, keys = document["fabrics"][names.index(keys[1])], keys[2:]
    for key in keys[:-1]:
        table = table[key]
    return table, keys[-1]


def with_params(hw: HardwareSpec, values: Mapping[str, float]) -> HardwareSpec:
    """``hw`` with profile parameters replaced, e.g. ``{"efficiency.gemm.max_frac": 0.75}``.

    Paths are dotted field names of :class:`~planner.inputs.files.HardwareFile`; a fabric is
    named by its ``name``: ``fabrics.infiniband.efficiency.max_frac``.  The edited profile is
    validated again, so a value outside the schema's range is an error.
    """
    document = hw.document()
    for path, value in values.items():
        table, key = _section(hw, document, path)
        table[key] = float(value)
    return hardware_from_document(document, hw.path)


def param_value(hw: HardwareSpec, path: str) -> float:
    """Current value of a profile parameter named by a dotted path."""
    table, key = _section(hw, hw.document(), path)
    return float(table[key])


# --------------------------------------------------------------------------- predictors


def _one(x: Any) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=float))


def _gemm_cost(hw: HardwareSpec, p: Row) -> Cost:
    dtype = Dtype(p.get("dtype", "fp8"))
    dev = Device.of(hw, dtype)
    return gemm(dev, _one(p["m"]), p["n"], p["k"], weight_bytes=dtype.bytes_per_element,
                act_bytes=dtype.bytes_per_element, out_bytes=Dtype(p.get("out_dtype", "bf16")).bytes_per_element,
                count=p.get("groups", 1))


def _gemm(hw: HardwareSpec, p: Row) -> float:
    """Achieved FLOP/s of one (grouped) GEMM, as DeepGEMM counts it: 2 M N K groups / t."""
    cost = _gemm_cost(hw, p)
    return float(cost.flops[0] / cost.time_s[0])


def _gemm_latency(hw: HardwareSpec, p: Row) -> float:
    """Seconds of one (grouped) GEMM kernel (FlashInfer's benchmark CSVs report times)."""
    return float(_gemm_cost(hw, p).time_s[0])


def _gemm_weight_bandwidth(hw: HardwareSpec, p: Row) -> float:
    """Weight bytes / time of a weight-streaming (small-M) GEMM, as FlashInfer and CUTLASS users
    count it: ``groups N K`` elements of the weight dtype (block scales not counted)."""
    weight_bytes = p.get("groups", 1) * p["n"] * p["k"] * Dtype(p.get("dtype", "fp8")).bytes_per_element
    return float(weight_bytes / _gemm_cost(hw, p).time_s[0])


def _gemm_peak(hw: HardwareSpec, p: Row) -> float:
    """Asymptotic GEMM FLOP/s (M, K -> infinity): ``max_frac * peak``."""
    return hw.gemm_max_frac(p.get("dtype", "fp8")) * hw.peak_flops_per_s(p.get("dtype", "fp8"))


def _attention_work(p: Row) -> tuple[float, float]:
    """(FLOPs, bytes) of an attention kernel as its benchmark counts them.

    ``mla_decode`` (FlashMLA tests): FLOPs ``2 s_q S h_q (d + d_v)`` over ``S = b s_k`` cached
    tokens, bytes ``(S d + b s_q h_q (d + d_v)) * 2``.  ``mha_prefill``: causal, ``N^2 / 2`` pairs
    per head, FLOPs ``2 h (d_qk + d_v)`` per pair, bytes Q, K, V, O once.
    """
    b, h, dk, dv = p["batch"], p["q_heads"], p["d_qk"], p["d_v"]
    eb = Dtype(p.get("dtype", "bf16")).bytes_per_element
    if p["form"] == "mla_decode":
        total, sq = b * p["context"], p["q_len"]
        return 2.0 * sq * total * h * (dk + dv), (total * dk + b * sq * h * (dk + dv)) * eb
    if p["form"] == "gqa_decode":
        # one query token per sequence; K and V of ``kv_heads`` heads read once (FlashInfer's count)
        total = b * p["context"]
        return 2.0 * total * h * (dk + dv), (total * p["kv_heads"] * (dk + dv) + b * h * (dk + dv)) * eb
    n = p["seq_len"]
    pairs = n * n / 2.0 if p.get("causal", True) else n * n  # mha_prefill; ``causal = false``: no mask
    kv_heads = p.get("kv_heads", h)
    return 2.0 * b * h * (dk + dv) * pairs, b * n * (h + kv_heads) * (dk + dv) * eb


def _keys_per_query(p: Row) -> np.ndarray | None:
    """Keys a query row attends in a prefill benchmark (``N / 2`` causal, ``N`` unmasked); None for decode."""
    if p["form"] != "mha_prefill":
        return None
    return _one(p["seq_len"] / 2.0 if p.get("causal", True) else p["seq_len"])


def _attention_cost(hw: HardwareSpec, p: Row) -> tuple[float, float, Cost]:
    flops, bytes_ = _attention_work(p)
    cost = attention_core(Device.of(hw, Dtype.BF16), _one(flops), _one(bytes_), keys_per_query=_keys_per_query(p))
    return flops, bytes_, cost


def _attention(hw: HardwareSpec, p: Row) -> float:
    """Achieved FLOP/s (``attention_compute``) or bytes/s (``attention_memory_bandwidth``)."""
    flops, bytes_, cost = _attention_cost(hw, p)
    work = flops if p["kind"] == "attention_compute" else bytes_
    return float(work / cost.time_s[0])


def _attention_latency(hw: HardwareSpec, p: Row) -> float:
    """Seconds of one attention kernel call."""
    return float(_attention_cost(hw, p)[2].time_s[0])


def _streaming_bandwidth(hw: HardwareSpec, p: Row) -> float:
    """Bytes/s of a memory-streaming kernel (norms, copies): ``bytes`` read + written / time."""
    return float(p["bytes"] / streaming(Device.of(hw, Dtype.BF16), _one(p["bytes"])).time_s[0])


def _call_s(hw: HardwareSpec, op: str) -> float:
    return getattr(CallCosts.of(hw), f"{op}_s")


def _a2a_time(hw: HardwareSpec, p: Row) -> np.ndarray:
    only = p.get("only_fabric")
    fabric = hw.fabric_named(only) if only else None
    # ``bytes_per_token``: a payload with its block scales (TRT-LLM's post-quantised dispatch)
    bpc = p.get("bytes_per_token", p["hidden"] * Dtype(p["dtype"]).bytes_per_element)
    return all_to_all_s(hw, bytes_per_copy=bpc, tokens=_one(p["tokens"]), top_k=p["top_k"],
                        ranks=_one(p["ranks"]), dedup=p["dedup"], call_s=_call_s(hw, p["op"]),
                        only_fabric=fabric, copy_s=CallCosts.of(hw).copy_s)


def _a2a_latency(hw: HardwareSpec, p: Row) -> float:
    """Seconds of one dispatch or combine (DeepEP low-latency style)."""
    return float(_a2a_time(hw, p)[0])


def _a2a_bandwidth(hw: HardwareSpec, p: Row) -> float:
    """Bytes/s as DeepEP reports it: logical bytes (local copies included) / time.

    Logical bytes = tokens * (distinct domains of ``counted_domain_dies`` dies hit, the
    sender's own included) * hidden * bytes per element.
    """
    domains = p["ranks"] / p["counted_domain_dies"]
    logical = p["tokens"] * distinct(_one(domains), p["top_k"]) * p["hidden"] * Dtype(p["dtype"]).bytes_per_element
    return float(logical[0] / _a2a_time(hw, p)[0])


def _a2e_latency(hw: HardwareSpec, p: Row) -> float:
    """Seconds of one A2E (``op = dispatch``) or E2A (``op = combine``) transfer."""
    t = a2e(hw, bytes_per_copy=p["hidden"] * Dtype(p["dtype"]).bytes_per_element,
            tokens_per_attention_die=_one(p["tokens_per_attention_die"]),
            attention_dies=_one(p["attention_dies"]), expert_dies=_one(p["expert_dies"]),
            top_k=p["top_k"], call_s=_call_s(hw, p["op"]), copy_s=CallCosts.of(hw).copy_s).call_s
    return float(t[0])


def _allreduce_busbw(hw: HardwareSpec, p: Row) -> float:
    """All-reduce bus bandwidth, bytes/s: ``algbw * 2 (n - 1) / n`` (nccl-tests).

    ``algorithm`` (``ring`` / ``in_switch``; default ``fastest``): the one the benchmark forced or
    reported (planner.xccl.AllReduce).
    """
    n = p["ranks"]
    t = allreduce_s(hw, _one(p["bytes"]), _one(n), CallCosts.of(hw).collective_s,
                    AllReduce(p.get("algorithm", AllReduce.FASTEST)))
    return float(p["bytes"] / t[0] * 2 * (n - 1) / n)


def _allreduce_latency(hw: HardwareSpec, p: Row) -> float:
    """Seconds of one all-reduce of ``bytes`` per die among ``ranks`` dies (decode TP all-reduce)."""
    return float(allreduce_s(hw, _one(p["bytes"]), _one(p["ranks"]), CallCosts.of(hw).collective_s,
                             AllReduce(p.get("algorithm", AllReduce.FASTEST)))[0])


def _fabric_bandwidth(hw: HardwareSpec, p: Row) -> float:
    """Large-message bytes/s of one die over one fabric among ``ranks`` dies."""
    fabric = hw.fabric_named(p["fabric"])
    return float(p["bytes"] / transfer_s(fabric, _one(p["bytes"]), _one(p["ranks"]))[0])


def _p2p_latency(hw: HardwareSpec, p: Row) -> float:
    """Seconds of one point-to-point send of ``bytes`` over one die link."""
    fabric = hw.fabric_named(p["fabric"])
    return float(p2p_s(fabric, _one(p["bytes"]), p.get("links", 1), CallCosts.of(hw).p2p_s)[0])


def _attention_layer(hw: HardwareSpec, p: Row) -> float:
    """Seconds of one decode attention layer on one die (projections + core + TP all-reduce)."""
    model = catalog.model(p["model"])
    by = BytesPerElement.of(hw, p["weights"], p["activations"], p["kv"])
    dev = Device.of(hw, by.compute_dtype)
    tokens, tp = _one(p["tokens"]), _one(p["tp"])
    ops = model.attention.decode_ops(dev, by, tokens=tokens, seqs=_one(p["seqs"]), context=_one(p["context"]),
                                     tp=tp)
    t = sum_costs(ops).time_s
    t = t + allreduce_s(hw, tokens * model.hidden * by.out, tp, CallCosts.of(hw).collective_s)
    return float(t[0])


def _core_split_slowdown(hw: HardwareSpec, p: Row) -> float:
    """Time of a kernel on ``cube_cores`` of ``cube_cores_full`` cube cores / its full-die time (B_l1)."""
    return float(core_split_slowdown(p["cube_cores"] / p["cube_cores_full"], hw.overlap.core_split_exponent))


def _core_share(hw: HardwareSpec, p: Row) -> float:
    """Core share of one multi-stream stream (``stream``: attention / moe) in the profile's ``[overlap]``."""
    return float(getattr(hw.overlap, f"{p['stream']}_core_frac"))


def _sm_share(hw: HardwareSpec, p: Row) -> float:
    """Share of the SMs the bulk (normal-mode) all-to-all takes while it overlaps compute (C_o1)."""
    return float(hw.overlap.comm_sm_frac)


PREDICTORS: dict[str, Callable[[HardwareSpec, Row], float]] = {
    "gemm": _gemm, "grouped_gemm": _gemm, "gemm_peak": _gemm_peak,
    "attention_compute": _attention, "attention_memory_bandwidth": _attention,
    "a2a_bandwidth": _a2a_bandwidth, "a2a_latency": _a2a_latency, "a2e_latency": _a2e_latency,
    "allreduce_busbw": _allreduce_busbw, "fabric_bandwidth": _fabric_bandwidth,
    "p2p_latency": _p2p_latency, "attention_layer": _attention_layer,
    "gemm_latency": _gemm_latency, "gemm_weight_bandwidth": _gemm_weight_bandwidth,
    "attention_latency": _attention_latency, "streaming_bandwidth": _streaming_bandwidth,
    "allreduce_latency": _allreduce_latency,
    # the B_l* / C_o1 rows: the overlap discipline's parameters (planner/serving/overlap.py)
    "core_split_slowdown": _core_split_slowdown, "core_share": _core_share, "sm_share": _sm_share,
    # the A* rows: the expert-load model (planner/ops/expert_load_fit.py fits them, never fit() here)
    **{kind: expert_load_fit.hardware_predictor(kind) for kind in expert_load_fit.PREDICTORS},
}


def predict(row: Row, hw: HardwareSpec | None = None) -> float:
    """Predicted value of a calibration row in SI units (FLOP/s, bytes/s or seconds).

    Parameters
    ----------
    row : a row of ``measurements/calibration.json`` (its ``predict`` block is used)
    hw : hardware to predict with; default: the profile named in ``predict.profile`` (the
        hardware the row was measured on)
    """
    p = row["predict"]
    return PREDICTORS[p["kind"]](hw or catalog.hardware(p["profile"]), p)


# --------------------------------------------------------------------------- table


def _rows_for(profile: str | None) -> list[dict[str, Any]]:
    rows = load_rows()
    if profile is None:
        return rows
    return [r for r in rows if r["predict"]["profile"] == profile or profile in r.get("fits", {})]


def _hw_for(row: Row, profile: str | None) -> HardwareSpec:
    """The hardware a row was measured on, carrying ``profile``'s values of the row's parameters.

    A row measured on one profile may calibrate another with the same silicon (H800 GEMMs
    calibrate H100/H200): it is predicted with the measuring hardware's peaks and bandwidths
    and the target profile's efficiencies.
    """
    base = catalog.hardware(row["predict"]["profile"])
    if profile is None or profile == base.name:
        return base
    target = catalog.hardware(profile)
    return with_params(base, {k: param_value(target, k) for k in _transferred(row, profile)})


def _transferred(row: Row, profile: str) -> list[str]:
    """Parameters of ``profile`` a row measured on other hardware carries over (its ``fits``)."""
    return list(row.get("fits", {}).get(profile, []))


def calibration_table(profile: str | None = None) -> list[dict[str, Any]]:
    """Predicted vs measured for every row (or the rows measured on / fitting ``profile``).

    Returns
    -------
    list of dict with ``id``, ``key``, ``profile`` (measuring hardware), ``kind``,
    ``predicted`` and ``measured`` (SI), ``error`` (predicted / measured - 1),
    ``used_for_fit`` (the row fits ``profile``, or any profile when ``profile`` is None),
    ``check_only``, ``bound`` (``"upper"`` when the published value is an upper bound) and
    ``gap`` (why the cost model cannot express the row, or None).
    """
    out = []
    hws: dict[tuple[str, tuple[str, ...]], HardwareSpec] = {}  # _hw_for once per measuring hardware and carried values
    for row in _rows_for(profile):
        key = (row["predict"]["profile"], tuple(_transferred(row, profile)) if profile is not None else ())
        if key not in hws:
            hws[key] = _hw_for(row, profile)
        predicted = predict(row, hws[key])
        fits = row.get("fits", {})
        out.append({
            "id": row["id"], "key": row_key(row), "profile": row["predict"]["profile"],
            "kind": row["predict"]["kind"], "predicted": predicted, "measured": row["measured_si"],
            "error": predicted / row["measured_si"] - 1.0,
            "used_for_fit": bool(fits) if profile is None else profile in fits,
            "check_only": bool(row.get("check_only")), "bound": row.get("bound"), "gap": row.get("gap"),
        })
    return out


# --------------------------------------------------------------------------- fit

# Physical bounds, start values (independent of the stored profile) and scales, by name suffix.
_PARAM_RULES: list[tuple[str, tuple[float, float], float, float]] = [
    ("frac", (0.05, 1.0), 0.7, 1.0),
    ("m_half_tokens", (0.0, 8192.0), 128.0, 100.0),
    ("query_overhead_tokens", (0.0, 8192.0), 256.0, 100.0),
    ("k_half", (0.0, 16384.0), 512.0, 100.0),
    ("decay_start_ranks", (1.0, 1024.0), 8.0, 10.0),
    ("decay", (0.0, 2.0), 0.1, 1.0),
    ("core_split_exponent", (0.0, 1.0), 0.5, 1.0),
    ("half_rate_bytes", (0.0, 1e9), 1e6, 1e6),
    ("copy_s", (0.0, 5e-6), 0.1e-6, 1e-7),
    ("_s", (0.0, 100e-6), 10e-6, 1e-5),
]


def _rule(path: str) -> tuple[tuple[float, float], float, float]:
    for suffix, bounds, start, scale in _PARAM_RULES:
        if path.endswith(suffix):
            return bounds, start, scale
    raise KeyError(f"no fitting rule for parameter '{path}'")


def _caps(rows: list[dict[str, Any]], params: list[str]) -> dict[str, float]:
    """Upper bounds from rows that cap a parameter (a published peak the fit may not exceed).

    The capped prediction must be proportional to the parameter: ``cap = measured /
    predicted(parameter = 1)``.
    """
    caps: dict[str, float] = {}
    for row in rows:
        for path in row.get("caps", []):
            if path in params:
                unit = predict(row, with_params(catalog.hardware(row["predict"]["profile"]), {path: 1.0}))
                caps[path] = min(caps.get(path, np.inf), row["measured_si"] / unit)
    return caps


def _row_values(row: Row, base: HardwareSpec, profile: str, values: dict[str, float]) -> dict[str, float]:
    """Trial values applied to a row: all of them on the profile's own hardware, else the
    parameters the row transfers (same die, same link, same NIC)."""
    if base.name == profile:
        return values
    return {k: values[k] for k in _transferred(row, profile)}


def fit_rows(profile: str) -> list[dict[str, Any]]:
    """Rows whose ``fits`` name ``profile`` (never ``check_only`` rows)."""
    return [r for r in load_rows() if profile in r.get("fits", {}) and not r.get("check_only")]


def fit(profile: str) -> dict[str, float]:
    """Fit the parameters of ``profile`` named by its rows' ``fits``, deterministically.

    Returns
    -------
    dict mapping dotted parameter paths (``efficiency.gemm.max_frac``, ``overheads.kernel_s``,
    ``fabrics.infiniband.efficiency.max_frac``, ...) to fitted values (SI).

    Notes
    -----
    ``scipy.optimize.least_squares`` (trust-region reflective) on the residuals
    ``log(predicted / measured)``, one per row, all rows weighted equally.  Rows are predicted
    on the hardware they were measured on with the trial parameters.  Start values and bounds
    depend only on the parameter kind (fractions in [0.05, 1], times in [0, 100 us]), never on
    the stored profile, so re-running the fit reproduces the stored values.
    """
    rows = fit_rows(profile)
    if not rows:
        return {}
    params = sorted({p for r in rows for p in r["fits"][profile]})
    caps = _caps(rows, params)
    rules = [_rule(p) for p in params]
    scale = np.array([s for _, _, s in rules])
    lo = np.array([b[0] for b, _, _ in rules])
    hi = np.array([min(b[1], caps.get(p, np.inf)) for p, (b, _, _) in zip(params, rules, strict=True)])
    x0 = np.clip([s for _, s, _ in rules], lo, hi - 1e-9 * scale)
    bases = [catalog.hardware(r["predict"]["profile"]) for r in rows]
    measured = np.array([r["measured_si"] for r in rows])

    def residuals(u: np.ndarray) -> np.ndarray:
        values = dict(zip(params, u * scale, strict=True))
        trial: dict[tuple[str, tuple[tuple[str, float], ...]], HardwareSpec] = {}  # one profile per base and values
        predicted = []
        for r, b in zip(rows, bases, strict=True):
            applied = _row_values(r, b, profile, values)
            key = (b.name, tuple(sorted(applied.items())))
            if key not in trial:
                trial[key] = with_params(b, applied)
            predicted.append(predict(r, trial[key]))
        return np.log(np.array(predicted) / measured)

    from scipy.optimize import least_squares  # here, not at the top: its import costs ~0.12 s of every CLI run

    result = least_squares(residuals, x0 / scale, bounds=(lo / scale, hi / scale), method="trf",
                           xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000)
    return dict(zip(params, (result.x * scale).tolist(), strict=True))


def error_summary(table: list[dict[str, Any]]) -> dict[str, float]:
    """Median and maximum absolute error over rows that are not bounds, and the row count."""
    errors = np.abs([r["error"] for r in table if not r["bound"]])
    if not errors.size:
        return {"median_abs_error": float("nan"), "max_abs_error": float("nan"), "rows": 0.0}
    return {"median_abs_error": float(np.median(errors)), "max_abs_error": float(np.max(errors)),
            "rows": float(errors.size)}
