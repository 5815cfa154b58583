"""Score and verifier functions that tests hand to the ``function`` ranker and to eval by import path
(``helpers.score_functions:NAME``), the way a user names their own module."""

from __future__ import annotations

import math

from rankers.base import RankRequest

QUALITY = {"best": 3, "good": 2, "ok": 1, "bad": 0}


def by_length(request: RankRequest) -> list[float]:
    return [float(len(c)) for c in request.candidates]


def by_quality(request: RankRequest) -> list[float]:
    return [float(QUALITY[c]) for c in request.candidates]


def wrong_size(request: RankRequest) -> list[float]:
    return [1.0]


def not_a_number(request: RankRequest) -> list[float]:
    return [math.nan for _ in request.candidates]


NOT_CALLABLE = 3


def overlap(request: RankRequest) -> list[float]:
    """Function ranker: words shared with the reference, shorter first among equals."""
    reference = set((request.reference or "").split())
    return [len(reference & set(c.split())) - 0.01 * len(c) for c in request.candidates]


def exact(response: str, reference: str) -> float:
    return float(response.strip() == reference.strip())


CALLS: list[str] = []
"""Ids of the requests ``counted`` scored: stands in for a paid judge, so a test can assert nothing was paid."""


def counted(request: RankRequest) -> list[float]:
    CALLS.append(str(request.id))
    return by_length(request)
