"""Shared fixtures: a minimal valid hardware profile and model card, a TOML writer, and the CLI.

The dicts match ``HardwareFile`` / ``ModelFile`` exactly; tests deep-copy them, change one
field, and write them to ``tmp_path`` (never to ``hardware_profiles/`` or ``models/``).

``run_planner(*args)`` runs the command line in this interpreter (see :func:`_run_planner`): a
fresh interpreter per call cost ~0.6 s of start-up each, most of the suite's time.  The few tests
that need a real process (the ``python -m planner`` entry point, import-time checks) are marked
``subprocess``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = "tests/conftest.py fixture (made-up numbers)"

PROFILE: dict[str, Any] = {
    "schema_version": 1,
    "name": "test-npu",
    "description": "Minimal test profile: two dies per chip, bf16 and int8 only (no fp8)",
    "chip": "Test NPU",
    "dies_per_chip": 2,
    "num_dies": 32,
    "source": SRC,
    "peak": {"source": SRC, "bf16_flops_per_s": 376e12, "int8_flops_per_s": 752e12},
    "memory": {"source": SRC, "hbm_bytes": 64e9, "hbm_bandwidth_bytes_per_s": 1.6e12},
    "memory_reserve": {"source": SRC, "kind": "assumed", "usable_frac": 0.9,
                       "comm_buffer_bytes": 0.5e9, "runtime_reserved_bytes": 2e9},
    "efficiency": {
        "gemm": {"source": SRC, "kind": "assumed", "max_frac": 0.7, "m_half_tokens": 64.0,
                 "k_half": 256.0},
        "attention": {"source": SRC, "kind": "assumed", "compute_frac": 0.6, "memory_frac": 0.8},
        "memory": {"source": SRC, "kind": "measured", "frac": 0.85},
    },
    "overheads": {"source": SRC, "kind": "assumed", "kernel_s": 5e-6, "eager_launch_s": 20e-6,
                  "scheduler_gap_s": 1e-3},
    "collectives": {"source": SRC, "kind": "assumed", "dispatch_s": 20e-6, "combine_s": 20e-6,
                    "p2p_s": 10e-6, "collective_s": 10e-6},
    "fabrics": [
        {"source": SRC, "name": "d2d", "scope": "chip", "dies": 2,
         "bandwidth_bytes_per_s": 200e9, "latency_s": 1e-6,
         "efficiency": {"source": SRC, "kind": "assumed", "max_frac": 0.8}},
        {"source": SRC, "name": "ub", "scope": "pod", "dies": 32,
         "bandwidth_bytes_per_s": 196e9, "latency_s": 2e-6,
         "efficiency": {"source": SRC, "kind": "calibrated", "calibrated_from": ["test-row-1"],
                        "max_frac": 0.75, "decay_start_ranks": 8.0, "decay": 0.3}},
    ],
}

MODEL: dict[str, Any] = {
    "schema_version": 1,
    "name": "tiny-moe",
    "display_name": "Tiny MoE (test)",
    "architecture": "TinyMoeForCausalLM",
    "source": SRC,
    "native_dtype": "bf16",
    "num_layers": 4,
    "hidden_size": 256,
    "vocab_size": 1000,
    "max_position_embeddings": 4096,
    "num_mtp_layers": 1,
    "attention": {"kind": "gqa", "num_heads": 8, "num_kv_heads": 2, "head_dim": 32},
    "ffn": {"dense_intermediate_size": 512, "dense_layers": [0], "moe_intermediate_size": 128,
            "num_routed_experts": 8, "num_shared_experts": 1,
            "shared_expert_intermediate_size": 128, "top_k": 2},
    # Derived by ModelSpec.param_counts(): total 4,223,232; active 2,197,760;
    # MTP 1,182,976 (counted apart).
    "params": {"source": SRC, "reported_total": 4.22e6, "reported_active": 2.2e6,
               "active_includes_embedding": False},
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Minimal TOML writer for the fixture dicts (scalars, lists, tables, arrays of tables)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items()
             if not isinstance(v, dict) and not _is_table_list(v)]
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            lines.append(f"\n[{name}]")
            lines.append(to_toml(value, f"{name}.").strip("\n"))
        elif _is_table_list(value):
            for item in value:
                lines.append(f"\n[[{name}]]")
                lines.append(to_toml(item, f"{name}.").strip("\n"))
    return "\n".join(line for line in lines if line) + "\n"


def _write_toml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(to_toml(data), encoding="utf-8")
    return path


@pytest.fixture
def write_toml() -> Callable[[Path, dict[str, Any]], Path]:
    """``write_toml(path, data) -> path``: write a fixture dict as TOML."""
    return _write_toml


@pytest.fixture
def profile_dict() -> dict[str, Any]:
    """A fresh, mutable copy of the minimal valid hardware profile."""
    return copy.deepcopy(PROFILE)


@pytest.fixture
def model_dict() -> dict[str, Any]:
    """A fresh, mutable copy of the minimal valid model card."""
    return copy.deepcopy(MODEL)


@pytest.fixture
def profile_path(tmp_path: Path) -> Path:
    """The minimal profile written to ``tmp_path/test-npu.toml``."""
    return _write_toml(tmp_path / "test-npu.toml", PROFILE)


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    """The minimal model card written to ``tmp_path/tiny-moe.toml``."""
    return _write_toml(tmp_path / "tiny-moe.toml", MODEL)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="Rewrite tests/golden/*.json from the current code (review the diff).")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


# --------------------------------------------------------------------------- the CLI, in-process

# Wide, colourless output, as the subprocess tests always had.
CLI_ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
DATA_DIR_ENV = "PLANNER_DATA_DIR"


@dataclass(frozen=True)
class Run:
    """Outcome of one CLI invocation."""

    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def stderr_line(self) -> str:
        """The one stderr line of an expected failure (asserts there is exactly one)."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {self.stderr!r}"
        assert lines[0].strip(), "stderr line is empty"
        return lines[0]


