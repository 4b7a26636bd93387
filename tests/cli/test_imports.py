"""The core never imports typer or rich: only planner.cli and the planner.report package may."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import planner

UI_PACKAGES = ("typer", "rich", "click")
UI_MODULES = {"planner.cli", "planner.report", "planner.__main__"}

PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {ui!r})))
"""


def _ui_modules_loaded_by(*modules: str) -> list[str]:
    code = PROBE.format(ui=set(UI_PACKAGES))
    proc = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_spec_and_catalog_do_not_import_ui() -> None:
    assert _ui_modules_loaded_by("planner.spec.files", "planner.catalog",
                                 "planner.spec.model") == []


def test_no_core_module_imports_ui() -> None:
    """Every planner module except the CLI and the report renderer."""
    core = [m.name for m in pkgutil.walk_packages(planner.__path__, "planner.")
            if m.name not in UI_MODULES and not m.name.startswith("planner.report.")]
    assert core, "no core modules found"
    assert _ui_modules_loaded_by(*core) == []
