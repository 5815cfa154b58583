"""Rankings → preference pairs and rewards: the one conversion every TRL baseline depends on."""

from __future__ import annotations

import pytest

from tuna_open.errors import UserError
from tuna_open.train.preferences import preference_pairs, rank_rewards, ranking_rewards


def _candidates(id: str, texts: list[str]) -> dict:
    return {"id": id, "instruction": f"task {id}", "input": "", "prompt": f"P{id}:", "candidates": texts,
            "source": "test"}


CANDIDATES = [_candidates("a", ["A0", "A1", "A2", "A3"]), _candidates("b", ["B0", "B1", "B2"])]
RANKINGS = [{"id": "a", "order": [2, 0, 3, 1], "ranker": "t"}, {"id": "b", "order": [1, 2, 0], "ranker": "t"}]


def _as_tuples(pairs: list[dict]) -> list[tuple[str, str, str]]:
    return [(p["id"], p["chosen"], p["rejected"]) for p in pairs]


def test_best_vs_rest_pairs_best_with_every_other_candidate() -> None:
    pairs = preference_pairs(CANDIDATES, RANKINGS)
    assert _as_tuples(pairs) == [("a", "A2", "A0"), ("a", "A2", "A3"), ("a", "A2", "A1"),
                                 ("b", "B1", "B2"), ("b", "B1", "B0")]
    assert pairs[0]["prompt"] == "Pa:" and pairs[-1]["prompt"] == "Pb:"


def test_all_pairs_follow_the_order() -> None:
    pairs = preference_pairs(CANDIDATES, RANKINGS, mode="all_pairs")
    assert len(pairs) == 6 + 3
    assert _as_tuples(pairs)[:6] == [("a", "A2", "A0"), ("a", "A2", "A3"), ("a", "A2", "A1"),
                                     ("a", "A0", "A3"), ("a", "A0", "A1"), ("a", "A3", "A1")]


def test_best_vs_worst_is_one_pair_per_ranking() -> None:
    assert _as_tuples(preference_pairs(CANDIDATES, RANKINGS, mode="best_vs_worst")) == [
        ("a", "A2", "A1"), ("b", "B1", "B0")]


def test_failed_rankings_and_single_candidates_give_no_pairs() -> None:
    rankings = [{"id": "a", "order": [], "failed": True, "error": "timeout", "ranker": "t"},
                {"id": "c", "order": [0], "ranker": "t"}]
    candidates = [*CANDIDATES, _candidates("c", ["only"])]
    assert preference_pairs(candidates, rankings, mode="all_pairs") == []


def test_identical_texts_and_tied_scores_state_no_preference() -> None:
    candidates = [_candidates("x", ["same", " same\n", "other", "pass"])]
    # 1 and 0 are the same text up to whitespace; 3 and 2 tie on score (a verifier's pass/fail).
    rankings = [{"id": "x", "order": [1, 0, 3, 2], "scores": [1.0, 1.0, 0.0, 0.0], "ranker": "t"}]
    pairs = preference_pairs(candidates, rankings, mode="all_pairs")
    assert _as_tuples(pairs) == [("x", " same\n", "pass"), ("x", " same\n", "other"),
                                 ("x", "same", "pass"), ("x", "same", "other")]


def test_ranking_without_candidates_names_the_id() -> None:
    with pytest.raises(UserError, match="'zz'"):
        preference_pairs(CANDIDATES, [*RANKINGS, {"id": "zz", "order": [0, 1], "ranker": "t"}])


def test_order_that_is_not_a_permutation_is_rejected() -> None:
    with pytest.raises(UserError, match="'b'.*not a permutation"):
        preference_pairs(CANDIDATES, [{"id": "b", "order": [0, 0, 1], "ranker": "t"}])


def test_integer_ids_join_with_string_ids() -> None:
    candidates = [{**_candidates("7", ["x", "y"]), "id": 7}]
    assert _as_tuples(preference_pairs(candidates, [{"id": "7", "order": [1, 0], "ranker": "t"}])) == [("7", "y", "x")]


def test_rank_rewards_are_linear_from_best_1_to_worst_0() -> None:
    assert rank_rewards([2, 0, 1]) == [0.5, 0.0, 1.0]
    assert rank_rewards([3, 1, 0, 2]) == pytest.approx([1 / 3, 2 / 3, 0.0, 1.0])
    assert rank_rewards([0]) == [1.0]
    assert rank_rewards([]) == []


def test_ranking_rewards_prefer_the_rankers_scores() -> None:
    assert ranking_rewards([1, 0], [0.25, 3]) == [0.25, 3.0]
    assert ranking_rewards([1, 0], None) == [0.0, 1.0]
    with pytest.raises(ValueError, match="3 scores for 2"):
        ranking_rewards([1, 0], [1.0, 2.0, 3.0])
