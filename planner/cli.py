"""Command-line interface: parse flags, call one library function, render.  No math here."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from planner import catalog, outputs
from planner.decide.failures import FailureKind
from planner.decide.plan import RankBy
from planner.documents import ReportName
from planner.documents.base import payload_json
from planner.errors import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, NumericOverflowError, PlannerError
from planner.inputs.layout import Mode, own_scenario
from planner.inputs.scenario import ExpertBalance, scenario_overrides
from planner.units import Dtype

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Capacity planner for serving large MoE LLMs on SuperPod-scale hardware.")
profiles_app = typer.Typer(no_args_is_help=True, help="Hardware profiles.")
models_app = typer.Typer(no_args_is_help=True, help="Model cards.")
app.add_typer(profiles_app, name="profiles")
app.add_typer(models_app, name="models")

PROG = "planner"

NameOrPath = Annotated[str, typer.Argument(
    metavar="NAME|PATH", help="A shipped name (see 'list') or a path to a .toml file.", show_default=False)]
Paths = Annotated[list[str], typer.Argument(metavar="PATH...", help="Files to validate.", show_default=False)]
JsonOut = Annotated[str | None, typer.Option("--json", metavar="PATH|-", help=(
    "Also write JSON (sorted keys) to PATH (an existing file is kept unless --force); '-': only JSON, to stdout."))]


def force_flag(files: str) -> Any:
    """The ``--force`` option of a command that writes ``files`` (README: "Output files are never replaced")."""
    return Annotated[bool, typer.Option("--force", help=(
        f"Replace {files}; without it an existing file is an error and nothing is written."))]


ForceJson = force_flag("an existing --json file")
ForceOutput = force_flag("an existing --output file")
ForceEvaluate = force_flag("existing --json, --plot and --plot-load files")
ForcePlan = force_flag(
    "existing --json and --plot files and files (or links, never their targets) in --write-layouts DIR")
ForceSensitivity = force_flag("existing --json and --plot files")

# Scenario flags shared by `plan` and `evaluate`, declared once (None = not given: the scenario's
# value stays).  `scenario_flags` adds them to a command, which receives them as `overrides`.
SCENARIO_FLAGS: dict[str, Any] = {
    "model": Annotated[str | None, typer.Option(help="Model card name or path.")],
    "hardware": Annotated[str | None, typer.Option(help="Hardware profile name or path.")],
    "dies": Annotated[int | None, typer.Option(help="Die budget (default: every die of the pods).")],
    "pods": Annotated[int | None, typer.Option(help=(
        "Scale-up domains (pods) to plan on: CloudMatrix384s, NVL72 racks, 8-GPU servers (default 1)."))],
    "prefill_hardware": Annotated[str | None, typer.Option(help=(
        "Run the prefill pool on this hardware profile (its own pods); decode stays on --hardware."))],
    "prefill_pods": Annotated[int | None, typer.Option(help="Pods of --prefill-hardware (default 1).")],
    "prefill_dies": Annotated[int | None, typer.Option(help=(
        "Die budget on --prefill-hardware (default: every die of its pods)."))],
    "input_tokens": Annotated[int | None, typer.Option(help="Prompt tokens per request.")],
    "output_tokens": Annotated[int | None, typer.Option(help="Generated tokens per request.")],
    "weights_dtype": Annotated[Dtype | None, typer.Option(help="Weights dtype.")],
    "activations_dtype": Annotated[Dtype | None, typer.Option(help="GEMM activations dtype.")],
    "kv_dtype": Annotated[Dtype | None, typer.Option(help="KV-cache dtype.")],
    "mtp_acceptance": Annotated[float | None, typer.Option(help="MTP draft acceptance; 0 disables MTP.")],
    "expert_balance": Annotated[ExpertBalance | None, typer.Option(help=(
        "Expert balance policy: eplb (replicas placed on statistics --rebalance-period-s old), none (static "
        "placement, no replicas), perfect, measured (EPLB on --expert-load's matrix)."))],
    "rebalance_period_s": Annotated[float | None, typer.Option("--rebalance-period-s", help=(
        "Age of the statistics EPLB placed the experts on (s; default 60, 0 = in distribution)."))],
    "expert_load": Annotated[str | None, typer.Option(metavar="FILE", help=(
        "Measured per-layer expert-count matrix (CSV or JSON; rows = MoE layers, columns = routed experts) "
        "for both pools; replaces the fitted skew and selects 'measured' unless --expert-balance is given."))],
    "prefill_expert_load": Annotated[str | None, typer.Option(metavar="FILE", help=(
        "As --expert-load, for the prefill pool only."))],
    "decode_expert_load": Annotated[str | None, typer.Option(metavar="FILE", help=(
        "As --expert-load, for the decode pool only."))],
    "cache_hit_rate": Annotated[float | None, typer.Option(help="Prefix-cache hit rate of prompt tokens.")],
    "ttft_s": Annotated[float | None, typer.Option("--ttft-s", help="TTFT SLO (s) at --ttft-percentile.")],
    "ttft_percentile": Annotated[float | None, typer.Option(help="TTFT percentile, e.g. 90.")],
    "tpot_s": Annotated[float | None, typer.Option("--tpot-s", help="TPOT SLO (s): mean, or at --tpot-percentile.")],
    "tpot_percentile": Annotated[float | None, typer.Option(help=(
        "Put the TPOT SLO on this percentile over requests (e.g. 99, as MLPerf); default: the mean."))],
    "usd_per_die_hour": Annotated[float | None, typer.Option(help=(
        "Hardware price per die-hour (USD): adds $ per million tokens (scenario [cost])."))],
    "usd_per_chip_hour": Annotated[float | None, typer.Option(help=(
        "Hardware price per chip-hour (USD), spread over the chip's dies (scenario [cost])."))],
}

# Flags of the decisions (planner/decide): bands on plan and evaluate, failures, ranking.
Samples = Annotated[int, typer.Option("--samples", min=0, max=4096, help=(
    "Efficiency samples for the p10-p90 bands (0: no bands)."))]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Seed of the band samples (same seed, same bands).")]
MaxPp = Annotated[int | None, typer.Option("--max-pp", min=1, max=64, metavar="N", help=(
    "Search pools of at most N pipeline stages (1: none; dense models search 1, 2, 4, 8 by default)."))]
PinTp = Annotated[int | None, typer.Option("--tp", min=1, max=1024, metavar="N", help=(
    "Pin every pool's TP degree to N, as your stack runs it (default: searched)."))]
PinPp = Annotated[int | None, typer.Option("--pp", min=1, max=64, metavar="N", help=(
    "Pin every pool's pipeline stages to N (dense models; default: searched)."))]
MaxBatch = Annotated[int | None, typer.Option("--max-batch", min=1, max=100_000, metavar="N", help=(
    "Decode sequences per die at most N, e.g. your engine's max batch over its dies (default: searched)."))]
FailedDies = Annotated[int, typer.Option("--failed-dies", min=1, max=1024, help=(
    "Dies that fail in the 'dies' what-if (each in a different instance)."))]


def scenario_flags(*, skip: tuple[str, ...] = ()) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator: the command gets the scenario flags (but ``skip``) after its first parameter.

    The flags reach the command as one argument, ``overrides`` (the nested dict
    :func:`planner.inputs.scenario.scenario_overrides` builds), so the list lives only here.
    """
    names = [name for name in SCENARIO_FLAGS if name not in skip]

    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        kw = inspect.Parameter.KEYWORD_ONLY
        own = [p.replace(kind=kw) for p in inspect.signature(func, eval_str=True).parameters.values()
               if p.name != "overrides"]
        flags = [inspect.Parameter(name, kw, default=None, annotation=SCENARIO_FLAGS[name]) for name in names]

        @functools.wraps(func)
        def command(**kwargs: Any) -> None:
            values = {name: kwargs.pop(name) for name in names}
            func(**kwargs, overrides=scenario_overrides(**values))

        params = [*own[:1], *flags, *own[1:]]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


