"""Calibration gate: the profiles' efficiencies reproduce the published microbenchmarks.

Every row of ``measurements/calibration.json`` is predicted with the planner's own cost model
(``planner.ops.calibration.predict``) and compared with the published value.  Roles:

- fit rows: the profile parameters were fitted on them (``fits``);
- check rows (``check_only``): predicted and gated, never fitted (held-out kernels, layer-level
  checks, a superseded kernel);
- bound rows (``bound = "upper"``): the published value is an upper bound;
- gap rows (``gap``): the cost model cannot express the mechanism; reported, not gated (the
  reason is in the row and in the calibration report).

Every fit and check row is gated at its own band (``tolerance`` and ``band_reason`` in the row,
measurements/README.md "Bands"); a row the cost model is known to miss carries ``known_miss`` and
is a strict xfail, so the mark fails the suite the day the row comes back inside its band.  The
median over fit + check rows is gated too.

Run ``pytest tests/validation/test_calibration.py -s`` to see the table.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from planner import catalog
from planner.inputs.files import HardwareFile, load_file
from planner.ops import calibration

# Median over the fit + check rows (DESIGN asks for <= 15%; the calibration achieves ~3%).  Each
# row's own band is in measurements/calibration.json.  The gate is a claim made before the Blackwell
# rows arrived and stays where it was: a profile above it is a known miss (MEDIAN_MISSES), not a
# reason to move it.
MEDIAN_GATE = 0.05
# Profiles whose own median misses the gate, with the reason (strict xfails: a fix makes them fail).
MEDIAN_MISSES = {
    "gb200-nvl72": "5.03% against 5%: single-run TRT-LLM all-to-all tables whose per-call cost the kernel hides "
                   "at 32-256 tokens per rank, the small decode-attention kernels' 10-25 us floor the roofline "
                   "lacks, and Hopper's GEMM curve shape (m_half, k_half); the rows outside their band are listed "
                   "as known misses",
    "cloudmatrix384": "one core-split exponent serves every kernel (B_l1's ops slow 1.23-1.57x at half the "
                      "cores) and the held-out XCCL and GEMM checks (B_dn, B_dl, B_c4) sit at 5-15%",
}
REPRODUCE_TOL = 0.03        # stored profile values vs a fresh fit (3 significant digits stored)

REPO = Path(__file__).resolve().parents[2]
# The research notes' rows, pinned from ../shared/reference (tests/data/pinned/README.md).
REFERENCE_ROWS = REPO / "tests" / "data" / "pinned" / "calibration.json"
# The expert-load rows A* (reference/kernels/ascend_expert_load_overlap.json), pinned the same way.
EXPERT_LOAD_ROWS = REPO / "tests" / "data" / "pinned" / "ascend_expert_load_overlap.json"
# The Blackwell / Hopper kernel rows (reference/kernels/gpu_blackwell_hopper.json, 336 rows), pinned whole.
BLACKWELL_ROWS = REPO / "tests" / "data" / "pinned" / "gpu_blackwell_hopper.json"
PROFILES = catalog.shipped_names("hardware_profiles")
FITTED = [p for p in PROFILES if calibration.fit_rows(p)]


def role(row: dict) -> str:
    if row["gap"]:
        return "gap"
    if row["bound"]:
        return f"{row['bound']} bound"
    return "check" if row["check_only"] else "fit"


FLOP_KINDS = {"gemm", "grouped_gemm", "gemm_peak", "attention_compute"}


def si(value: float, kind: str) -> str:
    """Readable value for the table: us, TFLOP/s or GB/s."""
    if kind.endswith("latency") or kind == "attention_layer":
        return f"{value * 1e6:8.1f} us"
    if kind.startswith("expert_load") or kind in ("core_split_slowdown", "core_share", "sm_share"):
        return f"{value:10.4g}  "  # a ratio or a fraction (the A* expert-load rows, the overlap rows)
    if kind in FLOP_KINDS:
        return f"{value / 1e12:6.0f} TFLOP/s"
    return f"{value / 1e9:7.1f} GB/s"


def render(table: list[dict], title: str) -> str:
    lines = [title, f"{'row':44s} {'hw':14s} {'predicted':>14s} {'published':>14s} {'error':>8s}  role"]
    for r in table:
        lines.append(f"{r['key']:44s} {r['profile']:14s} {si(r['predicted'], r['kind']):>14s} "
                     f"{si(r['measured'], r['kind']):>14s} {r['error']:+8.1%}  {role(r)}")
    return "\n".join(lines)


def gated(table: list[dict]) -> list[dict]:
    return [r for r in table if role(r) in ("fit", "check")]


BANDS = {calibration.row_key(r): r for r in calibration.load_rows()}  # each row's band, by key


def outside_band(rows: list[dict]) -> list[dict]:
    """Gated rows outside their band that are not marked as known misses."""
    return [r for r in gated(rows) if abs(r["error"]) > BANDS[r["key"]]["tolerance"]
            and not BANDS[r["key"]].get("known_miss")]


def _band_params() -> list:
    """One test per fit / check row; a known miss is a strict xfail with its reason."""
    rows = [r for r in BANDS.values() if "tolerance" in r]
    return [pytest.param(calibration.row_key(r), id=calibration.row_key(r),
                         marks=[pytest.mark.xfail(strict=True, reason=r["known_miss"])] if r.get("known_miss") else [])
            for r in rows]


@pytest.fixture(scope="module")
def table() -> list[dict]:
    """Every row on the hardware it was measured on, with the shipped profile values."""
    return calibration.calibration_table()


# --------------------------------------------------------------------------- gates


def test_print_calibration_table(table):
    rows = gated(table)
    summary = calibration.error_summary(rows)
    print("\n" + render(table, "Calibration: predicted vs published (measurements/calibration.json)"))
    print(f"\nfit + check rows: {len(rows)}, median |error| {summary['median_abs_error']:.1%}, "
          f"max {summary['max_abs_error']:.1%}; gap rows (not gated): "
          f"{', '.join(r['key'] for r in table if r['gap'])}")
    for profile in FITTED:
        s = calibration.error_summary(gated(calibration.calibration_table(profile)))
        print(f"  {profile:16s} {int(s['rows']):3d} rows  median {s['median_abs_error']:6.1%}  "
              f"max {s['max_abs_error']:6.1%}")
    assert len(rows) >= 60


# "all": 4.8% over the 325 gated rows since the Atlas A2 GEMM asymptote and Blackwell's prefill
# per-query-row work are fitted (5.1% before, a strict xfail then), with GB200's 179 rows at 5.03%.
@pytest.mark.parametrize("scope", ["without-median-misses", "all"])
def test_median_within_gate(table, scope):
    rows = gated(table)
    if scope != "all":
        rows = [r for r in rows if r["profile"] not in MEDIAN_MISSES]
    assert any(role(r) == "check" for r in rows)
    summary = calibration.error_summary(rows)
    assert summary["median_abs_error"] <= MEDIAN_GATE, render(rows, "median gate failed")


@pytest.mark.parametrize("key", _band_params())
def test_row_within_its_band(table, key):
    """Each fit or check row on the hardware it was measured on, against the band it claims."""
    r = next(r for r in table if r["key"] == key)
    band = BANDS[key]
    assert abs(r["error"]) <= band["tolerance"], \
        f"{key}: error {r['error']:+.1%} outside +-{band['tolerance']:.0%} ({band['band_reason']})"


@pytest.mark.parametrize("profile", [
    pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=MEDIAN_MISSES[p])) if p in MEDIAN_MISSES else p
    for p in FITTED])
def test_each_profile_median_within_gate(profile):
    """The rows that calibrate a profile, predicted with that profile's efficiencies: their median."""
    rows = calibration.calibration_table(profile)
    summary = calibration.error_summary(gated(rows))
    assert summary["median_abs_error"] <= MEDIAN_GATE, render(gated(rows), profile)


