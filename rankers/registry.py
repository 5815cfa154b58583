"""Backends registered by name: adding a ranker is one module plus one ``@register`` line.

Each backend declares a pydantic config model (``extra="forbid"``) so a recipe's ranker block is validated
before any work starts, and a factory that builds the ranker from the validated config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError

from rankers.base import Ranker


class RankerConfig(BaseModel):
    """Keys every backend accepts. Backends subclass this and add their own."""

    model_config = ConfigDict(extra="forbid")

    backend: str
    permutations: int = 1
    """Judge each request under k shuffled candidate orders and aggregate by Borda (1 = the paper's setup)."""
    cache_dir: str | None = None
    """Content-addressed on-disk cache of results; re-runs make no new calls."""
    seed: int = 0


@dataclass(frozen=True)
class Backend:
    name: str
    config_model: type[RankerConfig]
    factory: Callable[[Any], Ranker]


REGISTRY: dict[str, Backend] = {}


class RankerConfigError(ValueError):
    """A ranker config that cannot be used; the message names the offending key."""


def register(name: str, config_model: type[RankerConfig]) -> Callable[[Callable[[Any], Ranker]], Callable[[Any], Ranker]]:
    def deco(factory: Callable[[Any], Ranker]) -> Callable[[Any], Ranker]:
        if name in REGISTRY:
            raise RuntimeError(f"ranker backend {name!r} registered twice")
        REGISTRY[name] = Backend(name, config_model, factory)
        return factory

    return deco


def validate_config(config: Mapping[str, Any]) -> RankerConfig:
    """Validate a flat ranker config (``backend`` plus that backend's keys); raise RankerConfigError with one line."""
    backend = config.get("backend")
    if backend not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise RankerConfigError(f"unknown ranker backend {backend!r} (known: {known})")
    try:
        return REGISTRY[backend].config_model.model_validate(dict(config))
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise RankerConfigError(f"ranker {backend!r}: {loc}: {first['msg']}") from None


def build_ranker(config: Mapping[str, Any]) -> Ranker:
    """Build a ranker from a flat config dict, wrapping it with permutation debiasing and caching if asked."""
    cfg = validate_config(config)
    ranker = REGISTRY[cfg.backend].factory(cfg)
    if cfg.permutations > 1:
        from rankers.permutations import PermutedRanker

        ranker = PermutedRanker(ranker, k=cfg.permutations, seed=cfg.seed)
    if cfg.cache_dir:
        from rankers.cache import CachedRanker

        ranker = CachedRanker(ranker, cache_dir=cfg.cache_dir, key_config=cfg.model_dump(exclude={"cache_dir"}))
    return ranker
