"""Combining and comparing rankings: Borda count, Kendall's τ, top-1 agreement.

Orders are best-first lists of candidate indices, each a permutation of ``range(n)``. These few functions are
shared by permutation debiasing, ensembles, pairwise tournaments' reports and the ``agree`` command, so they
live in one place and are tested once against hand-computed values.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Sequence


def check_order(order: Sequence[int], n: int) -> None:
    if sorted(order) != list(range(n)):
        raise ValueError(f"{list(order)} is not an order of {n} candidates")


def kendall_tau(a: Sequence[int], b: Sequence[int]) -> float:
    """Kendall's τ_a between two orders of the same candidates: 1 identical, -1 reversed (1.0 for n < 2)."""
    n = len(a)
    check_order(a, n)
    check_order(b, n)
    if n < 2:
        return 1.0
    pos_a = {c: i for i, c in enumerate(a)}
    pos_b = {c: i for i, c in enumerate(b)}
    net = sum(1 if (pos_a[x] - pos_a[y]) * (pos_b[x] - pos_b[y]) > 0 else -1 for x, y in combinations(range(n), 2))
    return net / (n * (n - 1) / 2)


def mean_pairwise_tau(orders: Sequence[Sequence[int]]) -> float | None:
    """Self-consistency of several orders of the same candidates (None with fewer than two)."""
    pairs = list(combinations(orders, 2))
    return sum(kendall_tau(a, b) for a, b in pairs) / len(pairs) if pairs else None


def borda(orders: Sequence[Sequence[int]], weights: Sequence[float] | None = None) -> tuple[list[int], list[float]]:
    """Weighted Borda count: (combined order, per-candidate mean points).

    A candidate at position p of an order of n earns n-1-p points times the order's weight; points are divided
    by the total weight, so they stay in [0, n-1]. Ties are broken by the first order's positions, so the
    result is deterministic and a single order is returned unchanged.
    """
    if not orders:
        raise ValueError("borda needs at least one order")
    weights = [1.0] * len(orders) if weights is None else list(weights)
    if len(weights) != len(orders):
        raise ValueError(f"{len(weights)} weights for {len(orders)} orders")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {weights}")
    n = len(orders[0])
    points = [0.0] * n
    for order, weight in zip(orders, weights):
        check_order(order, n)
        for pos, c in enumerate(order):
            points[c] += weight * (n - 1 - pos)
    total = sum(weights)
    points = [p / total for p in points]
    first = {c: i for i, c in enumerate(orders[0])}
    return sorted(range(n), key=lambda c: (-points[c], first[c])), points


def top1_agree(a: Sequence[int], b: Sequence[int]) -> bool:
    """Whether two orders pick the same best candidate."""
    return bool(a) and bool(b) and a[0] == b[0]


def copeland(wins: Sequence[Sequence[float]]) -> list[float]:
    """Copeland scores from a pairwise win matrix (``wins[i][j]``: judgements where i beat j; a tie adds 0.5 to
    both): a point for each opponent beaten more often than not, half a point for an even record."""
    n = len(wins)
    return [sum(1.0 if wins[i][j] > wins[j][i] else 0.5 if wins[i][j] == wins[j][i] else 0.0
                for j in range(n) if j != i) for i in range(n)]


def bradley_terry(wins: Sequence[Sequence[float]], prior: float = 0.5, iterations: int = 500,
                  tol: float = 1e-10) -> list[float]:
    """Bradley–Terry log-strengths fitted by Hunter's MM iterations (mean-centred).

    ``prior`` pseudo-wins are added in both directions of every pair, which keeps strengths finite when a
    candidate wins every comparison and pulls sparse evidence towards equality.
    """
    n = len(wins)
    if n == 0:
        return []
    w = [[wins[i][j] + prior if i != j else 0.0 for j in range(n)] for i in range(n)]
    strength = [1.0] * n
    for _ in range(iterations):
        new = []
        for i in range(n):
            denom = sum((w[i][j] + w[j][i]) / (strength[i] + strength[j]) for j in range(n) if j != i)
            new.append(sum(w[i]) / denom if denom else strength[i])
        total = sum(new)
        new = [s * n / total for s in new]
        done = max(abs(a - b) for a, b in zip(new, strength)) < tol
        strength = new
        if done:
            break
    logs = [math.log(s) for s in strength]
    mean = sum(logs) / n
    return [x - mean for x in logs]
