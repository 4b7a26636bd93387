"""The core never imports typer or rich: only planner.cli and the planner.report package may.

This needs a fresh interpreter (the test process has typer and rich loaded already), so it is one
of the few ``subprocess`` tests.  One probe process imports in two stages and reports the UI
modules loaded after each: the input layer and the catalog first, then every other core module.
Then it runs ``planner evaluate EXAMPLE --json - --samples 0``: a run that prints only JSON builds
no table and never loads rich (planner.cli imports planner.report when it prints a table; ~0.02 s
of every ``plan --json -``).
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import planner

UI_PACKAGES = ("typer", "rich", "click")
UI_MODULES = {"planner.cli", "planner.report", "planner.__main__"}
FIRST_STAGE = ("planner.inputs.files", "planner.catalog", "planner.inputs.model")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "deepseek-v3-cloudmatrix384-pd.toml"

# argv: the first-stage modules, "--", the rest; prints the UI modules loaded after each stage.
PROBE = """
import importlib, json, sys
split = sys.argv.index("--")
loaded = []
for stage in (sys.argv[1:split], sys.argv[split + 1:]):
    for name in stage:
        importlib.import_module(name)
    loaded.append(sorted(m for m in sys.modules if m.split(".")[0] in {ui!r}))
import contextlib, io
import planner.cli
sys.argv = ["planner", "evaluate", {example!r}, "--json", "-", "--samples", "0"]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        planner.cli.main()
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
assert json.loads(out.getvalue())["layout"]
loaded.append(sorted(m for m in sys.modules if m.split(".")[0] == "rich"))
print(json.dumps(loaded))
"""


def _core_modules() -> list[str]:
    """Every planner module except the CLI and the report renderer."""
    return [m.name for m in pkgutil.walk_packages(planner.__path__, "planner.")
            if m.name not in UI_MODULES and not m.name.startswith("planner.report.")]


@pytest.mark.subprocess
def test_no_core_module_imports_ui() -> None:
    core = _core_modules()
    assert core, "no core modules found"
    assert set(FIRST_STAGE) <= set(core)
    code = PROBE.format(ui=set(UI_PACKAGES), example=str(EXAMPLE))
    proc = subprocess.run([sys.executable, "-c", code, *FIRST_STAGE, "--", *core], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    after_inputs, after_core, after_json_run = json.loads(proc.stdout)
    assert after_inputs == [], f"the input layer or the catalog imports {after_inputs}"
    assert after_core == [], f"a core module imports {after_core}"
    assert after_json_run == [], f"a --json - run loads {after_json_run}"