def _exit_status(code: object, stderr: io.StringIO) -> int:
    """The status a process would exit with for ``sys.exit(code)`` (a string is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=stderr)
    return 1


def _run_planner(*args: str, data: Path | None = None, cwd: Path = ROOT) -> Run:
    """``planner ARGS`` through ``planner.cli.main()``, in this interpreter.

    For the call, ``sys.argv``, the environment (``CLI_ENV``; ``PLANNER_DATA_DIR`` set to ``data``,
    else unset), the working directory and stdout/stderr are what a fresh ``python -m planner``
    would see; all are restored afterwards.  An expected failure is a ``SystemExit`` and becomes
    the return code.  Any other exception is a bug: it propagates with its traceback and fails
    the test, where a subprocess would have printed it on stderr.  Module-level caches outlive
    the call (loaded files are keyed by path and mtime, so an edited file is re-read);
    tests/cli/test_smoke.py checks a fresh process prints the same plan.
    """
    from planner import cli

    env = {k: v for k, v in os.environ.items() if k != DATA_DIR_ENV} | CLI_ENV
    if data is not None:
        env[DATA_DIR_ENV] = str(data)
    out, err = io.StringIO(), io.StringIO()
    code: object = 0  # main() always calls sys.exit; returning would be status 0 in a process
    with (mock.patch.dict(os.environ, env, clear=True), mock.patch.object(sys, "argv", ["planner", *args]),
          contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err)):
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code
    return Run(_exit_status(code, err), out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def run_planner() -> Callable[..., Run]:
    """``run_planner(*args, data=None, cwd=ROOT) -> Run``: the CLI in-process (monkeypatches apply)."""
    return _run_planner


@pytest.fixture(scope="session")
def default_plan(tmp_path_factory: pytest.TempPathFactory, run_planner: Callable[..., Run]) -> Path:
    """The default scenario's ``planner plan --json -`` (the suite's slowest plan) in a file, run once.

    tests/search/test_plan.py compares it with the golden file; tests/ops/test_check.py uses it
    as the baseline of a ``check`` on an edited copy of the same data files.
    """
    run = run_planner("plan", "--json", "-")
    assert run.returncode == 0, run.stderr
    path = tmp_path_factory.mktemp("default-plan") / "default.json"
    path.write_text(run.stdout, encoding="utf-8")
    return path


# The small Qwen3-30B-A3B plan (16 H100 dies, fp8): the same command in tests/search/test_plan.py
# (identical across runs), tests/cli/test_smoke.py (identical in a fresh process) and
# tests/ops/test_schema.py (a real plan report and the baseline of a real check).
SMALL_PLAN_JSON = ("plan", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--dies", "16", "--pods", "2",
                   "--weights-dtype", "fp8", "--activations-dtype", "fp8", "--json", "-")


@pytest.fixture(scope="session")
def small_plan_args() -> tuple[str, ...]:
    """:data:`SMALL_PLAN_JSON`, the arguments of ``small_plan``."""
    return SMALL_PLAN_JSON


@pytest.fixture(scope="session")
def small_plan(run_planner: Callable[..., Run]) -> Run:
    """``planner plan ... --json -`` of :data:`SMALL_PLAN_JSON`, run once per worker."""
    run = run_planner(*SMALL_PLAN_JSON)
    assert run.returncode == 0, run.stderr
    return run


# --------------------------------------------------------------------------- library plans, priced once per worker

_PLANS: list[tuple[Any, dict[str, Any], Any]] = []


def _shared_plan(scenario: Any, **kwargs: Any) -> Any:
    """``planner.search.plan.plan(scenario, **kwargs)``, priced once per worker for equal arguments.

    ``plan`` is a pure function of its arguments (tests/search/test_plan.py checks two runs give the
    same JSON, tests/cli/test_smoke.py a fresh process), so tests that only read a plan share one:
    the same small scenario was priced by five tests in three modules.  Scenarios are compared with
    ``==`` less their ``assumed`` field (the fields nobody gave, for the report's header; the search
    never reads it), so a flag given at its default value is the same plan; keyword arguments are
    compared after defaults are applied.  The result is shared: read it, never change it.
    """
    import dataclasses
    import inspect

    from planner.search.plan import plan

    bound = inspect.signature(plan).bind(scenario, **kwargs)
    bound.apply_defaults()
    args = {k: v for k, v in bound.arguments.items() if k != "scenario"}
    key = dataclasses.replace(scenario, assumed=())
    for other, other_args, result in _PLANS:
        try:
            same = other_args == args and other == key
        except ValueError:  # a field holds an array (a measured expert-load matrix): not shared
            same = False
        if same:
            return result
    result = plan(scenario, **kwargs)
    _PLANS.append((key, args, result))
    return result


@pytest.fixture(scope="session")
def shared_plan() -> Callable[..., Any]:
    """:func:`_shared_plan`: ``shared_plan(scenario, **plan_kwargs) -> Plan``, priced once per worker."""
    return _shared_plan


# --------------------------------------------------------------------------- xdist: one worker per shared artifact

# The session fixtures above (and ``validate_run`` in tests/ops/conftest.py) are computed once per
# pytest-xdist worker, and the validation predictions are memoized in the process
# (planner.ops.validation.predict), and so are the plans of ``shared_plan``: a user on each worker
# pays each twice (~3 s for the default plan, ~4 s for the validation rows, ~1 s for the small
# scenario's 32-die plan).  Their users go first in the collection order, so
# ``--dist worksteal`` hands them all to the first worker at the start (a worker steals from the
# end of the other's queue); the other tests keep their order.
SHARED_FIXTURES = frozenset({"default_plan", "validate_run", "small_plan", "shared_plan"})
SHARED_MODULES = frozenset({"tests/ops/test_validate.py", "tests/validation/test_public_validation.py"})


def _uses_shared_artifact(item: pytest.Item) -> bool:
    module = item.nodeid.split("::", 1)[0]  # relative to the rootdir, '/'-separated
    return module in SHARED_MODULES or not SHARED_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not _uses_shared_artifact(item))  # stable: each group keeps its order


def _with_instances(layout: Any, prefill: int, decode: int) -> Any:
    return layout.model_copy(update={"prefill": layout.prefill.model_copy(update={"instances": prefill}),
                                     "decode": layout.decode.model_copy(update={"instances": decode})})


@pytest.fixture(scope="session")
def with_instances() -> Callable[[Any, int, int], Any]:
    """``with_instances(layout, prefill, decode)``: the layout with other instance counts (the pools unchanged)."""
    return _with_instances


@pytest.fixture
def pd_example_variants(with_instances):
    """``pd_example_variants(dp, dd)``: the CloudMatrix384 pd example, its scenario, and variants [itself,
    ``dp`` more prefill instances, ``dd`` more (or fewer) decode instances] (the pools unchanged)."""
    from planner.inputs.layout import load_layout, own_scenario

    def build(dp: int, dd: int) -> tuple[Any, list[Any]]:
        layout = load_layout(ROOT / "examples" / "deepseek-v3-cloudmatrix384-pd.toml")
        p, d = layout.prefill.instances, layout.decode.instances
        variants = [layout, with_instances(layout, p + dp, d), with_instances(layout, p, max(d + dd, 1))]
        return own_scenario(layout, None), variants

    return build
