"""Resolving model references (see the package docstring) to Hugging Face directories."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tuna_open.data.digest import input_digest
from tuna_open.errors import UserError
from tuna_open.models.gguf import convert_gguf
from tuna_open.models.shipped import SHIPPED, ensure_gguf

GGUF_PREFIX = "gguf:"


def cache_root() -> Path:
    """``$TUNA_OPEN_CACHE``, else ``~/.cache/tuna-open``: converted models are shared by every run."""
    return Path(os.environ.get("TUNA_OPEN_CACHE") or Path.home() / ".cache" / "tuna-open")


def is_model_ref(value: Any) -> bool:
    return isinstance(value, str) and (value in SHIPPED or value.startswith(GGUF_PREFIX))


def _gguf_path(ref: str) -> Path:
    path = Path(ref[len(GGUF_PREFIX):]).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"{ref}: GGUF file not found")
    return path


def model_identity(ref: str) -> str:
    """What a fingerprint should hash for ``ref``: shipped names are pinned; a GGUF path is its content."""
    if ref.startswith(GGUF_PREFIX):
        return f"gguf-sha256:{input_digest(_gguf_path(ref))}"
    return ref


def resolve_model(ref: str) -> str:
    """A directory or hub id ``from_pretrained`` loads: references are converted (once) and cached."""
    if ref in SHIPPED:
        shipped = SHIPPED[ref]
        return str(convert_gguf(ensure_gguf(shipped, cache_root()), shipped.sha256, cache_root()))
    if ref.startswith(GGUF_PREFIX):
        path = _gguf_path(ref)
        return str(convert_gguf(path, input_digest(path), cache_root()))
    return ref


def resolve_model_refs(value: Any, resolve: Any = resolve_model) -> Any:
    """Every model reference inside a (nested) config value replaced by ``resolve(ref)``."""
    if is_model_ref(value):
        return resolve(value)
    if isinstance(value, dict):
        return {k: resolve_model_refs(v, resolve) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [resolve_model_refs(v, resolve) for v in value]
    return value
