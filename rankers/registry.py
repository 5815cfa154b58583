"""Backends registered by name: adding a ranker is one new module plus one entry in ``BACKENDS``.

Each backend module defines ``Config`` (a ``rankers.config.RankerConfig`` subclass, ``extra="forbid"``) and
``build(config) -> Ranker`` (the ``Backend`` protocol). ``BACKENDS`` maps a name to a loader: a three-line function
that imports the module and returns it, so an IDE (and a reader) goes straight from the name to its module, while
``import rankers`` stays cheap and a backend whose optional dependency (vllm, openai) is missing only fails when
that backend is chosen. A recipe's ranker block is validated against ``Config`` before any work starts.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol

from pydantic import ValidationError

from rankers.base import Ranker
from rankers.config import RankerConfig, RankerConfigError


class Backend(Protocol):
    """What a backend module defines: its keys and how a ranker is built from them."""

    Config: type[RankerConfig]

    def build(self, config: Any) -> Ranker: ...


def _function() -> Backend:
    from rankers.backends import function

    return function


def _teacher_logprob() -> Backend:
    from rankers.backends import teacher_logprob

    return teacher_logprob


def _openai() -> Backend:
    from rankers.backends import openai_judge

    return openai_judge


def _vllm() -> Backend:
    from rankers.backends import vllm_judge

    return vllm_judge


def _reward_model() -> Backend:
    from rankers.backends import reward_model

    return reward_model


def _pairwise() -> Backend:
    from rankers.backends import pairwise

    return pairwise


def _ensemble() -> Backend:
    from rankers.backends import ensemble

    return ensemble


def _fastchat() -> Backend:
    from rankers.backends import fastchat_review

    return fastchat_review


BACKENDS: dict[str, Callable[[], Backend]] = {
    "function": _function,
    "teacher_logprob": _teacher_logprob,
    "openai": _openai,
    "vllm": _vllm,
    "reward_model": _reward_model,
    "pairwise": _pairwise,
    "ensemble": _ensemble,
    "fastchat": _fastchat,
}
"""Backend name -> the loader of its module."""


def backend_module(name: str) -> Backend:
    """The module of backend ``name``, imported now; an unknown name is a ``RankerConfigError`` listing the known."""
    if name not in BACKENDS:
        raise RankerConfigError(f"unknown ranker backend {name!r} (known: {', '.join(sorted(BACKENDS))})")
    return BACKENDS[name]()


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