@pytest.mark.parametrize("profile", FITTED)
def test_each_profile_rows_within_bands(profile):
    """Every row of a profile inside its band unless it is a known miss (strict xfails above)."""
    rows = calibration.calibration_table(profile)
    outside = outside_band(rows)
    assert not outside, render(outside, f"{profile}: rows outside their band")


def test_every_gated_row_states_its_band():
    """Fit and check rows: a tolerance and its reason; the upper bound: a reason; gap rows: neither."""
    for key, row in BANDS.items():
        if row.get("gap"):
            assert "tolerance" not in row and "band_reason" not in row and "known_miss" not in row, key
            continue
        assert len(row.get("band_reason", "")) > 60, key
        if row.get("bound"):
            assert "tolerance" not in row, key
        else:
            assert 0 < row["tolerance"] < 1, key
        assert "known_miss" not in row or len(row["known_miss"]) > 40, key


def test_upper_bounds_hold(table):
    bounds = [r for r in table if r["bound"] == "upper"]
    assert bounds
    over = [r for r in bounds if r["predicted"] > r["measured"]]
    assert not over, render(over, "predicted above a published upper bound")


def test_gap_rows_are_reported_with_a_reason():
    for row in calibration.load_rows():
        if row.get("gap"):
            assert len(row["gap"]) > 40, row["id"]
            assert not row.get("fits") and not row.get("check_only"), row["id"]


