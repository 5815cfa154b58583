"""Backend ``ensemble``: several rankers vote, combined by weighted Borda count.

Why Borda over orders and not a mix of scores: members speak different units (log-likelihoods, 0-15 judge
totals, reward logits), but every member produces an order. Each member is a full flat ranker config,
validated like a top-level one (so members may use ``permutations`` or their own ``cache_dir``). A member's
failure on a request leaves that member out of the vote; the request fails only when every member failed.
"""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import Field, model_validator

from rankers.aggregate import borda
from rankers.base import Ranker, Ranking, RankRequest, close_if_closable
from rankers.config import RankerConfig, RankerConfigError
from rankers.registry import build_ranker, validate_config


class Config(RankerConfig):
    rankers: list[dict[str, Any]] = Field(min_length=1)
    """Member ranker configs, each with its own ``backend``."""
    weights: list[float] | None = None
    """One non-negative weight per member (default: equal)."""

    @model_validator(mode="after")
    def _check_members(self) -> "Config":
        for i, member in enumerate(self.rankers):
            if not isinstance(member.get("backend"), str):
                raise ValueError(f"rankers[{i}] needs a 'backend'")
            try:
                validate_config(member)
            except RankerConfigError as err:
                raise ValueError(f"rankers[{i}]: {err}") from None
        if self.weights is not None:
            if len(self.weights) != len(self.rankers):
                raise ValueError(f"{len(self.weights)} weights for {len(self.rankers)} rankers")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError("weights must be non-negative with a positive sum")
        return self


class EnsembleRanker:
    """Asks every member about the whole batch, then Borda-combines their orders per request."""

    name = "ensemble"

    def __init__(self, members: Sequence[Ranker], weights: Sequence[float] | None = None) -> None:
        self.members = list(members)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.members)

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        votes = [m.rank(requests) for m in self.members]
        return [self._combine([v[i] for v in votes]) for i in range(len(requests))]

    def _combine(self, rankings: list[Ranking]) -> Ranking:
        members = [{"backend": m.name, **({"error": r.error} if r.failed else {"order": r.order})}
                   for m, r in zip(self.members, rankings)]
        ok = [(r.order, w) for r, w in zip(rankings, self.weights) if not r.failed and w > 0]
        if not ok:
            return Ranking.failure("every member failed: " + "; ".join(f"{m['backend']}: {m.get('error')}"
                                                                       for m in members), members=members)
        order, points = borda([o for o, _ in ok], [w for _, w in ok])
        return Ranking(order=order, scores=points, metadata={"members": members})

    @property
    def stats(self) -> dict[str, Any]:
        """Members' stats, flattened as ``<index>_<backend>.<key>`` so the report can print them."""
        return {f"{i}_{m.name}.{k}": v for i, m in enumerate(self.members)
                for k, v in getattr(m, "stats", {}).items()}

    def close(self) -> None:
        for m in self.members:
            close_if_closable(m)


def build(config: Config) -> EnsembleRanker:
    return EnsembleRanker([build_ranker(member) for member in config.rankers], config.weights)
