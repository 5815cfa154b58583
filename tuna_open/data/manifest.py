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
from tuna_open.errors import UserError

NAME = "manifest.json"


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    """The manifest of the stage whose directory is ``stage_dir``; None when the stage has not finished.

    Manifests are written atomically, so one that does not parse was damaged afterwards: a UserError naming it
    (and how to re-run the stage) instead of a traceback, and nothing is deleted.
    """
    path = stage_dir / NAME
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: damaged manifest ({err}); delete it to re-run the stage") from None
    if not isinstance(manifest, dict) or not {"fingerprint", "kind", "result"} <= manifest.keys():
        raise UserError(f"{path}: damaged manifest (not a stage manifest); delete it to re-run the stage")
    return manifest


def write_manifest(stage_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(stage_dir / NAME, json.dumps(manifest, indent=2, default=str))


def fingerprint_of(output: Path, default: str) -> str:
    """The fingerprint of the stage that wrote ``output`` (its primary artifact), or ``default`` if unknown."""
    return str((read_manifest(output.parent) or {}).get("fingerprint", default))
