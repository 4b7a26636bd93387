"""Command-line interface: parse flags, call one library function, render.  No math here."""

from __future__ import annotations

import sys

import typer

from planner.errors import PlannerError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Capacity planner for serving large MoE LLMs on SuperPod-scale hardware.")
profiles_app = typer.Typer(no_args_is_help=True, help="Hardware profiles.")
models_app = typer.Typer(no_args_is_help=True, help="Model cards.")
app.add_typer(profiles_app, name="profiles")
app.add_typer(models_app, name="models")


@profiles_app.command("list")
def profiles_list() -> None:
    """List the shipped hardware profiles."""
    from planner import catalog

    for name in catalog.shipped_names("hardware_profiles"):
        typer.echo(name)


@models_app.command("list")
def models_list() -> None:
    """List the shipped model cards."""
    from planner import catalog

    for name in catalog.shipped_names("models"):
        typer.echo(name)


def _is_usage_error(exc: BaseException) -> bool:
    """Click's usage errors (typer vendors click, so match by shape, not by import)."""
    return hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)


def main() -> None:
    """Entry point: expected failures print one line on stderr and exit with their code."""
    try:
        result = app(standalone_mode=False)
    except PlannerError as exc:
        print(f"planner: error: {exc.one_line()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("planner: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if _is_usage_error(exc):
            print(f"planner: error: {' '.join(exc.format_message().split())}", file=sys.stderr)
            sys.exit(2)
        if type(exc).__name__ == "Abort":
            print("planner: aborted", file=sys.stderr)
            sys.exit(1)
        raise
    sys.exit(result if isinstance(result, int) else 0)
