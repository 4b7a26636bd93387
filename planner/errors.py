"""Expected failures and their exit codes.

A :class:`PlannerError` is a failure the user can fix (bad input, an unknown name, an
impossible layout).  The CLI prints its one-line message on stderr and exits with its code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_BAD_INPUT = 2
EXIT_INFEASIBLE = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader closed stdout (e.g. `| head -1`); never 1


class PlannerError(Exception):
    """Base of every expected failure: carries one line of text and an exit code."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None):
        self.message = message
        self.where = where
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The single stderr line: ``where: message (fix)``."""
        text = self.message
        if self.where:
            text = f"{self.where}: {text}"
        if self.fix:
            text = f"{text}; fix: {self.fix}"
        return " ".join(text.split())


class DataFileError(PlannerError):
    """A data file (profile, card, layout, scenario, baseline) is unreadable or invalid."""


class UnknownNameError(PlannerError):
    """A profile or model name that resolves to no shipped file."""


class UnsupportedDtypeError(PlannerError):
    """A precision the hardware profile does not list (never derived from another dtype)."""


class LayoutError(PlannerError):
    """A layout that cannot be built (divisibility, placement, wrong keys for the mode)."""


class InfeasibleError(PlannerError):
    """No layout meets the SLOs: an answer, reported with exit code 3."""

    exit_code = EXIT_INFEASIBLE


class MissingExtraError(PlannerError):
    """An optional dependency (e.g. matplotlib for plots) is not installed."""


class NumericOverflowError(PlannerError):
    """Arithmetic overflowed on inputs inside their plausible ranges (reported, not a traceback)."""
