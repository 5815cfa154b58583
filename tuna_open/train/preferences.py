"""From rankings to what the TRL baselines consume: preference pairs (DPO, reward model) and rewards (GRPO, RLOO).

Every ranker (an LLM judge, a reward model, a verifier) produces the same best-first ``order`` over a prompt's
candidates, so the baselines are comparable with Tuna: they learn from exactly the rankings Tuna learns from.
Failed rankings carry no order and contribute nothing; they are never turned into invented preferences.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Literal, Mapping, Sequence, TypedDict

PairMode = Literal["all_pairs", "best_vs_rest", "best_vs_worst"]


class PreferencePair(TypedDict):
    id: str
    prompt: str
    """The templated, model-facing prompt the candidates were sampled with."""
    chosen: str
    rejected: str


def preference_pairs(
    candidates: Sequence[Mapping[str, Any]],
    rankings: Sequence[Mapping[str, Any]],
    mode: PairMode = "best_vs_rest",
) -> list[PreferencePair]:
    """Turn ranking records into ``{"id", "prompt", "chosen", "rejected"}`` pairs, joined to candidates by ``id``.

    ``all_pairs`` yields every ordered pair (k·(k-1)/2 per ranking), ``best_vs_rest`` the best against each other
    candidate, ``best_vs_worst`` one pair. A pair is skipped when it states no preference: the two texts are the
    same up to surrounding whitespace, or the ranker gave both the same score (its order then breaks the tie by
    index, which is arbitrary — a pass/fail verifier yields only pass-over-fail pairs this way). Failed rankings
    are skipped. A ranking whose id has no candidates record, or whose order is not a permutation of the
    candidates, raises ValueError naming the id: that is a pipeline bug, not data to train on.
    """
    by_id = {str(c["id"]): c for c in candidates}
    pairs: list[PreferencePair] = []
    for ranking in rankings:
        if ranking.get("failed"):
            continue
        rid = str(ranking["id"])
        record = by_id.get(rid)
        if record is None:
            raise ValueError(f"ranking {rid!r} has no candidates record")
        texts: list[str] = record["candidates"]
        order: list[int] = list(ranking["order"])
        if sorted(order) != list(range(len(texts))):
            raise ValueError(f"ranking {rid!r}: order {order} is not a permutation of {len(texts)} candidates")
        scores = ranking.get("scores")
        for better, worse in _ranked_pairs(order, mode):
            if texts[better].strip() == texts[worse].strip():
                continue
            if scores is not None and scores[better] == scores[worse]:
                continue
            pairs.append({"id": rid, "prompt": record["prompt"], "chosen": texts[better], "rejected": texts[worse]})
    return pairs


def _ranked_pairs(order: list[int], mode: PairMode) -> list[tuple[int, int]]:
    """(better, worse) candidate indices of a best-first order under ``mode``."""
    if len(order) < 2:
        return []
    if mode == "all_pairs":
        return list(combinations(order, 2))
    if mode == "best_vs_rest":
        return [(order[0], worse) for worse in order[1:]]
    if mode == "best_vs_worst":
        return [(order[0], order[-1])]
    raise ValueError(f"unknown pair mode {mode!r}")


def rank_rewards(order: Sequence[int]) -> list[float]:
    """Per-candidate rewards from a best-first order alone: best = 1, worst = 0, linear in between.

    Linear in rank because an order says nothing about distances; GRPO and RLOO normalise rewards within a
    prompt's group anyway, so only the spacing matters, and even spacing is the assumption-free choice.
    """
    n = len(order)
    rewards = [0.0] * n
    for rank, index in enumerate(order):
        rewards[index] = 1.0 if n == 1 else 1.0 - rank / (n - 1)
    return rewards


def ranking_rewards(order: Sequence[int], scores: Sequence[float] | None = None) -> list[float]:
    """Per-candidate rewards of one ranking: the ranker's own scores where it gives them, else ``rank_rewards``.

    Scores keep the ranker's notion of distance (a verifier's pass/fail, a reward model's margin), which rank
    positions would erase.
    """
    if scores is None:
        return rank_rewards(order)
    if len(scores) != len(order):
        raise ValueError(f"{len(scores)} scores for {len(order)} candidates")
    return [float(s) for s in scores]
