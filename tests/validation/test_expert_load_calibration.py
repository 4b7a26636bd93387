"""Expert-load calibration gate: the A* rows and the parameters fitted on them.

- every A* row of the reference notes is used (a fit, check, bound or gap row of
  measurements/calibration.json) or excluded with a reason;
- re-running the fit (planner/ops/expert_load_fit.py) gives the values stored in
  measurements/expert_load.toml, and each calibrated section names exactly the rows it was fitted on;
- each row within its band is gated with the other calibration rows (tests/validation/test_calibration.py);
- the H100 default-vs-perfect prefill ratio (public system rows sgl-h100-prefill-4k and -perfeplb) is
  a check, never a fit: a strict xfail while the model misses it, with the reason.
"""

from __future__ import annotations

import copy

import pytest

from planner.inputs.expert_load import load_params_file
from planner.ops import calibration, expert_load_fit
from planner.ops import validation as system

# Ids of the expert-load rows in ../shared/reference/kernels/ascend_expert_load_overlap.json (there is no A14).
REFERENCE_IDS = {f"A{i:02d}" for i in range(1, 23)} - {"A14"}
REPRODUCE_TOL = 2e-3  # stored with 4 significant digits
PUBLISHED_RATIO = 59337 / 50302  # SGLang H100 prefill, perfect / default EPLB (lmsys blog 2025-05-05)
RATIO_BAND = 0.05                # the acceptance: within 5 points


def a_rows() -> list[dict]:
    return [r for r in calibration.load_rows() if r["id"].startswith("A")]


def test_every_reference_row_is_used_or_excluded() -> None:
    used = {r["id"] for r in a_rows()}
    excluded = {e["id"] for e in calibration.load_document()["excluded"] if e["id"].startswith("A")}
    assert used | excluded == REFERENCE_IDS and not used & excluded
    for e in calibration.load_document()["excluded"]:
        assert len(e["reason"]) > 40, e["id"]


def test_rows_keep_their_source_and_state_what_they_predict() -> None:
    for r in a_rows():
        assert r["source"] and r["verification"] in ("primary", "secondary"), r["id"]
        assert r["predict"]["kind"] in expert_load_fit.PREDICTORS, r["id"]
        assert len(r["predict_note"]) > 40 and r["measured_si"] > 0, r["id"]
        assert sum(bool(r.get(k)) for k in ("fits", "check_only", "gap")) == 1, r["id"]


def test_fit_reproduces_the_stored_values() -> None:
    file = load_params_file()
    for path, value in expert_load_fit.fit(calibration.load_rows()).items():
        section, key = path.split(".")
        stored = getattr(getattr(file, section), key)
        assert stored == pytest.approx(value, rel=REPRODUCE_TOL), f"{path}: stored {stored:.6g}, fit gives {value:.6g}"


def test_calibrated_from_names_exactly_the_rows_fitted() -> None:
    file = load_params_file()
    fitted: dict[str, set[str]] = {}
    for r in expert_load_fit.fit_rows(calibration.load_rows()):
        for path in r["fits"][expert_load_fit.TARGET]:
            fitted.setdefault(path.split(".")[0], set()).add(calibration.row_key(r))
    for section in ("skew", "mismatch", "drift", "dp_imbalance"):
        sec = getattr(file, section)
        assert sec.kind == "calibrated", section
        assert set(sec.calibrated_from) == fitted[section], section


def test_every_gated_row_is_inside_its_band() -> None:
    table = {r["key"]: r for r in calibration.calibration_table()}
    for r in a_rows():
        t = table[calibration.row_key(r)]
        if r.get("gap"):
            continue
        if r.get("bound") == "upper":
            assert t["predicted"] <= t["measured"], r["id"]
        elif r.get("known_miss"):  # stays visible with its reason; a miss that now passes loses its mark
            assert abs(t["error"]) > r["tolerance"], (calibration.row_key(r), t["error"], "remove known_miss")
        else:
            assert abs(t["error"]) <= r["tolerance"], (calibration.row_key(r), t["error"], r["band_reason"])


def h100_default_over_perfect() -> float:
    """Predicted perfect / default prefill throughput of the SGLang H100 rows (their own scenarios)."""
    rows = {r["id"]: r for r in system.load_rows()}
    default, perfect = rows["sgl-h100-prefill-4k"], rows["sgl-h100-prefill-4k-perfeplb"]
    return system.predict(copy.deepcopy(perfect)) / system.predict(copy.deepcopy(default))


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "The model gives 72,220 / 68,566 = 1.053 against the published 59,337 / 50,302 = 1.18 (5-point band "
    "1.13-1.23). Default: EPLB in distribution with 32 redundant at EP32 leaves a placement residual of 1.085 at "
    "16,384 tokens per GPU (mismatch cv 0.092 fitted on A03/A04; Poisson noise there is 0.6%); it already "
    "lands on the busiest rank's GEMMs (combine_wait) and on its all-to-all receive (recv_factor), per layer, "
    "averaged over the 58 MoE layers. Perfect: priced as 1.0; SGLang's random expert selection is Poisson "
    "noise only (a measured uniform matrix gives 1.055, further off). Missing: tokens of one prompt route "
    "together, so a prefill step of 128 prompts is far fewer independent draws than its 524K tokens. A03/A04 "
    "were measured at ~4K sequences per decode step, so they do not split the mismatch into a stationary part "
    "and a per-sequence part that grows 32x in variance at 128 prompts: 0% per-sequence gives 1.06, 10% 1.13, "
    "20% 1.19, 100% 1.48 (figures from before the prefill attention's per-query cost made the MoE part of the "
    "step smaller: 1.061 -> 1.053); choosing the split from this ratio would fit on a system row. Settled by per-pass "
    "expert-count matrices at prefill (SGLang's expert-distribution recorder per forward pass, 4K prompts, "
    "16K tokens/GPU) or any rank balancedness measured with the same EPLB statistics at two sequence counts."))
def test_h100_default_vs_perfect_prefill_ratio() -> None:
    assert h100_default_over_perfect() == pytest.approx(PUBLISHED_RATIO, abs=RATIO_BAND)
