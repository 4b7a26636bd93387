"""``planner check``: a saved plan baseline re-planned on an edited copy of the data files.

The baseline is DeepSeek-V3 on a 64-die slice of CloudMatrix384 (the default scenario with
``--dies 64``: ~1 s per plan).  Raising the profile's HBM bandwidth by 20% gains 17%: reported as
an improvement, exit 0.  Lowering it by 20% is checked once, on the default scenario itself (the
acceptance case, last test): a regression, exit 1, naming the file (text, stderr line and JSON
report from the one re-plan), and restoring the file passes.  Each re-plan is a whole ``plan``,
so the suite runs each case once (the suite stays under a minute on the 2-core machine).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.documents.plan import PlanReport
from planner.ops.check import GATED_METRIC, compare

PROFILE_FILE = "hardware_profiles/cloudmatrix384.toml"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, run_planner, copy_shipped_data) -> Path:
    """``planner plan --dies 64 --json base.json`` written with a pristine copy of the data."""
    root = tmp_path_factory.mktemp("baseline")
    data = copy_shipped_data(root / "data")
    path = root / "base.json"
    run = run_planner("plan", "--dies", "64", "--json", str(path), data=data)
    assert run.returncode == 0, run.stderr
    return path


def test_baseline_records_what_check_needs(baseline):
    doc = json.loads(baseline.read_text())
    assert doc["modes"] == ["collocated", "pd", "transformerless"] and doc["top"] == 10
    assert PROFILE_FILE in doc["data_files"] and "models/deepseek-v3.toml" in doc["data_files"]


def test_higher_hbm_bandwidth_is_reported_as_an_improvement(baseline, data, run_planner, scale_hbm):
    scale_hbm(data, "cloudmatrix384", 1.2)
    run = run_planner("check", str(baseline), data=data)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "improvement" in run.stdout and PROFILE_FILE in run.stdout


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _edited(baseline: Path, tmp_path: Path, edit) -> Path:
    doc = json.loads(baseline.read_text())
    edit(doc)
    return _write(tmp_path / "edited.json", json.dumps(doc))


@pytest.mark.parametrize(("edit", "field"), [
    (lambda d: d.pop("data_files"), "data_files"),
    (lambda d: d.update(schema_version=99), "schema_version"),
    (lambda d: d["layouts"][0].pop("goodput_requests_per_s"), "layouts[0].goodput_requests_per_s"),
    (lambda d: d["scenario"].update(dies="many"), "dies"),
    (lambda d: d.update(modes=["bogus"]), "modes"),
])
def test_malformed_baseline_exits_2_naming_file_and_field(baseline, tmp_path, edit, field, run_planner):
    run = run_planner("check", str(_edited(baseline, tmp_path, edit)))
    assert run.returncode == 2
    line = run.stderr_line()
    assert "edited.json" in line and field in line and "Traceback" not in run.stderr


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_unreadable_baseline_exits_2_with_one_line(tmp_path, text, run_planner):
    run = run_planner("check", str(_write(tmp_path / "bad.json", text)))
    assert run.returncode == 2 and "bad.json" in run.stderr_line()


def test_missing_baseline_exits_2(tmp_path, run_planner):
    run = run_planner("check", str(tmp_path / "nope.json"))
    assert run.returncode == 2 and "nope.json" in run.stderr_line()


# --------------------------------------------------------------------------- verdict rules (in-process)


def _scaled(doc: dict, factor: float, **layout) -> PlanReport:
    out = json.loads(json.dumps(doc))
    top = out["layouts"][0]
    top["goodput_requests_per_s"] *= factor
    top["layout"]["decode"].update(layout)
    return PlanReport.model_validate(out)


@pytest.fixture(scope="module")
def base_doc(baseline) -> dict:
    return json.loads(baseline.read_text())


@pytest.mark.parametrize(("factor", "layout", "verdict"), [
    (1.0, {}, "ok"),
    (0.97, {}, "ok"),                  # within the 5% tolerance
    (0.90, {}, "regression"),          # best goodput per die down 10%
    (1.50, {}, "ok"),                  # improvement: reported, not failed
    (1.02, {"batch": 8}, "regression"),  # top layout changed without a gain beyond the tolerance
    (1.10, {"batch": 8}, "ok"),        # changed layout explained by a 10% gain
])
def test_verdict_rules(base_doc, factor, layout, verdict):
    report = compare(PlanReport.model_validate(base_doc), _scaled(base_doc, factor, **layout), 0.05, "base.json")
    assert report.verdict == verdict, report.changes


def test_infeasible_now_is_a_regression_and_feasible_again_an_improvement(base_doc):
    base, infeasible = PlanReport.model_validate(base_doc), PlanReport.model_validate({**base_doc, "layouts": []})
    report = compare(base, infeasible, 0.05, "base.json")
    assert report.verdict == "regression" and report.current_metrics is None
    assert report.model_dump(mode="json")["changes"] == [
        {"item": "feasible", "baseline": True, "current": False, "relative_change": None, "effect": "regression"}]
    assert compare(infeasible, base, 0.05, "base.json").verdict == "ok"


def test_baseline_without_modes_and_top_uses_the_plan_defaults(baseline):
    from planner.search.plan import ALL_MODES

    doc = json.loads(baseline.read_text())
    del doc["modes"], doc["top"]
    report = PlanReport.model_validate(doc)
    assert tuple(report.modes) == ALL_MODES and report.top == 10


def test_baseline_is_read_back_unchanged(baseline):
    """A saved plan report read as a PlanReport writes the same bytes: the model is the whole contract."""
    assert PlanReport.model_validate_json(baseline.read_text()).to_json() == baseline.read_text()


def test_default_scenario_lower_hbm_bandwidth_regresses_and_restoring_passes(tmp_path, run_planner, default_plan,
                                                                            copy_shipped_data, scale_hbm):
    """The acceptance case exactly: a baseline of the default scenario (no flags), the shipped
    cloudmatrix384 profile edited on a copy to lower its HBM bandwidth by 20%, then restored.

    The baseline is ``planner plan --json -`` on the shipped files (``default_plan``, shared with
    the golden test); the copy is identical until edited, so ``check`` sees no change before.
    The regressed check also writes its ``--json`` report (the tables still go to stdout), so
    one re-plan checks the text, the one stderr line and the JSON fields.
    """
    data = copy_shipped_data(tmp_path / "data")
    base = default_plan
    original = (data / PROFILE_FILE).read_text()
    scale_hbm(data, "cloudmatrix384", 0.8)
    report = tmp_path / "report.json"
    run = run_planner("check", str(base), "--json", str(report), data=data)
    assert run.returncode == 1, run.stdout + run.stderr
    assert PROFILE_FILE in run.stdout and "REGRESSION" in run.stdout
    line = run.stderr_line()
    assert "regression" in line and PROFILE_FILE in line and "Traceback" not in line
    doc = json.loads(report.read_text())
    assert set(doc) >= {"schema_version", "baseline", "verdict", "tolerance", "changes", "data_files_changed",
                        "baseline_metrics", "current_metrics"}
    assert doc["baseline"] == base.name and doc["verdict"] == "regression" and doc["tolerance"] == 0.05
    assert doc["data_files_changed"] == [PROFILE_FILE]
    gated = next(c for c in doc["changes"] if c["item"] == GATED_METRIC)
    assert gated["effect"] == "regression" and gated["relative_change"] < -0.05
    for key in ("goodput_requests_per_s", "ttft_s", "tpot_s", "output_tokens_per_s_per_chip"):
        assert doc["baseline_metrics"][key] > 0 and doc["current_metrics"][key] > 0
    assert "/" not in doc["baseline"]  # no absolute paths in machine output
    (data / PROFILE_FILE).write_text(original)
    run = run_planner("check", str(base), data=data)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "none changed" in run.stdout and run.stderr == ""


def test_check_asks_the_baselines_question_again(tmp_path, run_planner, monkeypatch):
    """A baseline of an inverse sizing (--target-rate) under --max-pp 1 and pins (--tp 2 --max-batch 64) is
    re-planned with all of them: the re-plan is handed the saved target, cap and pins (so it ranks by fewest
    dies under the same rules), and on unchanged data the check is ok."""
    import planner.search.plan as search_plan

    path = tmp_path / "base.json"
    args = ("plan", "--model", "llama-3.1-70b", "--hardware", "h100", "--dies", "16", "--pods", "2",
            "--weights-dtype", "fp8", "--activations-dtype", "fp8", "--kv-dtype", "fp8")
    run = run_planner(*args, "--target-rate", "5", "--max-pp", "1", "--tp", "2", "--max-batch", "64",
                      "--json", str(path))
    assert run.returncode == 0, run.stderr
    doc = json.loads(path.read_text())
    assert doc["target_rate_requests_per_s"] == 5.0 and doc["max_pp"] == 1
    assert doc["pinned"] == {"tp": 2, "pp": None, "max_batch": 64}
    assert all(e["layout"]["decode"]["tp"] == 2 and e["layout"]["decode"]["batch"] <= 64 for e in doc["layouts"])
    assert all((e["layout"]["decode"].get("pp") or 1) == 1 for e in doc["layouts"])
    asked: list[dict] = []
    real = search_plan.plan

    def spy(scenario, **kwargs):
        asked.append(kwargs)
        return real(scenario, **kwargs)

    monkeypatch.setattr(search_plan, "plan", spy)
    run = run_planner("check", str(path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert asked and asked[0]["target_rate_per_s"] == 5.0 and asked[0]["max_pp"] == 1
    assert (asked[0]["pins"].tp, asked[0]["pins"].pp, asked[0]["pins"].max_batch) == (2, None, 64)