# --------------------------------------------------------------------------- helpers


def _error_line(exc: PlannerError) -> None:
    print(f"{PROG}: error: {exc.one_line()}", file=sys.stderr)


def _targets(*named: tuple[str, str | Path | None]) -> list[outputs.Target]:
    """The (option, file) pairs given: None (option not given) and ``-`` (stdout) name no file."""
    return [(option, Path(value)) for option, value in named if value is not None and str(value) != "-"]


def _claim(force: bool, *named: tuple[str, str | Path | None]) -> None:
    """Before any work: refuse a file in the way (unless --force) at once, not after a search."""
    outputs.claim(_targets(*named), force=force)


def _image(option: str, path: Path | None, draw: Callable[[Path], bytes]) -> list[outputs.Output]:
    """The plot ``option`` asked for, drawn in memory (written by :func:`_show` with the rest)."""
    return [] if path is None else [outputs.Output(option=option, path=path, data=draw(path))]


def _report() -> Any:
    """planner.report (the rich tables), imported when a table is printed: a ``--json -`` run never loads
    rich (~0.02 s of its start-up)."""
    from planner import report

    return report


def _show(tables: Callable[[], list[Any]], payload: Any, json_out: str | None, *, force: bool,
          files: list[outputs.Output] | tuple[()] = ()) -> None:
    """Write the JSON file (``--json PATH``) and ``files``, all or none; then the tables (built only then),
    or JSON on stdout (``-``)."""
    json_file = [] if json_out in (None, "-") else [
        outputs.Output(option="--json", path=Path(json_out), data=payload_json(payload).encode("utf-8"))]
    outputs.write_all([*json_file, *files], force=force)
    if json_out == "-":
        typer.echo(payload_json(payload), nl=False)
    else:
        out = _report().console()
        for table in tables():
            out.print(table)
    for file in files:
        if file.option != "--write-layouts":
            print(f"{PROG}: wrote {file.path}", file=sys.stderr)


