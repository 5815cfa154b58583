"""A file's content hash: what fingerprints, stage manifests and ``gguf:`` model references identify a file by.

In the data layer, below both its users (``tuna_open.models`` and ``tuna_open.pipeline``), so neither imports the
other for it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(path: Path) -> str:
    """The sha256 of ``path``'s bytes, read in 1 MiB chunks (model files do not fit in memory twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
