"""Expert-load inputs: the model's parameters (``measurements/expert_load.toml``) and measured
per-layer expert-count matrices (``--expert-load FILE``), as plain values.

A count matrix has one row per MoE layer of the model (in layer order, MTP layers excluded) and
one column per routed expert: the tokens routed to that expert over some window (the expert
distribution recorders of SGLang and vLLM dump one).  Two formats:

- CSV: one row per line, comma-separated non-negative numbers, no header; lines starting with
  ``#`` and blank lines are skipped;
- JSON: an array of rows (arrays of numbers), or an object ``{"counts": [[...], ...]}``.

A bad matrix (unreadable, empty, not numbers, ragged, negative or non-finite, a layer with no
tokens, the wrong shape for the model, or an expert with more than ``1 / top_k`` of a layer's
copies, which no routing can produce) is a one-line :class:`~planner.errors.DataFileError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from planner import catalog
from planner.errors import DataFileError
from planner.inputs.files import Factor, SchemaVersion, Strict, Text, load_file, ranged, read_capped, read_json
from planner.inputs.model import ModelSpec

PARAMS_FILE = "expert_load.toml"


class Policy(StrEnum):
    """Expert balance policies (scenario ``[experts] balance``)."""

    NONE = "none"          # static contiguous placement, no replicas
    EPLB = "eplb"          # replicas of hot experts, placed on statistics from the last rebalance
    PERFECT = "perfect"    # every die carries the mean
    MEASURED = "measured"  # EPLB on a measured count matrix, which is also the live distribution


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadParams:
    """Parameters of the expert-load model (``measurements/expert_load.toml``)."""

    skew_mild_sigma: float        # popularity log-normal sigma of the mild layers
    skew_hot_sigma: float         # ... of the hot layers
    skew_hot_layer_frac: float    # fraction of MoE layers that are hot
    mismatch_cv: float            # per-expert CV of a live step vs the placement's statistics (in distribution)
    drift_time_constant_s: float  # time over which the placement decorrelates from the live popularity
    dp_count_dispersion: float    # variance / mean of the sequences a decode DP rank holds


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpertLoad:
    """What one pool's expert load model needs: the policy, its parameters, and the skew.

    ``counts`` is a measured ``(MoE layers, routed experts)`` matrix or None (the fitted skew).
    Tables are cached per instance (``_tables``).
    """

    policy: Policy
    params: LoadParams
    rebalance_period_s: float
    counts: np.ndarray | None = field(default=None, compare=False)
    _tables: dict = field(default_factory=dict, compare=False, repr=False)


Sigma = ranged(float, 0.0, 10.0, "a log-normal sigma of expert popularity; 10 puts every token on one expert")
Frac = ranged(float, 0.0, 1.0, "a fraction of the MoE layers")
Cv = ranged(float, 0.0, 10.0, "a coefficient of variation per expert")
Seconds = ranged(float, 1.0, 1e9, "a time constant of traffic drift", "s")
Dispersion = ranged(float, 0.0, 100.0, "variance / mean of a count (1 = Poisson)")


class SkewSection(Factor):
    mild_sigma: Sigma
    hot_sigma: Sigma
    hot_layer_frac: Frac


class MismatchSection(Factor):
    cv: Cv


class DriftSection(Factor):
    time_constant_s: Seconds


class DpImbalanceSection(Factor):
    count_dispersion: Dispersion


class ExpertLoadFile(Strict):
    """Schema of ``measurements/expert_load.toml``."""

    schema_version: SchemaVersion
    description: Text
    skew: SkewSection
    mismatch: MismatchSection
    drift: DriftSection
    dp_imbalance: DpImbalanceSection


def params_path() -> Path:
    return catalog.data_dir("measurements") / PARAMS_FILE


def params_from_file(file: ExpertLoadFile) -> LoadParams:
    """The model's parameters from a validated file."""
    return LoadParams(skew_mild_sigma=file.skew.mild_sigma, skew_hot_sigma=file.skew.hot_sigma,
                      skew_hot_layer_frac=file.skew.hot_layer_frac, mismatch_cv=file.mismatch.cv,
                      drift_time_constant_s=file.drift.time_constant_s,
                      dp_count_dispersion=file.dp_imbalance.count_dispersion)


@lru_cache(maxsize=4)
def _load(path: str) -> ExpertLoadFile:
    return load_file(ExpertLoadFile, Path(path))


def load_params_file(path: Path | None = None) -> ExpertLoadFile:
    """The validated parameter file (the shipped one by default)."""
    return _load(str(path or params_path()))


def load_params(path: Path | None = None) -> LoadParams:
    """The expert-load parameters (the shipped file by default)."""
    return params_from_file(load_params_file(path))


# --------------------------------------------------------------------------- count matrices