def _validate_all(paths: list[str], load: Callable[[str], object]) -> None:
    """Load every file; 'ok PATH' per good file, one error line per bad one, exit 2 if any."""
    failed = 0
    for path in paths:
        try:
            load(path)
        except PlannerError as exc:
            _error_line(exc)
            failed += 1
            continue
        typer.echo(f"ok {path}")
    if failed:
        raise typer.Exit(EXIT_BAD_INPUT)


# --------------------------------------------------------------------------- profiles


@profiles_app.command("list")
def profiles_list() -> None:
    """List the shipped hardware profiles (per-die headline numbers)."""
    specs = [catalog.hardware(n) for n in catalog.shipped_names("hardware_profiles")]
    _report().console().print(_report().profiles_table(specs))


@profiles_app.command("show")
def profiles_show(name: NameOrPath, json_out: JsonOut = None, force: ForceJson = False) -> None:
    """Show every field of a hardware profile, with units and sources."""
    _claim(force, ("--json", json_out))
    spec = catalog.hardware(name)
    _show(lambda: _report().profile_tables(spec), _report().profile_json(spec), json_out, force=force)


@profiles_app.command("validate")
def profiles_validate(paths: Paths) -> None:
    """Validate hardware profile files (all of them; exit 2 if any is bad)."""
    _validate_all(paths, catalog.hardware)


# --------------------------------------------------------------------------- models


@models_app.command("list")
def models_list() -> None:
    """List the shipped model cards (parameter counts derived from each card)."""
    specs = [catalog.model(n) for n in catalog.shipped_names("models")]
    _report().console().print(_report().models_table(specs))


@models_app.command("show")
def models_show(name: NameOrPath, json_out: JsonOut = None, force: ForceJson = False) -> None:
    """Show every field of a model card and its derived vs reported parameter counts."""
    _claim(force, ("--json", json_out))
    spec = catalog.model(name)
    _show(lambda: _report().model_tables(spec), _report().model_json(spec), json_out, force=force)


@models_app.command("validate")
def models_validate(paths: Paths) -> None:
    """Validate model card files (all of them; exit 2 if any is bad)."""
    _validate_all(paths, catalog.model)


@models_app.command("import")
def models_import(
    config: Annotated[Path, typer.Argument(metavar="CONFIG.json", show_default=False,
                                           help="A Hugging Face config.json.")],
    name: Annotated[str | None, typer.Option(
        help="Card name (default: the file stem, or the folder of a config.json).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="PATH|-",
                                                help="Write the card here instead of stdout ('-': stdout).")] = None,
    force: ForceOutput = False,
) -> None:
    """Convert a Hugging Face config.json into a model card TOML."""
    from planner.inputs.hf_import import import_hf_config

    _claim(force, ("--output", output))
    _card, text = import_hf_config(config, name=name)
    text = text if text.endswith("\n") else text + "\n"
    if output is None or str(output) == "-":
        typer.echo(text, nl=False)
        return
    outputs.write_all([outputs.Output(option="--output", path=output, data=text.encode("utf-8"))], force=force)
    typer.echo(f"wrote {output}")


# --------------------------------------------------------------------------- evaluate

Opt = typer.Option


