"""Output files: every file a command writes goes through here, and none is replaced without --force.

A command names its targets before any work (:func:`claim`: a file in the way is refused at once,
not after a search), builds every output in memory, then writes them together with
:func:`write_all`, which checks every target again first: a refusal writes nothing at all, not
even the targets that were free.  ``-`` (stdout) is the caller's business and never a target; nor
is a device or pipe (``/dev/null``, a shell's ``>(...)``), which is written into as it is.

Each write is also safe against a file that appears between the check and the write: without
``force`` the file is created with ``O_EXCL | O_NOFOLLOW`` (whatever appeared is kept and the run
fails); with it, the bytes go to a temporary file in the same directory, renamed over the
target (a link is replaced, never written through; a reader never sees half a file).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from planner.errors import PlannerError

FIX_TAKEN = "pass --force to replace it, or choose another path"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_MODE = 0o644  # before the umask, as open() would

Target = tuple[str, Path]  # (the option that named the file, e.g. "--json"; the file)


@dataclass(frozen=True, slots=True, kw_only=True)
class Output:
    """One file a command writes: the option that named it, where, and the bytes."""

    option: str
    path: Path
    data: bytes


def claim(targets: Iterable[Target], *, force: bool) -> None:
    """Refuse, before any work, targets that are taken (unless ``force``), repeated, or in no directory."""
    targets = list(targets)
    _refuse_taken(targets, force=force)
    for option, path in targets:
        if not path.parent.is_dir():
            raise PlannerError(f"cannot write {path}: directory {str(path.parent)!r} does not exist", where=option,
                               fix="create the directory first, or choose another path")


def claim_folder(option: str, folder: Path) -> None:
    """Refuse, before any work, a folder to write into that is a file (its files are named only later)."""
    if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
        raise PlannerError(f"{folder} exists and is not a directory", where=option,
                           fix="choose a directory (it is created if missing)")


def write_all(outputs: Sequence[Output], *, force: bool) -> None:
    """Write every output, or none if any target is taken and not ``force`` (missing folders are created)."""
    _refuse_taken([(o.option, o.path) for o in outputs], force=force)
    for out in outputs:
        _make_parent(out)
        _write_one(out, replace=force)


def _refuse_taken(targets: list[Target], *, force: bool) -> None:
    """One error line for the first problem: a file named twice, a directory, a file in the way."""
    seen: dict[str, str] = {}
    for option, path in targets:
        key = os.path.abspath(path)
        if key in seen:
            raise PlannerError(f"{path} is also the target of {seen[key]}", where=option,
                               fix="give each output its own path")
        seen[key] = option
    for option, path in targets:
        if path.is_dir():
            raise PlannerError(f"{path} is a directory", where=option, fix="name a file in it")
    taken = [(option, path) for option, path in targets
             if (path.is_symlink() or path.exists()) and not is_stream(path)]
    if taken and not force:
        option, path = taken[0]
        kind = "a link" if path.is_symlink() else "a file"
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise PlannerError(f"{path} exists ({kind}){more}; nothing written", where=option, fix=FIX_TAKEN)


def is_stream(path: Path) -> bool:
    """An existing device, pipe or socket (``/dev/null``, ``/dev/stdout``, a shell's ``>(...)``), or a
    link to one: written into, never refused or replaced (it holds no file of the user's)."""
    try:
        mode = path.stat().st_mode
    except OSError:  # absent, a dangling link, or unreadable: not a stream
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _make_parent(out: Output) -> None:
    try:
        out.path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlannerError(f"cannot create directory {str(out.path.parent)!r} ({exc.strerror})",
                           where=out.option, fix="check the path and its permissions") from None


def _write_one(out: Output, *, replace: bool) -> None:
    """Create ``out.path`` (never through a link); ``replace``: via a temporary file renamed over it."""
    path = out.path
    if is_stream(path):
        _write_stream(out)
        return
    fresh = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp") if replace else path
    try:
        fd = os.open(fresh, _CREATE, _MODE)
    except FileExistsError:
        raise PlannerError(f"{path} appeared while the planner ran; nothing replaced", where=out.option,
                           fix=FIX_TAKEN) from None
    except OSError as exc:
        raise PlannerError(f"cannot write {path} ({exc.strerror})", where=out.option,
                           fix="check that the directory is writable") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(out.data)
        if replace:
            os.replace(fresh, path)
    except OSError as exc:
        fresh.unlink(missing_ok=True)
        raise PlannerError(f"cannot write {path} ({exc.strerror})", where=out.option,
                           fix="check the free space and that the directory is writable") from None


def _write_stream(out: Output) -> None:
    try:
        with out.path.open("wb") as handle:
            handle.write(out.data)
    except OSError as exc:
        raise PlannerError(f"cannot write {out.path} ({exc.strerror})", where=out.option,
                           fix="check that it is open for writing") from None
