"""JSON Schemas of the reports: generated from the report models, real reports validate, drift fails.

``jsonschema`` (dev extra) is the validator: the schemas themselves are checked against the
draft 2020-12 metaschema, then each real report (evaluate on the example layouts, plan on a
small scenario and an infeasible one, check, validate) is validated, and read back by its model.
"""

from __future__ import annotations

import copy
import json
from functools import cache

import pytest

from planner.documents import ReportName, report_model, schema
from planner.documents.base import SCHEMA_VERSION

jsonschema = pytest.importorskip("jsonschema")

SMALL_PLAN = ("plan", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--dies", "16", "--pods", "2",
              "--weights-dtype", "fp8", "--activations-dtype", "fp8", "--top", "5")
EXAMPLES = ("examples/llama-3.1-70b-h100-collocated.toml", "examples/deepseek-v3-h800-pd.toml",
            "examples/deepseek-v3-cloudmatrix384-transformerless.toml")
NAMES = [name.value for name in ReportName]


@cache
def _validator(name: str):
    """One validator per report (a validator keeps no state between calls; generating the schema from
    its model takes ~20 ms, and the missing-key test validates once per required key)."""
    return jsonschema.Draft202012Validator(schema(name))


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory, run_planner, validate_run, small_plan) -> dict[str, list[dict]]:
    """Real reports by schema name, from the CLI (the plan is the session's ``small_plan``: SMALL_PLAN
    with ``--json -``, run once for this test, tests/search/test_plan.py and tests/cli/test_smoke.py)."""
    baseline = tmp_path_factory.mktemp("schema") / "base.json"
    baseline.write_text(small_plan.stdout, encoding="utf-8")
    infeasible = run_planner(*SMALL_PLAN, "--tpot-s", "0.001", "--json", "-")
    assert infeasible.returncode == 3, infeasible.stderr
    check = run_planner("check", str(baseline), "--json", "-")
    assert check.returncode == 0, check.stderr
    evaluate = [run_planner("evaluate", path, "--json", "-") for path in EXAMPLES]
    assert all(run.returncode == 0 for run in evaluate), [run.stderr for run in evaluate]
    sensitivity = run_planner("sensitivity", "--layout", EXAMPLES[0], "--json", "-")
    assert sensitivity.returncode == 0, sensitivity.stderr
    return {"plan": [json.loads(baseline.read_text()), infeasible.json()], "check": [check.json()],
            "evaluate": [run.json() for run in evaluate], "validate": [validate_run.json()],
            "sensitivity": [sensitivity.json()]}


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_draft_2020_12_and_pins_the_one_version(name):
    doc = schema(name)
    jsonschema.Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "schema_version" in doc["required"]
    assert doc["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert doc["$id"].endswith(f":{name}:v{SCHEMA_VERSION}")


@pytest.mark.parametrize("name", NAMES)
def test_real_reports_validate_and_read_back_to_the_same_json(reports, name):
    model = report_model(name)
    for doc in reports[name]:
        _validator(name).validate(doc)
        text = json.dumps(doc, sort_keys=True, indent=2) + "\n"
        assert model.model_validate_json(text).to_json() == text


def test_reports_cover_the_optional_parts(reports):
    """The sample covers null prefill, near misses, both pool kinds and every row role."""
    assert {doc["prefill"] is None for doc in reports["evaluate"]} == {True, False}
    assert reports["plan"][1]["near_misses"] and not reports["plan"][1]["layouts"]
    assert {r["role"] for r in reports["validate"][0]["rows"]} >= {"fit", "check", "upper_bound", "gap", "system"}


def test_check_report_with_changes_validates(reports):
    """A check report with a changed layout, metric changes and a changed data file."""
    from planner.documents.plan import PlanReport
    from planner.ops.check import compare

    base = reports["plan"][0]
    now = copy.deepcopy(base)
    now["layouts"][0]["goodput_requests_per_s"] *= 0.5
    now["layouts"][0]["layout"]["decode"]["batch"] += 1
    now["data_files"] = {k: "0" * 64 for k in base["data_files"]}
    b, n = PlanReport.model_validate(base), PlanReport.model_validate(now)
    report = compare(b, n, 0.05, "base.json")
    assert report.verdict == "regression" and report.data_files_changed
    _validator("check").validate(json.loads(report.to_json()))
    _validator("check").validate(json.loads(compare(b, n.model_copy(update={"layouts": []}), 0.05, "x").to_json()))


@pytest.mark.parametrize("name", NAMES)
def test_report_missing_a_required_key_fails(reports, name):
    for key in schema(name)["required"]:
        doc = copy.deepcopy(reports[name][0])
        del doc[key]
        with pytest.raises(jsonschema.ValidationError, match=key):
            _validator(name).validate(doc)


@pytest.mark.parametrize("name", NAMES)
def test_nested_drift_and_wrong_version_fail(reports, name):
    doc = copy.deepcopy(reports[name][0])
    doc["schema_version"] += 1
    assert not _validator(name).is_valid(doc)
    doc = copy.deepcopy(reports[name][0])
    doc["unexpected_key"] = 1
    assert not _validator(name).is_valid(doc)


@pytest.mark.parametrize("name", NAMES)
def test_planner_schema_prints_the_schema(run_planner, name):
    run = run_planner("schema", name)
    assert run.returncode == 0 and run.stderr == ""
    assert json.loads(run.stdout) == schema(name)


def test_unknown_schema_name_exits_2_listing_the_names(run_planner):
    run = run_planner("schema", "nope")
    assert run.returncode == 2
    line = run.stderr_line()
    assert all(name in line for name in NAMES)


def test_the_version_rule_is_documented_with_the_version():
    from planner.documents import base

    assert "bumped on any breaking change" in " ".join((base.__doc__ or "").split())