@app.command("evaluate")
@scenario_flags(skip=("dies", "prefill_dies"))
def evaluate_cmd(
    layout: Annotated[Path, typer.Argument(metavar="LAYOUT.toml", show_default=False, help="A layout file.")],
    overrides: dict[str, Any],
    rate: Annotated[float | None, Opt("--rate", min=0.0, metavar="REQ/S", help=(
        "Also give TTFT and TPOT percentiles, the decode batch and the SLO verdicts at this arrival rate."))] = None,
    json_out: JsonOut = None,
    plot: Annotated[Path | None, Opt("--plot", metavar="FILE.png|svg", help=(
        "Also draw the per-layer time breakdown to FILE (.png or .svg; needs the 'plot' extra)."))] = None,
    plot_load: Annotated[Path | None, Opt("--plot-load", metavar="FILE.png|svg", help=(
        "Also draw TTFT and TPOT percentiles against the arrival rate up to saturation to FILE."))] = None,
    samples: Samples = 64,
    seed: Seed = 0,
    failures: Annotated[bool, Opt("--failures", help=(
        "Also give the goodput that survives the worst k-die, node and pod failure."))] = False,
    failed_dies: FailedDies = 1,
    force: ForceEvaluate = False,
) -> None:
    """Price one layout: step times, goodput under the SLOs, latency at a load, per-layer breakdown, memory.

    Also p10-p90 bands from the spread of the fitted efficiencies (--samples 0: none), $ per
    million tokens when the scenario has a price, and the failure what-if with --failures.
    """
    from planner import plots
    from planner.decide.plan import decide_layout
    from planner.documents.decide import layout_decision_fields
    from planner.documents.evaluate import evaluate_report
    from planner.evaluate import evaluate, layout_goodput
    from planner.inputs.layout import load_layout
    from planner.inputs.scenario import build_scenario

    for flag, target in (("--plot", plot), ("--plot-load", plot_load)):
        if target is not None:
            plots.check_target(target, flag)
    _claim(force, ("--json", json_out), ("--plot", plot), ("--plot-load", plot_load))
    spec = load_layout(layout)
    scenario = build_scenario(spec.scenario, overrides, where=f"{layout} + flags")
    ev = evaluate(spec, scenario, str(layout))
    doc = evaluate_report(ev, rate_per_s=rate, curve=plot_load is not None)
    decisions = decide_layout(ev, layout_goodput(ev), spreads=_spreads(scenario, samples), samples=samples,
                              seed=seed, failures=failures, failed_dies=failed_dies)
    doc = doc.model_copy(update=layout_decision_fields(decisions, scenario))
    files = [*_image("--plot", plot, lambda path: plots.breakdown_image(doc, path)),
             *_image("--plot-load", plot_load, lambda path: plots.load_image(doc, path))]
    _show(lambda: _report().evaluate_tables(doc), doc, json_out, force=force, files=files)


# --------------------------------------------------------------------------- plan


class ModeList(tuple):
    """The modes ``--modes`` names, in order, without repeats."""


def parse_modes(text: str) -> ModeList:
    """``--modes pd,transformerless``: a comma list of modes (a bad name is a usage error, exit 2)."""
    valid = [m.value for m in Mode]
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise typer.BadParameter(f"{text!r} is not a comma list of {', '.join(valid)}")
    return ModeList(Mode(n) for n in dict.fromkeys(names))