# --------------------------------------------------------------------------- provenance


@pytest.mark.parametrize("profile", FITTED)
def test_fit_reproduces_the_stored_profile_values(profile):
    """Re-running the fit gives the shipped numbers: they really come from the rows."""
    hw = catalog.hardware(profile)
    for path, value in calibration.fit(profile).items():
        stored = calibration.param_value(hw, path)
        assert stored == pytest.approx(value, rel=REPRODUCE_TOL, abs=1e-4 * abs(value) + 1e-12), \
            f"{profile} {path}: stored {stored:.6g}, fit gives {value:.6g}"


def _section(file: HardwareFile, path: str):
    """The provenance-carrying section of the profile file that holds the parameter ``path``."""
    keys = path.split(".")[:-1]
    if keys[0] == "fabrics":  # fabrics.<name>.efficiency.max_frac, fabrics.<name>.in_switch_reduction.latency_s
        return getattr(next(f for f in file.fabrics if f.name == keys[1]), keys[2])
    obj = file
    for key in keys:
        obj = getattr(obj, key)
    return obj


@pytest.mark.parametrize("profile", FITTED)
def test_calibrated_from_names_exactly_the_rows_fitted(profile):
    file = load_file(HardwareFile, catalog.hardware(profile).path)
    expected: dict[int, set[str]] = {}
    sections = {}
    for row in calibration.fit_rows(profile):
        for path in row["fits"][profile]:
            section = _section(file, path)
            sections[id(section)] = section
            expected.setdefault(id(section), set()).add(row["id"])
    for key, section in sections.items():
        assert set(section.calibrated_from) == expected[key], f"{profile}: {section.source[:60]}"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_calibrated_from_id_is_a_shipped_row(profile):
    ids = {r["id"] for r in calibration.load_rows()}
    hw = catalog.hardware(profile)
    f = load_file(HardwareFile, hw.path)
    factors = [f.memory_reserve, f.efficiency.gemm, f.efficiency.attention, f.efficiency.memory,
               f.overheads, f.collectives, *(fabric.efficiency for fabric in f.fabrics),
               *(fabric.in_switch_reduction for fabric in f.fabrics if fabric.in_switch_reduction is not None),
               *(x for x in (f.overlap, f.kernels, f.attention_math) if x is not None)]
    for factor in factors:
        assert set(factor.calibrated_from) <= ids, f"{profile}: {set(factor.calibrated_from) - ids}"
        if factor.kind.value == "calibrated":
            assert factor.calibrated_from


def test_rows_are_shipped_with_the_package():
    path = calibration.rows_path()
    assert path.parent == catalog.data_dir("measurements")
    assert path.is_file()


def test_every_row_has_one_role_and_an_si_value():
    keys = [calibration.row_key(r) for r in calibration.load_rows()]
    assert len(keys) == len(set(keys))
    for row in calibration.load_rows():
        roles = [bool(row.get("fits")), bool(row.get("check_only")), bool(row.get("gap"))]
        assert sum(roles) == 1, row["id"]
        assert row["measured_si"] > 0 and np.isfinite(row["measured_si"]), row["id"]
        assert row["predict"]["kind"] in calibration.PREDICTORS, row["id"]
        if row.get("check_only"):
            assert row.get("check_reason"), row["id"]


def test_rows_are_verbatim_copies_and_every_reference_row_is_accounted_for():
    reference = {r["id"]: r for path in (REFERENCE_ROWS, EXPERT_LOAD_ROWS, BLACKWELL_ROWS)
                 for r in json.loads(path.read_text(encoding="utf-8"))}
    document = calibration.load_document()
    for row in document["rows"]:
        original = reference[row["id"]]
        assert {k: row[k] for k in original} == original, row["id"]
    used = {r["id"] for r in document["rows"]}
    excluded = {e["id"] for e in document["excluded"]}
    assert not used & excluded
    assert used | excluded == set(reference)
    assert all(len(e["reason"]) > 20 for e in document["excluded"])


