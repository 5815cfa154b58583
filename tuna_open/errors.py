"""User-facing errors: the CLI prints these as one line and exits 2, never a traceback."""

from __future__ import annotations

import importlib
import os
from typing import Callable, TypeVar

T = TypeVar("T", int, float)


class UserError(Exception):
    """A mistake in the user's recipe, files or flags. The message names the field, file or line."""


def require_package(module: str, needed_for: str, install: str) -> None:
    """Raise a one-line ``UserError`` saying what to install when ``module`` cannot be imported.

    Why check before the work: libraries fail deep inside (transformers' GGUF loader raises a bare ``ImportError``
    after the weights were fetched), which reaches the user as a traceback that does not name the install command.
    """
    try:
        importlib.import_module(module)
    except ImportError:
        raise UserError(f"{needed_for} needs the {module} package, which is not installed: {install}") from None


def number_from_env(name: str, default: T, kind: Callable[[str], T]) -> T:
    """The environment variable ``name`` as a number (``kind``: int or float), ``default`` when unset or empty.

    A bad value (``TUNA_PROGRESS_INTERVAL=abc``) is a UserError naming the variable, not a ValueError traceback
    from whichever stage first reads it.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise UserError(f"environment variable {name}={raw!r}: expected {expected}") from None