@app.command("plan")
@scenario_flags()
def plan_cmd(
    scenario_file: Annotated[Path | None, typer.Argument(
        metavar="[SCENARIO.toml]", show_default=False, help="Scenario file (default: the built-in scenario).")] = None,
    overrides: dict[str, Any] | None = None,
    modes: Annotated[ModeList | None, Opt(parser=parse_modes, metavar="MODE[,MODE...]", help=(
        f"Comma list of: {', '.join(m.value for m in Mode)} (default: all)."))] = None,
    max_pp: MaxPp = None,
    tp: PinTp = None,
    pp: PinPp = None,
    max_batch: MaxBatch = None,
    top: Annotated[int, Opt(min=1, help="Layouts to list.")] = 10,
    target_rate: Annotated[float | None, Opt("--target-rate", min=0.0, metavar="REQ/S", help=(
        "Inverse sizing: the fewest dies (and the layout) that serve this request rate within the SLOs; "
        "--dies becomes a cap."))] = None,
    target_output_tokens_per_s: Annotated[float | None, Opt(
        "--target-output-tokens-per-s", min=0.0, metavar="TOK/S",
        help="Inverse sizing by output tokens/s (= --target-rate x output tokens).")] = None,
    json_out: JsonOut = None,
    plot: Annotated[Path | None, Opt("--plot", metavar="FILE.png|svg", help=(
        "Also draw the Pareto front to FILE (.png or .svg; needs the 'plot' extra)."))] = None,
    write_layouts: Annotated[Path | None, Opt(help=(
        "Write the listed layouts as rankNN-MODE.toml files here (an existing file or link is kept unless --force)."))
    ] = None,
    force: ForcePlan = False,
    samples: Samples = 64,
    seed: Seed = 0,
    rank_by: Annotated[RankBy, Opt("--rank-by", help=(
        "goodput: goodput per die; cost: $ per million output tokens (needs a price)."))] = RankBy.GOODPUT,
    tolerate_failures: Annotated[FailureKind | None, Opt("--tolerate-failures", help=(
        "Rank by what survives the worst failure of this kind and show the failure what-if."))] = None,
    failed_dies: FailedDies = 1,
) -> None:
    """Search layouts for the die budget and rank them by goodput per die (exit 3 if none meets the SLOs).

    The listed layouts get p10-p90 bands from the spread of the fitted efficiencies (--samples 0:
    none), $ per million tokens when the scenario has a price, and a failure what-if with
    --tolerate-failures.
    """
    import time

    from planner import plots
    from planner.decide.plan import decide
    from planner.documents.plan import plan_report
    from planner.inputs.scenario import build_scenario, load_scenario_file
    from planner.search.plan import ALL_MODES, Pins, plan, sizing_target_per_s

    if plot is not None:
        plots.check_target(plot)
    _claim(force, ("--json", json_out), ("--plot", plot))
    if write_layouts is not None:
        outputs.claim_folder("--write-layouts", write_layouts)
    start = time.perf_counter()
    base = load_scenario_file(scenario_file) if scenario_file else None
    scenario = build_scenario(base, overrides or {}, where=f"{scenario_file or 'default scenario'} + flags")
    target = sizing_target_per_s(scenario, requests_per_s=target_rate,
                                 output_tokens_per_s=target_output_tokens_per_s)
    _check_ranking(rank_by, tolerate_failures, target, scenario)
    result, decisions = decide(plan(scenario, modes=tuple(modes or ALL_MODES), top=top, target_rate_per_s=target,
                                    max_pp=max_pp, pins=Pins(tp=tp, pp=pp, max_batch=max_batch)),
                               top, spreads=_spreads(scenario, samples), samples=samples, seed=seed, rank_by=rank_by,
                               tolerate=tolerate_failures, failed_dies=failed_dies)
    doc = plan_report(result, top, decisions)
    if not doc.layouts:
        _emit_infeasible(doc, scenario, json_out, target, force=force)
    layouts = _layout_files(write_layouts, result, top)
    every = functools.partial(plan_report, result, len(result.layouts))  # the plot's faint points: every ranked one
    files = [*layouts, *_image("--plot", plot, lambda path: plots.plan_image(every(), path))]
    _show(lambda: _report().plan_tables(doc), doc, json_out, force=force, files=files)
    if layouts:
        print(f"{PROG}: wrote {len(layouts)} layouts to {write_layouts}", file=sys.stderr)
    print(f"{PROG}: planned in {time.perf_counter() - start:.2f} s ({result.candidates_evaluated:,} candidates)",
          file=sys.stderr)


def _spreads(scenario: Any, samples: int) -> Any:
    """The spreads of the scenario's hardware from the shipped measurements (None: no bands asked for)."""
    from planner.ops.spreads import profile_spreads

    return profile_spreads(scenario.hardware) if samples > 0 else None


def _check_ranking(rank_by: RankBy, tolerate: FailureKind | None, target: float | None, scenario: Any) -> None:
    """--rank-by cost needs a price; neither re-ranking mixes with inverse sizing (ranked by fewest dies)."""
    if target is not None and (rank_by is not RankBy.GOODPUT or tolerate is not None):
        raise PlannerError("--rank-by and --tolerate-failures do not combine with --target-rate "
                           "(inverse sizing ranks by fewest dies)", where="plan", fix="drop one of them")
    if rank_by is RankBy.COST and scenario.price is None:
        raise PlannerError("--rank-by cost needs a hardware price", where="plan",
                           fix="pass --usd-per-chip-hour or --usd-per-die-hour, or set [cost] in the scenario")


