"""JSON Schemas of the reports: real reports validate, a report missing a required key does not.

``jsonschema`` (dev extra) is the validator: the schemas themselves are checked against the
draft 2020-12 metaschema, then each real report (evaluate on the example layouts, plan on a
small scenario and an infeasible one, check, validate) is validated.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from planner.ops import schemas

jsonschema = pytest.importorskip("jsonschema")

SMALL_PLAN = ("plan", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--dies", "16", "--weights-dtype", "fp8",
              "--activations-dtype", "fp8", "--top", "5")
EXAMPLES = ("examples/llama-3.1-70b-h100-collocated.toml", "examples/deepseek-v3-h800-pd.toml",
            "examples/deepseek-v3-cloudmatrix384-transformerless.toml")


def _validator(name: str):
    return jsonschema.Draft202012Validator(schemas.schema(name))


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory, run_planner, validate_run) -> dict[str, list[dict]]:
    """Real reports by schema name, from the CLI."""
    baseline = tmp_path_factory.mktemp("schema") / "base.json"
    plan = run_planner(*SMALL_PLAN, "--json", str(baseline))
    assert plan.returncode == 0, plan.stderr
    infeasible = run_planner(*SMALL_PLAN, "--tpot-s", "0.001", "--json", "-")
    assert infeasible.returncode == 3, infeasible.stderr
    check = run_planner("check", str(baseline), "--json", "-")
    assert check.returncode == 0, check.stderr
    evaluate = [run_planner("evaluate", path, "--json", "-") for path in EXAMPLES]
    assert all(run.returncode == 0 for run in evaluate), [run.stderr for run in evaluate]
    return {"plan": [json.loads(baseline.read_text()), infeasible.json()], "check": [check.json()],
            "evaluate": [run.json() for run in evaluate], "validate": [validate_run.json()]}


@pytest.mark.parametrize("name", sorted(schemas.SCHEMAS))
def test_schema_is_valid_draft_2020_12(name):
    schema = schemas.schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "schema_version" in schema["required"]


@pytest.mark.parametrize("name", sorted(schemas.SCHEMAS))
def test_real_reports_validate(reports, name):
    for doc in reports[name]:
        _validator(name).validate(doc)


def test_reports_cover_the_optional_parts(reports):
    """The sample covers null prefill, near misses, both pool kinds and every row role."""
    assert {doc["prefill"] is None for doc in reports["evaluate"]} == {True, False}
    assert reports["plan"][1]["near_misses"] and not reports["plan"][1]["layouts"]
    assert {r["role"] for r in reports["validate"][0]["rows"]} >= {"fit", "check", "upper_bound", "gap", "system"}


def test_check_report_with_changes_validates(reports):
    """A check report with a changed layout, metric changes and a changed data file."""
    from planner.ops.check import compare

    base = reports["plan"][0]
    now = copy.deepcopy(base)
    now["layouts"][0]["goodput_requests_per_s"] *= 0.5
    now["layouts"][0]["layout"]["decode"]["batch"] += 1
    now["data_files"] = {k: "0" * 64 for k in base["data_files"]}
    report = compare(base, now, 0.05, "base.json")
    assert report["verdict"] == "regression" and report["data_files_changed"]
    _validator("check").validate(json.loads(json.dumps(report)))
    _validator("check").validate(compare(base, {**now, "layouts": []}, 0.05, "base.json"))


@pytest.mark.parametrize("name", sorted(schemas.SCHEMAS))
def test_report_missing_a_required_key_fails(reports, name):
    schema = schemas.schema(name)
    for key in schema["required"]:
        doc = copy.deepcopy(reports[name][0])
        del doc[key]
        with pytest.raises(jsonschema.ValidationError, match=key):
            _validator(name).validate(doc)


@pytest.mark.parametrize("name", sorted(schemas.SCHEMAS))
def test_nested_drift_and_wrong_version_fail(reports, name):
    doc = copy.deepcopy(reports[name][0])
    doc["schema_version"] += 1
    assert not _validator(name).is_valid(doc)
    doc = copy.deepcopy(reports[name][0])
    doc["unexpected_key"] = 1
    assert not _validator(name).is_valid(doc)


@pytest.mark.parametrize("name", sorted(schemas.SCHEMAS))
def test_planner_schema_prints_the_schema(run_planner, name):
    run = run_planner("schema", name)
    assert run.returncode == 0 and run.stderr == ""
    assert json.loads(run.stdout) == schemas.schema(name)


def test_unknown_schema_name_exits_2_listing_the_names(run_planner):
    run = run_planner("schema", "nope")
    assert run.returncode == 2
    line = run.stderr_line()
    assert all(name in line for name in ("plan", "evaluate", "check", "validate"))


def test_schemas_module_documents_the_version_rule():
    assert "bumped on any breaking change" in " ".join((schemas.__doc__ or "").split())
    assert Path(schemas.__file__).name == "schemas.py"
