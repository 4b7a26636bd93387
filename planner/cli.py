"""Command-line interface: parse flags, call one library function, render.  No math here."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from planner import catalog, report
from planner.errors import EXIT_BAD_INPUT, PlannerError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Capacity planner for serving large MoE LLMs on SuperPod-scale hardware.")
profiles_app = typer.Typer(no_args_is_help=True, help="Hardware profiles.")
models_app = typer.Typer(no_args_is_help=True, help="Model cards.")
app.add_typer(profiles_app, name="profiles")
app.add_typer(models_app, name="models")

PROG = "planner"

NameOrPath = Annotated[str, typer.Argument(
    metavar="NAME|PATH", help="A shipped name (see 'list') or a path to a .toml file.",
    show_default=False)]
Paths = Annotated[list[str], typer.Argument(metavar="PATH...", help="Files to validate.",
                                            show_default=False)]
JsonOut = Annotated[str | None, typer.Option(
    "--json", metavar="PATH|-",
    help="Also write JSON (sorted keys) to PATH; '-' writes only JSON to stdout.")]


# --------------------------------------------------------------------------- helpers


def _error_line(exc: PlannerError) -> None:
    print(f"{PROG}: error: {exc.one_line()}", file=sys.stderr)


def _write_text(path: Path, text: str, *, overwrite: bool) -> None:
    """Write an output file; an existing file is kept unless ``overwrite``."""
    try:
        with path.open("w" if overwrite else "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise PlannerError("file exists; not overwritten", where=str(path),
                           fix="pass --force or choose another --output path") from None
    except OSError as exc:
        raise PlannerError(f"cannot write file ({exc.strerror})", where=str(path),
                           fix="check that the directory exists and is writable") from None


def _show(tables: list[Any], payload: dict[str, Any], json_out: str | None) -> None:
    """Render tables, or JSON to stdout (``-``), or both tables and a JSON file."""
    if json_out == "-":
        typer.echo(report.dumps(payload), nl=False)
        return
    out = report.console()
    for table in tables:
        out.print(table)
    if json_out:
        _write_text(Path(json_out), report.dumps(payload), overwrite=True)


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
    report.console().print(report.profiles_table(specs))


@profiles_app.command("show")
def profiles_show(name: NameOrPath, json_out: JsonOut = None) -> None:
    """Show every field of a hardware profile, with units and sources."""
    spec = catalog.hardware(name)
    _show(report.profile_tables(spec), report.profile_json(spec), json_out)


@profiles_app.command("validate")
def profiles_validate(paths: Paths) -> None:
    """Validate hardware profile files (all of them; exit 2 if any is bad)."""
    _validate_all(paths, catalog.hardware)


# --------------------------------------------------------------------------- models


@models_app.command("list")
def models_list() -> None:
    """List the shipped model cards (parameter counts derived from each card)."""
    specs = [catalog.model(n) for n in catalog.shipped_names("models")]
    report.console().print(report.models_table(specs))


@models_app.command("show")
def models_show(name: NameOrPath, json_out: JsonOut = None) -> None:
    """Show every field of a model card and its derived vs reported parameter counts."""
    spec = catalog.model(name)
    _show(report.model_tables(spec), report.model_json(spec), json_out)


@models_app.command("validate")
def models_validate(paths: Paths) -> None:
    """Validate model card files (all of them; exit 2 if any is bad)."""
    _validate_all(paths, catalog.model)


@models_app.command("import")
def models_import(
    config: Annotated[Path, typer.Argument(metavar="CONFIG.json", show_default=False,
                                           help="A Hugging Face config.json.")],
    name: Annotated[str | None, typer.Option(help="Card name (default: from the config).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the card here instead of stdout.")] = None,
    force: Annotated[bool, typer.Option("--force",
                                        help="Overwrite an existing --output file.")] = False,
) -> None:
    """Convert a Hugging Face config.json into a model card TOML."""
    from planner.spec.hf_import import import_hf_config

    _card, text = import_hf_config(config, name=name)
    text = text if text.endswith("\n") else text + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    _write_text(output, text, overwrite=force)
    typer.echo(f"wrote {output}")


# --------------------------------------------------------------------------- evaluate

Opt = typer.Option


@app.command("evaluate")
def evaluate_cmd(
    layout: Annotated[Path, typer.Argument(metavar="LAYOUT.toml", show_default=False, help="A layout file.")],
    model: Annotated[str | None, Opt(help="Model card name or path.")] = None,
    hardware: Annotated[str | None, Opt(help="Hardware profile name or path.")] = None,
    input_tokens: Annotated[int | None, Opt(help="Prompt tokens per request.")] = None,
    output_tokens: Annotated[int | None, Opt(help="Generated tokens per request.")] = None,
    weights_dtype: Annotated[str | None, Opt(help="bf16 | fp16 | fp8 | int8 | fp4.")] = None,
    activations_dtype: Annotated[str | None, Opt(help="bf16 | fp16 | fp8 | int8 | fp4.")] = None,
    kv_dtype: Annotated[str | None, Opt(help="KV-cache dtype.")] = None,
    mtp_acceptance: Annotated[float | None, Opt(help="MTP draft acceptance; 0 disables MTP.")] = None,
    expert_balance: Annotated[str | None, Opt(help="perfect | skewed.")] = None,
    hot_expert_ratio: Annotated[float | None, Opt(help="Hottest expert's load / mean (skewed).")] = None,
    cache_hit_rate: Annotated[float | None, Opt(help="Prefix-cache hit rate of prompt tokens.")] = None,
    json_out: JsonOut = None,
) -> None:
    """Price one layout: step times, throughput per die and chip, per-layer breakdown, memory."""
    from planner.evaluate import evaluate, report_dict
    from planner.spec.layout import load_layout
    from planner.spec.scenario import build_scenario, scenario_overrides

    spec = load_layout(layout)
    overrides = scenario_overrides(
        model=model, hardware=hardware, input_tokens=input_tokens, output_tokens=output_tokens,
        weights_dtype=weights_dtype, activations_dtype=activations_dtype, kv_dtype=kv_dtype,
        mtp_acceptance=mtp_acceptance, expert_balance=expert_balance, hot_expert_ratio=hot_expert_ratio,
        cache_hit_rate=cache_hit_rate)
    scenario = build_scenario(spec.scenario, overrides, where=f"{layout} + flags")
    doc = report_dict(evaluate(spec, scenario, str(layout)))
    _show(report.evaluate_tables(doc), doc, json_out)


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


def main() -> None:
    """Entry point: expected failures print one line on stderr and exit with their code."""
    try:
        result = app(standalone_mode=False, prog_name=PROG)
    except PlannerError as exc:
        _error_line(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if _is_usage_error(exc):
            print(f"{PROG}: error: {_usage_line(exc)}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        if type(exc).__name__ == "Abort":
            print(f"{PROG}: aborted", file=sys.stderr)
            sys.exit(1)
        raise
    sys.exit(result if isinstance(result, int) else 0)
