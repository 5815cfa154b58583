"""A file's content hash: what fingerprints, stage manifests and ``gguf:`` model references identify a file by.

In the data layer, below both its users (``tuna_open.models`` and ``tuna_open.pipeline``), so neither imports the
other for it.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


def file_digest(path: Path) -> str:
    """The sha256 of ``path``'s bytes, read in 1 MiB chunks (model files do not fit in memory twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def input_digest(path: Path) -> str:
    """``file_digest`` of an input file (recipe data, a ``gguf:`` model), computed once per content: memoised by
    size and modification time, as ``tuna_open.pipeline.integrity`` identifies an unchanged file. The runner
    fingerprints every stage twice (today's and the legacy form) and many stages read the same data file."""
    stat = path.stat()
    return _memoised_digest(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _memoised_digest(path: Path, size: int, mtime_ns: int) -> str:
    return file_digest(path)
