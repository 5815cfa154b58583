"""Backends registered by name: adding a ranker is one new module plus one line in ``BACKENDS``.

Each backend module defines ``Config`` (a ``RankerConfig`` subclass, ``extra="forbid"``) and
``build(config) -> Ranker``. The registry maps a name to the module path and imports it on demand, so
``import rankers`` stays cheap and a backend whose optional dependency (vllm, openai) is missing only fails
when that backend is chosen. A recipe's ranker block is validated against ``Config`` before any work starts.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError

from rankers.base import Ranker

BACKENDS: dict[str, str] = {
    "function": "rankers.backends.function",
    "teacher_logprob": "rankers.backends.teacher_logprob",
    "openai": "rankers.backends.openai_judge",
    "vllm": "rankers.backends.vllm_judge",
    "reward_model": "rankers.backends.reward_model",
    "pairwise": "rankers.backends.pairwise",
    "ensemble": "rankers.backends.ensemble",
    "fastchat": "rankers.backends.fastchat_review",
}


class RankerConfig(BaseModel):
    """Keys every backend accepts. Backends subclass this and add their own."""

    model_config = ConfigDict(extra="forbid")

    backend: str
    permutations: int = 1
    """Judge each request under k shuffled candidate orders and aggregate by Borda (1 = the paper's setup)."""
    cache_dir: str | None = None
    """Content-addressed on-disk cache of results; re-runs make no new calls."""
    seed: int = 0


class RankerConfigError(ValueError):
    """A ranker config that cannot be used; the message names the offending key."""


def backend_module(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise RankerConfigError(f"unknown ranker backend {name!r} (known: {', '.join(sorted(BACKENDS))})")
    return importlib.import_module(BACKENDS[name])


def validate_config(config: Mapping[str, Any]) -> RankerConfig:
    """Validate a flat ranker config (``backend`` plus that backend's keys); raise RankerConfigError with one line."""
    module = backend_module(str(config.get("backend")))
    try:
        return module.Config.model_validate(dict(config))
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise RankerConfigError(f"ranker {config['backend']!r}: {loc}: {first['msg']}") from None


def build_ranker(config: Mapping[str, Any]) -> Ranker:
    """Build a ranker from a flat config dict, wrapping it with permutation debiasing and caching if asked."""
    cfg = validate_config(config)
    ranker: Ranker = backend_module(cfg.backend).build(cfg)
    if cfg.permutations > 1:
        from rankers.wrappers.permutations import PermutedRanker

        ranker = PermutedRanker(ranker, k=cfg.permutations, seed=cfg.seed)
    if cfg.cache_dir:
        from rankers.wrappers.cache import CachedRanker

        ranker = CachedRanker(ranker, cache_dir=cfg.cache_dir, key_config=cfg.model_dump(exclude={"cache_dir"}))
    return ranker
