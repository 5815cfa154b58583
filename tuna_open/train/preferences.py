"""From rankings to what the TRL baselines consume: preference pairs (DPO, reward model) and rewards (GRPO, RLOO).

Every ranker (an LLM judge, a reward model, a verifier) produces the same best-first ``order`` over a prompt's
candidates, so the baselines are comparable with Tuna: they learn from exactly the rankings Tuna learns from.
Failed rankings carry no order and contribute nothing; they are never turned into invented preferences.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Literal, Mapping, Sequence, TypedDict

from rankers.base import is_permutation
from rankers.duplicates import same_response
from tuna_open.errors import UserError

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
    are skipped. The join is ``join_rankings``'s.
    """
    pairs: list[PreferencePair] = []
    for record, ranking in join_rankings(candidates, rankings):
        rid = str(ranking["id"])
        texts: list[str] = record["candidates"]
        order: list[int] = list(ranking["order"])
        scores = ranking.get("scores")
        for better, worse in _ranked_pairs(order, mode):
            if same_response(texts[better], texts[worse]):
                continue
            if scores is not None and scores[better] == scores[worse]:
                continue
            pairs.append({"id": rid, "prompt": record["prompt"], "chosen": texts[better], "rejected": texts[worse]})
    return pairs


def trl_preference_rows(pairs: Sequence[PreferencePair]) -> list[dict[str, str]]:
    """The pairs in TRL's non-conversational preference format (DPO, reward model): ``prompt``, ``chosen``,
    ``rejected`` only, so TRL's dataset preparation sees no extra columns (the ``id`` is ours)."""
    return [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]


def join_rankings(candidates: Sequence[Mapping[str, Any]],
                  rankings: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """``(candidates record, ranking)`` for every ranking that did not fail, joined by ``id`` (compared as strings).

    The one join of rankings with candidates (Tuna, DPO, reward model): every id must be unique on both sides and
    every ranking must match exactly one candidates record, and its order must be a permutation of that record's
    candidates. Anything else raises a UserError naming the id: training on a ranking joined to the wrong
    candidates, or on one of two records that share an id, would teach noise silently. Candidates records without
    a ranking are allowed (a rank stage may cover a subset of a larger candidates file).
    """
    by_id: dict[str, Mapping[str, Any]] = {}
    for c in candidates:
        if str(c["id"]) in by_id:
            raise UserError(f"candidates: duplicate id {str(c['id'])!r}")
        by_id[str(c["id"])] = c
    seen: set[str] = set()
    out = []
    for ranking in rankings:
        rid = str(ranking["id"])
        if rid in seen:
            raise UserError(f"rankings: duplicate id {rid!r}")
        seen.add(rid)
        record = by_id.get(rid)
        if record is None:
            raise UserError(f"ranking {rid!r} has no candidates record")
        if ranking.get("failed"):
            continue
        n = len(record["candidates"])
        if not is_permutation(ranking.get("order"), n):
            raise UserError(f"ranking {rid!r}: order {ranking.get('order')} is not a permutation of {n} candidates")
        out.append((record, ranking))
    return out


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
