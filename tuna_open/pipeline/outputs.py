"""Where a command may write: only inside its own output, never over its inputs or a user's files.

Why one module: every command that writes (``run``'s run directory, ``export``'s dataset directory, ``rank``'s
rankings and viewer) replaced whatever sat at the path it was given: ``export --output RUN`` deleted the run,
``rank --output`` equal to ``--input`` overwrote the candidates, ``--run-dir ~/thesis`` overwrote its
``report.md``. The checks run before any work (or any paid request), so a mistake costs nothing.

A directory a command replaces wholesale carries a marker file naming what wrote it; a non-empty directory
without the marker is someone else's and is refused, never emptied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from tuna_open.errors import UserError

RUN_MARKER = ".tuna-open-run"
"""Written into a run directory on first use: the directory is a run's and ``run`` may write into it."""
RUN_LOCK = ".lock"
"""The run lock file (``integrity.RunDirLock``), left in every run dir (see ``is_run_dir`` for older ones)."""
EXPORT_MARKER = ".tuna-open-export"
"""Written into an ``export`` output: re-exporting there replaces it, and nothing else is ever replaced."""


def _related(a: Path, b: Path) -> bool:
    """``a`` and ``b`` (resolved by the caller: no ``.``, ``..`` or links) are one path, or one lies in the other."""
    return a == b or a in b.parents or b in a.parents


def check_outputs(outputs: Iterable[Path], inputs: Iterable[Path], what: str) -> None:
    """Refuse outputs that are, contain or lie inside an input, or that coincide with each other.

    ``what`` names the command (``export``, ``rank``) in the one-line error.
    """
    outs = [(p, p.resolve()) for p in outputs]
    for inp in inputs:
        for out, resolved in outs:
            if _related(resolved, inp.resolve()):
                raise UserError(f"{out}: {what} would overwrite its input {inp}; choose an output elsewhere")
    for i, (out, resolved) in enumerate(outs):
        for other, other_resolved in outs[i + 1:]:
            if resolved == other_resolved:
                raise UserError(f"{out}: {what} writes both its output and {other.name} there; choose another name")


def _check_parents(path: Path, what: str) -> None:
    """Refuse a path under a file (``notes.txt/out``): creating it fails deep inside with ``NotADirectoryError``."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{path}: {what} cannot write here, {parent} is a file, not a directory")
            return


def check_file_output(path: Path, what: str) -> None:
    """A file a command writes: refused when a directory (or anything but a file) sits there, or under a file."""
    _check_parents(path, what)
    if path.exists() and not path.is_file():
        raise UserError(f"{path}: {what} writes a file here, but it is a directory")


def check_claimed_dir(path: Path, marker: str, what: str, replaced: bool = False) -> None:
    """A directory a command fills (or, ``replaced``, swaps for a new one): it must be missing, empty, or
    marked with ``marker``. ``what`` names the directory in the error (``run dir``, ``export output``).

    A replaced directory is never the current one or above it: that would pull the user's shell out from under
    them (and ``.`` has no name to swap a new directory in under).
    """
    _check_parents(path, what)
    cwd = Path.cwd()
    if replaced and path.resolve() in (cwd, *cwd.parents):
        raise UserError(f"{what} {path}: would replace the current directory; give a new directory")
    if not path.exists():
        return
    if not path.is_dir():
        raise UserError(f"{what} {path}: exists and is not a directory")
    if (path / marker).is_file() or not any(path.iterdir()):
        return
    raise UserError(f"{what} {path}: not empty and not written by tuna-open (no {marker} in it); "
                    "give a new or empty directory")


def is_run_dir(directory: Path) -> bool:
    """Whether ``directory`` is a run's: marked (``RUN_MARKER``), or a run from before the marker, which left
    both its lock and a ``recipe.json`` with stages. A ``.lock`` alone proves nothing: other tools (pytest's
    temporary directories) leave one too."""
    if (directory / RUN_MARKER).is_file():
        return True
    if not (directory / RUN_LOCK).is_file() or not (directory / "recipe.json").is_file():
        return False
    try:
        recipe = json.loads((directory / "recipe.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(recipe, dict) and isinstance(recipe.get("stages"), list)


def check_run_dir(run_dir: Path) -> None:
    """A run directory: new, empty, or a run's (``is_run_dir``)."""
    if not is_run_dir(run_dir):
        check_claimed_dir(run_dir, RUN_MARKER, "run dir")


def enclosing_run_dir(path: Path) -> Path | None:
    """The run directory ``path`` lies in (the nearest parent marked as one), if any: a command writing there
    takes that run's lock, so it never races a ``run`` of the same directory."""
    return next((parent for parent in path.resolve().parents if is_run_dir(parent)), None)


def mark(directory: Path, marker: str) -> None:
    """Claim ``directory`` for the command ``marker`` names (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / marker).touch()