def _emit_infeasible(doc: Any, scenario: Any, json_out: str | None, target: float | None, *, force: bool) -> None:
    from planner.errors import InfeasibleError

    _show(lambda: [_report().near_miss_table(doc)] if doc.near_misses else [], doc, json_out, force=force)
    if target is not None and not doc.near_misses:
        raise InfeasibleError(f"no layout within the die budget serves {target:g} req/s within the SLOs",
                              fix="raise --dies (the cap) or lower the target")
    if not doc.near_misses and doc.pinned is not None:
        raise InfeasibleError(_memory_answer(scenario, doc.budget_dies, doc.pinned),
                              fix="loosen the pins, add dies (--dies, --pods) or lower the weight precision")
    if not doc.near_misses:
        raise InfeasibleError(_memory_answer(scenario, doc.budget_dies),
                              fix="add dies (--dies, --pods) or lower the weight precision (--weights-dtype)")
    raise InfeasibleError("no layout meets the SLOs for this budget (nearest misses shown)",
                          fix="relax --ttft-s/--tpot-s, add dies, or change precision")


def _weights_text(scenario: Any, budget: int) -> tuple[str, bool]:
    """(one copy of the weights against the budget's usable HBM, in GB; whether that copy fits)."""
    from planner.search.plan import weights_against_budget
    from planner.units import fmt_bytes

    w = weights_against_budget(scenario, budget)
    model, hw = scenario.model, scenario.hardware
    mtp = ", its MTP module included" if model.num_mtp_layers else ""
    return (f"one copy of {model.name}'s weights ({scenario.precision.weights}: {fmt_bytes(w.weights_bytes)}{mtp}) "
            f"against {w.dies:,} {hw.name} dies of {fmt_bytes(w.usable_bytes_per_die)} usable "
            f"({fmt_bytes(w.usable_bytes)})"), w.fits_once


def _memory_answer(scenario: Any, budget: int, pinned: Any = None) -> str:
    """The one line of a plan where nothing fits in memory: the weights against the budget, and the pins held."""
    what, fits_once = _weights_text(scenario, budget)
    if pinned is not None:
        from planner.search.plan import Pins

        held = Pins(tp=pinned.tp, pp=pinned.pp, max_batch=pinned.max_batch).flags()
        return f"no layout held to {held} fits in memory: {what}"
    if not fits_once:
        return f"no layout fits in memory: {what}, before any KV cache"
    return (f"no candidate layout fits in memory: {what}, but the layouts searched hold it on fewer dies (an "
            "instance's dies split the experts and heads evenly) or leave no room for their batch's KV cache")


def _layout_files(folder: Path | None, result: Any, top: int) -> list[outputs.Output]:
    """``--write-layouts DIR``: ``DIR/rankNN-MODE.toml`` per listed layout (DIR is created when written)."""
    from planner.inputs.layout import layout_toml

    if folder is None:
        return []
    return [outputs.Output(option="--write-layouts", path=folder / f"rank{i:02d}-{p.mode.value}.toml",
                           data=layout_toml(p.layout).encode("utf-8"))
            for i, p in enumerate(result.layouts[:top], start=1)]


# --------------------------------------------------------------------------- sensitivity


@app.command("sensitivity")
@scenario_flags()
def sensitivity_cmd(
    scenario_file: Annotated[Path | None, typer.Argument(
        metavar="[SCENARIO.toml]", show_default=False, help="Scenario file (default: the built-in scenario).")] = None,
    overrides: dict[str, Any] | None = None,
    layout: Annotated[Path | None, Opt("--layout", metavar="LAYOUT.toml", help=(
        "Analyse this layout (under its own [scenario] + flags) instead of the plan's rank 1."))] = None,
    delta: Annotated[float, Opt("--delta", min=0.001, max=0.9, help="Move each input by this fraction.")] = 0.10,
    modes: Annotated[ModeList | None, Opt(parser=parse_modes, metavar="MODE[,MODE...]", help=(
        "Modes the plan searches for its rank 1 (default: all)."))] = None,
    max_pp: MaxPp = None,
    tp: PinTp = None,
    pp: PinPp = None,
    max_batch: MaxBatch = None,
    json_out: JsonOut = None,
    plot: Annotated[Path | None, Opt("--plot", metavar="FILE.png|svg", help=(
        "Also draw the tornado to FILE (.png or .svg; needs the 'plot' extra)."))] = None,
    force: ForceSensitivity = False,
) -> None:
    """Which input decides the deployment: goodput per die of the top layout with each input moved by +-delta.

    Peaks, HBM and fabric bandwidths, efficiencies, fixed costs, expert skew, MTP acceptance, input
    and output lengths, each alone; sorted by the larger change (a tornado).
    """
    from planner import plots
    from planner.decide.sensitivity import sensitivity
    from planner.documents.decide import sensitivity_report

    if plot is not None:
        plots.check_target(plot)
    _claim(force, ("--json", json_out), ("--plot", plot))
    spec, scenario, source = _top_layout(scenario_file, layout, overrides or {}, tuple(modes or ()), max_pp,
                                         (tp, pp, max_batch))
    doc = sensitivity_report(sensitivity(spec, scenario, delta), spec, scenario, source)
    _show(lambda: _report().sensitivity_tables(doc), doc, json_out, force=force,
          files=_image("--plot", plot, lambda path: plots.tornado_image(doc, path)))


