"""Architecture rules read from the source: no import cycles, no reaching into file models.

Both tests parse ``planner/`` as text (``ast``, a regex); nothing is imported, so they hold for
code paths no other test happens to run.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "planner"

Edge = tuple[str, str]  # (importing module, imported module)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def planner_modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package is its ``__init__``)."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` or its longest prefix that is a planner module (``planner.x.f`` -> ``planner.x``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _from_base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(source: str, module: str, modules: dict[str, Path], *, is_package: bool = False
               ) -> Iterator[tuple[str, int]]:
    """(imported planner module, line) for every import in ``source``, at any depth.

    Imports inside functions and ``if TYPE_CHECKING:`` blocks count: they are dependencies too.
    ``from planner.x import y`` depends on ``planner.x.y`` when that is a module, else on
    ``planner.x``.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [_known(alias.name, modules) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, module, is_package)
            targets = [_known(f"{base}.{alias.name}", modules) for alias in node.names]
        else:
            continue
        for target in targets:
            if target is not None and target != module:
                yield target, node.lineno


def import_graph() -> dict[Edge, str]:
    """Every import edge between planner modules -> where it is (``path:line``)."""
    modules = planner_modules()
    edges: dict[Edge, str] = {}
    for name, path in modules.items():
        source = path.read_text(encoding="utf-8")
        for target, line in imports_of(source, name, modules, is_package=path.name == "__init__.py"):
            edges.setdefault((name, target), f"{path.relative_to(ROOT)}:{line}")
    return edges


def _cycle_through(start: str, succ: dict[str, set[str]]) -> list[str] | None:
    """A shortest import path ``start -> ... -> start``, or None."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(succ.get(node, ())):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return None


def import_cycles(edges: dict[Edge, str]) -> list[list[str]]:
    """One cycle per group of mutually importing modules (each module reported once)."""
    succ: dict[str, set[str]] = {}
    for a, b in edges:
        succ.setdefault(a, set()).add(b)
    cycles: list[list[str]] = []
    seen: set[str] = set()
    for start in sorted(succ):
        if start in seen:
            continue
        cycle = _cycle_through(start, succ)
        if cycle:
            cycles.append(cycle)
            seen.update(cycle)
    return cycles


def test_import_graph_sees_every_kind_of_import() -> None:
    """The parser itself: absolute, relative, submodule and function-level imports are edges."""
    modules = dict.fromkeys(["planner", "planner.a", "planner.b", "planner.pkg", "planner.pkg.c"], Path())
    source = ("import planner.a\nfrom planner import b\nfrom .pkg import c\nfrom planner.pkg import helper\n"
              "import numpy\ndef f():\n    from planner.a import g\n")
    assert sorted(imports_of(source, "planner.x", modules)) == [
        ("planner.a", 1), ("planner.a", 7), ("planner.b", 2), ("planner.pkg", 4), ("planner.pkg.c", 3)]
    assert list(imports_of("from . import a\n", "planner", modules, is_package=True)) == [("planner.a", 1)]
    assert import_cycles({("a", "b"): "", ("b", "c"): "", ("c", "a"): "", ("c", "d"): ""}) == [["a", "b", "c", "a"]]


def test_no_import_cycles() -> None:
    edges = import_graph()
    assert ("planner.cli", "planner.catalog") in edges, "the import graph is missing known edges"
    cycles = import_cycles(edges)
    report = ["  " + " -> ".join(cycle) + "\n    " + ", ".join(edges[e] for e in zip(cycle, cycle[1:], strict=False))
              for cycle in cycles]
    assert not cycles, "import cycles (module chain, then where each import is):\n" + "\n".join(report)


# Domain objects (HardwareSpec, ModelSpec, Scenario, ...) keep their pydantic file model in
# ``.file``; only planner/inputs/ may read it, everything else goes through the domain object.
FILE_ACCESS = re.compile(r"\.file\b")


def test_only_inputs_reads_the_file_models() -> None:
    inputs = PACKAGE / "inputs"
    offending = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                 for path in sorted(PACKAGE.rglob("*.py")) if inputs not in path.parents
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if FILE_ACCESS.search(line)]
    assert not offending, f"{len(offending)} lines outside planner/inputs/ use .file:\n" + "\n".join(offending)
