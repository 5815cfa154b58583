"""Atomic file writes: readers see either the old file or the complete new one, never a torn one.

Here, in the standalone ``rankers`` package, because its cache needs it and ``rankers`` never imports
``tuna_open``; ``tuna_open.data.jsonl`` (every artifact and manifest of a run) uses the same function.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    """The process umask (read by setting and restoring it: Python before 3.13 has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()
"""What ``open()`` would give a new file. ``mkstemp`` creates 0600, so without this every artifact, manifest
and cache entry was private to its owner under a 022 umask (a shared cache or run dir unreadable to the group).
Read once at import: a umask is set before a program starts, and reading it per write would race threads."""


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and ``os.replace``.

    Concurrent writers of the same path (processes sharing a cache) each replace the file whole; the last one
    wins. The data is fsynced first, so a crash right after the rename cannot leave an empty file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
