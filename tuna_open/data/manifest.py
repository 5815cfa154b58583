"""A stage's ``manifest.json``: written last and atomically, so its presence means the stage finished.

Its own module because three readers need it (the runner's cache check, the report re-rendered from a run
directory, and the rank stage keying its cache by the fingerprints of the models it loads) and none of them
should import another to get it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuna_open.data.jsonl import atomic_write_text

NAME = "manifest.json"


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    """The manifest of the stage whose directory is ``stage_dir``; None when the stage has not finished."""
    path = stage_dir / NAME
    return json.loads(path.read_text()) if path.exists() else None


def write_manifest(stage_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(stage_dir / NAME, json.dumps(manifest, indent=2, default=str))


def fingerprint_of(output: Path, default: str) -> str:
    """The fingerprint of the stage that wrote ``output`` (its primary artifact), or ``default`` if unknown."""
    return str((read_manifest(output.parent) or {}).get("fingerprint", default))