def test_every_blackwell_hopper_row_is_a_row_or_excluded_once():
    """Each of the 336 ids of gpu_blackwell_hopper.json is exactly one shipped row or one exclusion."""
    ids = [r["id"] for r in json.loads(BLACKWELL_ROWS.read_text(encoding="utf-8"))]
    assert len(ids) == len(set(ids)) == 336
    document = calibration.load_document()
    rows = [r["id"] for r in document["rows"] if r["id"] in set(ids)]
    excluded = [e["id"] for e in document["excluded"] if e["id"] in set(ids)]
    assert len(rows) == len(set(rows)) and len(excluded) == len(set(excluded))
    assert sorted(rows + excluded) == sorted(ids)



def _sections(table: dict, path: str = ""):
    """Every table of a parsed TOML document (arrays of tables included), with its dotted path."""
    yield path, table
    for key, value in table.items():
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, dict):
                yield from _sections(item, f"{path}.{key}" + (f"[{i}]" if isinstance(value, list) else ""))


@pytest.mark.parametrize("profile", PROFILES)
def test_a_section_with_calibrated_from_is_tagged_calibrated(profile):
    """Provenance stays consistent: a section naming the rows it was fitted on is ``kind = "calibrated"``
    (a section mixing fitted and assumed fields says which are assumed on their own lines), and a
    section tagged ``calibrated`` names its rows.  Scans the raw TOML, so a new section is covered too."""
    document = tomllib.loads(catalog.hardware(profile).path.read_text(encoding="utf-8"))
    for path, section in _sections(document):
        if section.get("calibrated_from"):
            kind = section.get("kind")
            assert kind == "calibrated", f"{profile}{path}: calibrated_from but kind {kind!r}"
        if section.get("kind") == "calibrated":
            assert section.get("calibrated_from"), f"{profile}{path}: calibrated without rows"


# --------------------------------------------------------------------------- Ascend kernels, overlap (B*, C*)


def test_every_ascend_kernel_and_gpu_overlap_row_is_accounted_for():
    """Rows B* (Ascend kernels, communication, core split) and C* (GPU overlap) of the research notes:
    each is a row of measurements/calibration.json (fit, check, bound or gap) or excluded with a reason."""
    pinned = {r["id"] for r in json.loads(EXPERT_LOAD_ROWS.read_text(encoding="utf-8")) if r["id"][0] in "BC"}
    assert len(pinned) == 44  # 27 B* + 17 C* rows in ../shared/reference/kernels/ascend_expert_load_overlap.json
    document = calibration.load_document()
    used = {r["id"] for r in document["rows"] if r["id"][0] in "BC" and r["id"][1] == "_"}
    excluded = {e["id"] for e in document["excluded"] if e["id"][0] in "BC" and e["id"][1] == "_"}
    assert used | excluded == pinned and not used & excluded
    assert {"B_l1", "B_l2", "C_o1"} <= used


def test_core_split_exponent_is_the_mean_log2_slowdown_of_b_l1():
    """Least squares of log(f ** -a / s_i) over the B_l1 ops at f = 1/2 has the closed form
    a = mean(log2 s_i) (s_i = t(12C/24V) / t(24C/48V)): 0.434 (2 ** a = 1.35)."""
    b_l1 = next(r for r in json.loads(EXPERT_LOAD_ROWS.read_text(encoding="utf-8")) if r["id"] == "B_l1")
    a = float(np.mean([np.log2(t12 / t24) for t12, t24 in b_l1["value"].values()]))
    assert a == pytest.approx(0.4339, abs=1e-4)
    hw = catalog.hardware("cloudmatrix384")
    assert hw.overlap.core_split_exponent == pytest.approx(a, abs=5e-4)
    assert calibration.fit("cloudmatrix384")["overlap.core_split_exponent"] == pytest.approx(a, rel=1e-4)
    # B_l2: 16 + 32 of 24 + 48 cores for attention, 8 + 16 for the MoE stream
    assert hw.overlap.attention_core_frac == pytest.approx(16 / 24, abs=5e-4)
    assert hw.overlap.moe_core_frac == pytest.approx(8 / 24, abs=5e-4)


def test_atlas_a2_overlap_is_the_a3_one():
    """The A2 die's [overlap] is assumed equal to CloudMatrix384's (same 24 AIC / 48 AIV; no A2 row)."""
    assert catalog.hardware("atlas-800-a2").overlap == catalog.hardware("cloudmatrix384").overlap
