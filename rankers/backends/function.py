"""Backend ``function``: rank with any Python function, e.g. a task verifier against the reference answer.

The function is named ``"package.module:attribute"`` and called once per request as::

    def score(request: rankers.RankRequest) -> list[float]: ...

returning one score per candidate (higher is better). It receives the whole request (prompt, input,
reference, candidates, precomputed logprobs, metadata such as the task name) so a verifier can use whatever it
needs without the ranker guessing a signature. The callable is imported when the config is validated, so a
typo in a recipe fails before any training starts.
"""

from __future__ import annotations

import importlib
import math
from typing import Callable, Sequence

from pydantic import field_validator

from rankers.base import Ranking, RankRequest, order_from_scores
from rankers.config import RankerConfig

ScoreFn = Callable[[RankRequest], Sequence[float]]


class Config(RankerConfig):
    callable: str
    """``"package.module:function"`` taking a ``RankRequest`` and returning one float per candidate."""

    @field_validator("callable")
    @classmethod
    def _importable(cls, value: str) -> str:
        resolve(value)
        return value


def resolve(spec: str) -> ScoreFn:
    """Import ``"module:attr"``; raise ValueError with one line naming what could not be found."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{spec!r} is not of the form 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import module {module_name!r} for {spec!r}: {err}") from None
    fn = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise ValueError(f"{spec!r} is not callable")
    return fn


class FunctionRanker:
    """Orders candidates by the scores of a user function; a score list of the wrong size is a bug, so it raises."""

    name = "function"

    def __init__(self, fn: ScoreFn, spec: str) -> None:
        self.fn = fn
        self.spec = spec

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        return [self._rank_one(r) for r in requests]

    def _rank_one(self, request: RankRequest) -> Ranking:
        scores = [float(s) for s in self.fn(request)]
        if len(scores) != len(request.candidates):
            raise ValueError(f"{self.spec} returned {len(scores)} scores for {len(request.candidates)} candidates "
                             f"(request {request.id})")
        if not all(math.isfinite(s) for s in scores):
            raise ValueError(f"{self.spec} returned a non-finite score for request {request.id}: {scores}")
        return Ranking(order=order_from_scores(scores), scores=scores)


def build(config: Config) -> FunctionRanker:
    return FunctionRanker(resolve(config.callable), config.callable)
