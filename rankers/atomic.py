"""Atomic file writes: readers see either the old file or the complete new one, never a torn one.

Here, in the standalone ``rankers`` package, because its cache needs it and ``rankers`` never imports
``tuna_open``; ``tuna_open.data.jsonl`` (every artifact and manifest of a run) uses the same function.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and ``os.replace``.

    Concurrent writers of the same path (processes sharing a cache) each replace the file whole; the last one
    wins. The data is fsynced first, so a crash right after the rename cannot leave an empty file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
