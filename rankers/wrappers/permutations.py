"""Permutation debiasing: judge each request under k candidate orders and Borda-aggregate the verdicts.

LLM judges favour some presentation positions (often the first). Showing the candidates in k different orders
and combining the mapped-back orders cancels much of that bias, and the disagreement between the k verdicts
measures how consistent the judge is. The first presentation is always the original order, so k=1 is exactly
the paper's single judgement. Presentation orders are seeded by the request's content (not its id or batch),
so a re-run or a resumed run shows the judge the same orders and the cache stays valid.

Per request, ``Ranking.metadata`` holds ``self_consistency`` (mean pairwise Kendall τ between the k verdicts,
in candidate space), ``position0_first`` (fraction of verdicts that ranked whatever was shown first as best;
``position0_expected`` = 1/n for an unbiased judge) and each presentation's mapped-back order or error.
Failed presentations are left out of the aggregate; if all fail, the request fails.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import threading
from typing import Any, Iterator, Sequence

from rankers.aggregate import borda, mean_pairwise_tau
from rankers.base import Ranker, Ranking, RankRequest, close_if_closable, in_order, rank_as_completed


def presentation_orders(n: int, k: int, rng: random.Random) -> list[list[int]]:
    """k orders of range(n): the identity first, then distinct shuffles while distinct ones remain."""
    orders = [list(range(n))]
    possible = math.factorial(n)
    while len(orders) < k:
        perm = list(range(n))
        rng.shuffle(perm)
        if perm in orders and len(orders) < possible:
            continue
        orders.append(perm)
    return orders


def _content_seed(seed: int, request: RankRequest) -> str:
    content = json.dumps([seed, request.prompt, request.input, request.candidates], ensure_ascii=False)
    return hashlib.sha256(content.encode()).hexdigest()


def _permute(items: list[Any] | None, perm: Sequence[int]) -> list[Any] | None:
    return None if items is None else [items[j] for j in perm]


class PermutedRanker:
    """Wraps any ranker; every request costs k inner judgements, sent to the inner ranker as one batch."""

    def __init__(self, inner: Ranker, k: int, seed: int = 0) -> None:
        if k < 1:
            raise ValueError(f"permutations must be >= 1, got {k}")
        self.inner = inner
        self.k = k
        self.seed = seed
        self.name = inner.name
        self._lock = threading.Lock()
        self._consistency: list[float] = []
        self._verdicts = 0
        self._position0_first = 0
        self._position0_expected = 0.0

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        return in_order(self.rank_as_completed(requests), len(requests))

    def rank_as_completed(self, requests: Sequence[RankRequest]) -> Iterator[tuple[int, Ranking]]:
        """Each request's combined ranking as soon as its k presentations are judged (all k sent as one batch)."""
        plans = [presentation_orders(len(r.candidates), self.k, random.Random(_content_seed(self.seed, r)))
                 for r in requests]
        presented = [dataclasses.replace(r, candidates=_permute(r.candidates, p), logprobs=_permute(r.logprobs, p),
                                         lengths=_permute(r.lengths, p), metadata=dict(r.metadata))
                     for r, perms in zip(requests, plans) for p in perms]
        verdicts: dict[int, dict[int, Ranking]] = {}
        for j, verdict in rank_as_completed(self.inner, presented):
            i = j // self.k
            got = verdicts.setdefault(i, {})
            got[j % self.k] = verdict
            if len(got) == self.k:
                yield i, self._combine(plans[i], [got[p] for p in range(self.k)])

    def _combine(self, perms: list[list[int]], verdicts: list[Ranking]) -> Ranking:
        n = len(perms[0])
        details: list[dict[str, Any]] = []
        orders: list[list[int]] = []
        first_shown_won = 0
        for perm, verdict in zip(perms, verdicts):
            if verdict.failed:
                details.append({"presented": perm, "error": verdict.error})
                continue
            orders.append([perm[j] for j in verdict.order])
            first_shown_won += int(bool(verdict.order) and verdict.order[0] == 0)
            details.append({"presented": perm, "order": orders[-1]})
        raw = "\n\n".join(f"--- presentation {j}: {perm} ---\n{v.raw}" for j, (perm, v) in
                          enumerate(zip(perms, verdicts)) if v.raw is not None) or None
        if not orders:
            return Ranking.failure(f"all {self.k} presentations failed; first error: {verdicts[0].error}", raw=raw,
                                   presentations=details)
        order, points = borda(orders)
        consistency = mean_pairwise_tau(orders)
        expected = 1 / n if n else 0.0
        with self._lock:
            if consistency is not None:
                self._consistency.append(consistency)
            self._verdicts += len(orders)
            self._position0_first += first_shown_won
            self._position0_expected += expected * len(orders)
        return Ranking(order=order, scores=points, raw=raw, metadata={
            "permutations": self.k, "failed_permutations": self.k - len(orders), "self_consistency": consistency,
            "position0_first": first_shown_won / len(orders), "position0_expected": expected,
            "presentations": details})

    @property
    def stats(self) -> dict[str, Any]:
        """The inner ranker's stats plus judge consistency and position bias over everything ranked so far."""
        with self._lock:
            own: dict[str, Any] = {
                "permutations": self.k,
                "self_consistency_mean": (sum(self._consistency) / len(self._consistency)
                                          if self._consistency else None),
                "position0_first_rate": self._position0_first / self._verdicts if self._verdicts else None,
                "position0_expected_rate": self._position0_expected / self._verdicts if self._verdicts else None,
            }
        return {**getattr(self.inner, "stats", {}), **own}

    def close(self) -> None:
        close_if_closable(self.inner)