def _csv_rows(text: str, where: str) -> list[list[float]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            rows.append([float(cell) for cell in line.split(",")])
        except ValueError:
            raise DataFileError(f"line {number}: not a comma-separated list of numbers", where=where,
                                fix="write one MoE layer per line, one count per expert, no header") from None
    return rows


def _json_rows(data: Any, where: str) -> list[list[float]]:
    if isinstance(data, dict):
        if set(data) != {"counts"}:
            raise DataFileError("a JSON object must have exactly one key, 'counts'", where=where,
                                fix='write {"counts": [[...], ...]} or a bare array of rows')
        data = data["counts"]
    ok = isinstance(data, list) and all(
        isinstance(row, list) and all(isinstance(x, int | float) and not isinstance(x, bool) for x in row)
        for row in data)
    if not ok:
        raise DataFileError("not an array of rows of numbers", where=where,
                            fix="write one array per MoE layer, one number per expert")
    return [[float(x) for x in row] for row in data]


def read_rows(path: Path) -> list[list[float]]:
    """The rows of a count matrix file (``.json``: JSON, anything else: CSV), unchecked."""
    where = str(path)
    if path.suffix.lower() == ".json":
        return _json_rows(read_json(path, what="expert-load matrix"), where)
    raw = read_capped(path, what="expert-load matrix")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataFileError("not UTF-8 text", where=where, fix="save the matrix as UTF-8 CSV or JSON") from None
    return _csv_rows(text, where)


def check_counts(rows: list[list[float]], model: ModelSpec, where: str) -> np.ndarray:
    """A ``(MoE layers, routed experts)`` array of the rows, or a DataFileError naming what is wrong."""
    layers, experts = model.num_moe_layers, model.ffn.num_routed_experts
    fix = f"give {layers} rows (MoE layers of {model.name}) of {experts} counts (routed experts)"
    if not model.is_moe:
        raise DataFileError(f"{model.name} has no routed experts; an expert-load matrix does not apply", where=where,
                            fix="drop the expert-load file")
    if not rows or not any(rows):
        raise DataFileError("empty expert-load matrix", where=where, fix=fix)
    widths = sorted({len(r) for r in rows})
    if len(widths) > 1:
        raise DataFileError(f"rows have different lengths ({', '.join(map(str, widths))})", where=where, fix=fix)
    if (len(rows), widths[0]) != (layers, experts):
        raise DataFileError(f"matrix is {len(rows)} x {widths[0]}, {model.name} needs {layers} x {experts}",
                            where=where, fix=fix)
    counts = np.array(rows, dtype=float)
    bad = np.argwhere(~np.isfinite(counts) | (counts < 0))
    if bad.size:
        i, j = (int(x) for x in bad[0])
        raise DataFileError(f"row {i + 1}, column {j + 1}: {float(counts[i, j])!r} is not a non-negative count",
                            where=where, fix="counts are tokens routed to an expert: finite and >= 0")
    with np.errstate(over="ignore"):
        totals = counts.sum(axis=1)
    empty = np.flatnonzero(totals <= 0)
    if empty.size:
        raise DataFileError(f"row {int(empty[0]) + 1} (MoE layer) has no routed tokens", where=where,
                            fix="record the counts over a window in which every layer routed tokens")
    overflow = np.flatnonzero(~np.isfinite(totals))
    if overflow.size:  # the shares would be count / inf = 0: silently perfect balance
        raise DataFileError(f"row {int(overflow[0]) + 1} (MoE layer) sums past the largest float", where=where,
                            fix="rescale the counts (only their ratios within a row matter)")
    # a token picks top_k distinct experts, so no expert receives more than 1/top_k of a layer's copies
    k = model.ffn.top_k
    over = np.argwhere(counts * k > totals[:, None] * (1.0 + 1e-9))
    if over.size:
        i, j = (int(x) for x in over[0])
        raise DataFileError(f"row {i + 1}, column {j + 1}: {counts[i, j] / totals[i]:.1%} of the layer's copies, "
                            f"more than 1/top_k = 1/{k} (a token picks {k} distinct experts)", where=where,
                            fix="give token copies per routed expert over the same window for every expert")
    return counts


def read_counts(path: Path | str, model: ModelSpec) -> np.ndarray:
    """A measured ``(MoE layers, routed experts)`` expert-count matrix for ``model`` (CSV or JSON)."""
    path = Path(path)
    return check_counts(read_rows(path), model, str(path))


def expert_load_files(experts: dict[str, Any]) -> list[Path]:
    """The distinct measured-matrix files a scenario's ``[experts]`` table names, in key order."""
    keys = ("load_file", "prefill_load_file", "decode_load_file")
    return [Path(p) for p in dict.fromkeys(experts.get(k) for k in keys) if p]