def _top_layout(scenario_file: Path | None, layout: Path | None, overrides: dict[str, Any],
                modes: tuple[Mode, ...], max_pp: int | None = None,
                pins: tuple[int | None, int | None, int | None] = (None, None, None)) -> tuple[Any, Any, str]:
    """(layout, the scenario it is priced under, where it came from): a layout file, or the plan's rank 1
    (searched under ``--max-pp`` and the pins ``(--tp, --pp, --max-batch)``)."""
    from planner.errors import InfeasibleError
    from planner.evaluate import evaluate
    from planner.inputs.layout import load_layout
    from planner.inputs.scenario import build_scenario, load_scenario_file
    from planner.search.plan import ALL_MODES, Pins, plan

    if layout is not None:
        if any(v is not None for v in (max_pp, *pins)):
            raise PlannerError("--max-pp, --tp, --pp and --max-batch hold the plan's search; a --layout is "
                               "analysed as written", where="sensitivity", fix="drop them, or drop --layout")
        if scenario_file is not None:
            raise PlannerError("give a SCENARIO or --layout, not both (a layout carries its own [scenario])",
                               where="sensitivity", fix="drop one of them")
        spec = load_layout(layout)
        scenario = build_scenario(spec.scenario, overrides, where=f"{layout} + flags")
        evaluate(spec, scenario, str(layout))  # refuses an impossible layout (exit 2)
        return spec, scenario, str(layout)
    base = load_scenario_file(scenario_file) if scenario_file else None
    scenario = build_scenario(base, overrides, where=f"{scenario_file or 'default scenario'} + flags")
    result = plan(scenario, modes=modes or ALL_MODES, max_pp=max_pp,
                  pins=Pins(tp=pins[0], pp=pins[1], max_batch=pins[2]))
    if not result.layouts:
        raise InfeasibleError("no layout meets the SLOs for this budget: nothing to analyse",
                              fix="run 'planner plan' with the same flags to see the nearest misses")
    top = result.layouts[0]
    return top.layout, own_scenario(top.layout, scenario), "rank 1"


# --------------------------------------------------------------------------- ops: check, validate, schema

_CI_RECIPE = """CI recipe (one baseline per deployed scenario, reviewed and committed):

planner plan my-scenario.toml --json baselines/my-scenario.json

(re-creating it after an intended change: add --force, as the file exists)

for f in baselines/*.json; do planner check "$f" || exit $?; done

Exit 0 within tolerance (improvements are reported, not failed), 1 on a regression, 2 on a bad baseline."""


@app.command("check", epilog=_CI_RECIPE)
def check_cmd(
    baseline: Annotated[Path, typer.Argument(metavar="BASELINE.json", show_default=False,
                                             help="A saved 'planner plan --json' report.")],
    tolerance: Annotated[float, Opt(min=0.0, help="Accepted relative drop of the best goodput per die.")] = 0.05,
    json_out: JsonOut = None,
    force: ForceJson = False,
) -> None:
    """Re-plan a saved plan baseline with today's data files and diff the top layout (exit 1 on a regression).

    A regression: the best goodput per die down by more than --tolerance, the top layout changed
    without such a gain, or no layout meeting the SLOs any more.
    """
    from planner.errors import EXIT_REGRESSION
    from planner.ops.check import check

    if json_out not in (None, "-") and Path(json_out).resolve() == baseline.resolve():
        raise PlannerError(f"--json {json_out} is the baseline being checked: the report would replace it",
                           where="check", fix="write the report to another path (the baseline stays as it is)")
    _claim(force, ("--json", json_out))
    doc = check(baseline, tolerance)
    _show(lambda: _report().check_tables(doc), doc, json_out, force=force)
    if doc.verdict == "regression":
        items = [c.item for c in doc.changes if c.effect == "regression"]
        files = ", ".join(doc.data_files_changed) or "no data file"
        print(f"{PROG}: {baseline}: regression ({', '.join(items)}); changed since the baseline: {files}",
              file=sys.stderr)
        raise typer.Exit(EXIT_REGRESSION)


