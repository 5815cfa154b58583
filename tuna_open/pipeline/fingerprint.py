"""Fingerprints: a stage re-runs exactly when something that determines its output changed.

A fingerprint hashes the stage's effective config, with every ``@stage`` reference replaced by that stage's
fingerprint (so changes propagate downstream), every ``gguf:PATH`` model reference by the file's content, the
content of every local data file it reads, and the tuna-open version (a code change that alters outputs should bump it).

Only what changes a stage's result is hashed: throughput and connection keys (``max_concurrency``,
``batch_size``, ``timeout``, retry counts, a pool of ``base_url``, ``progress_bar``, ...; ``result_neutral``) are
left out at any depth, so raising a concurrency never re-runs (re-pays) a finished stage. Fingerprints from
before that (``legacy=True``: the same hash with those keys kept) still identify their stages, so upgrading
re-runs nothing either.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from rankers.llm.client_settings import redact_url
from rankers.wrappers.cache import result_neutral
from tuna_open import __version__
from tuna_open.data.digest import input_digest
from tuna_open.models import model_identity, resolve_model_refs
from tuna_open.recipe.refs import substitute_refs

SECRET_KEYS = frozenset({"api_key"})
PIPELINE_NEUTRAL_KEYS = frozenset({"progress_bar"})
"""Result-neutral keys of tuna-open's own configs (training settings), beyond the rankers' ``result_neutral``."""


def without_neutral(value: Any) -> Any:
    """``value`` without the keys that cannot change a result, at any depth."""
    if isinstance(value, dict):
        return {k: without_neutral(v) for k, v in value.items()
                if not (k in PIPELINE_NEUTRAL_KEYS or result_neutral(k, v))}
    if isinstance(value, list):
        return [without_neutral(v) for v in value]
    return value


def without_secrets(value: Any, replacement: str | None = None) -> Any:
    """``value`` with literal secrets removed (or replaced), and the credentials of URLs masked: they never reach
    fingerprints or the run directory."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {k: (replacement if k in SECRET_KEYS and v else without_secrets(v, replacement))
                for k, v in value.items() if not (k in SECRET_KEYS and v and replacement is None)}
    if isinstance(value, list):
        return [without_secrets(v, replacement) for v in value]
    return value


def fingerprint(config: Mapping[str, Any], upstream: Mapping[str, str], files: list[Path], seed: int,
                legacy: bool = False) -> str:
    """The stage's fingerprint; ``legacy``: as computed before result-neutral keys were left out (``upstream``
    then holds legacy fingerprints too), to recognise stages finished by an earlier version."""
    config = without_secrets(dict(config))
    payload = {
        "version": __version__,
        "seed": seed,
        "config": resolve_model_refs(substitute_refs(config if legacy else without_neutral(config),
                                                     {k: f"fp:{v}" for k, v in upstream.items()}), model_identity),
        "files": {str(p): input_digest(p) for p in sorted(files)},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