@app.command("validate")
def validate_cmd(json_out: JsonOut = None, force: ForceJson = False) -> None:
    """Predict the shipped published measurements against their bands (exit 1 if a row misses its band unmarked).

    Rows marked as known misses are listed apart and do not fail; a marked row back inside its
    band fails until the mark is removed.
    """
    from planner.errors import EXIT_REGRESSION
    from planner.ops.validation import validate

    _claim(force, ("--json", json_out))
    doc = validate()
    _show(lambda: _report().validate_tables(doc), doc, json_out, force=force)
    if doc.verdict == "fail":
        print(f"{PROG}: validate: {_report().validate_failure(doc)}", file=sys.stderr)
        raise typer.Exit(EXIT_REGRESSION)


@app.command("schema")
def schema_cmd(
    name: Annotated[ReportName, typer.Argument(metavar="NAME", show_default=False, help="The report.")],
) -> None:
    """Print the JSON Schema (draft 2020-12) of a --json report."""
    from planner.documents import schema

    typer.echo(payload_json(schema(name)), nl=False)


# --------------------------------------------------------------------------- entry point


def _is_usage_error(exc: BaseException) -> bool:
    """Click's usage errors (typer vendors click, so match by shape, not by import)."""
    return hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)


def _usage_line(exc: Any) -> str:
    """One line for a usage error: the command, the problem, where to look."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else PROG
    if type(exc).__name__ == "NoArgsIsHelpError":
        return f"{command}: missing command; fix: choose one of the commands listed above"
    message = " ".join(exc.format_message().split()).rstrip(".") or "invalid usage"
    return f"{command}: {message}; fix: see '{command} --help'"


def _closed_pipe() -> None:
    """The reader closed stdout (``| head -1``): stop quietly with the SIGPIPE status, never 1.

    stdout is pointed at /dev/null first, so the interpreter's final flush cannot complain either.
    """
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    sys.exit(EXIT_BROKEN_PIPE)


def _interrupted() -> None:
    print(f"{PROG}: interrupted", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)


# glibc malloc options (mallopt): M_MMAP_THRESHOLD fixed at glibc's largest (32 MiB) and M_TRIM_THRESHOLD at
# 1 GiB, so the search's large candidate arrays (10 MB each at 1.3 M rows) are reused from the heap once
# freed instead of being unmapped and faulted in again: a default plan 110 K -> 48 K page faults, 0.35 ->
# 0.15 s system time (measured); peak RSS +4%.
_MALLOPT = ((-3, 32 << 20), (-1, 1 << 30))  # (M_MMAP_THRESHOLD, bytes), (M_TRIM_THRESHOLD, bytes)


def _keep_freed_memory() -> None:
    """Tell glibc's allocator to keep freed memory for reuse (:data:`_MALLOPT`); nothing elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    for option, value in _MALLOPT:
        mallopt(option, value)


def main() -> None:
    """Entry point: expected failures print one line on stderr and exit with their code.

    Ctrl-C prints one line and exits 130; a closed stdout exits 141 quietly; arithmetic that
    overflows on inputs inside their plausible ranges is reported (exit 2), not a traceback.
    """
    _keep_freed_memory()
    try:
        result = app(standalone_mode=False, prog_name=PROG)
    except PlannerError as exc:
        _error_line(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _interrupted()
    except BrokenPipeError:
        _closed_pipe()
    except SystemExit as exc:
        if isinstance(exc.__context__, BrokenPipeError):  # rich and typer turn a closed pipe into exit 1
            _closed_pipe()
        raise
    except (OverflowError, FloatingPointError) as exc:
        _error_line(NumericOverflowError(f"arithmetic overflow while pricing ({exc})",
                                         fix="check the inputs nearest the ends of their plausible ranges"))
        sys.exit(EXIT_BAD_INPUT)
    except Exception as exc:
        if _is_usage_error(exc):
            print(f"{PROG}: error: {_usage_line(exc)}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        if type(exc).__name__ == "Abort":
            print(f"{PROG}: aborted", file=sys.stderr)
            sys.exit(1)
        raise
    if result == EXIT_INTERRUPTED:  # typer turns Ctrl-C inside a command into a silent exit code 130
        _interrupted()
    sys.exit(result if isinstance(result, int) else 0)
