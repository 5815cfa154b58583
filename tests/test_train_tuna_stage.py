"""How rankings become Tuna examples: tie tiers from the ranker's scores and the MLE term's candidates."""

from __future__ import annotations

import pytest

from tuna_open.errors import UserError
from tuna_open.stages.rank import tie_counts
from tuna_open.stages.train_tuna import ranked_examples, score_tiers

CANDIDATES = [{"id": "a", "prompt": "P", "candidates": ["w1", "right", "w2", "half"]}]
RANKINGS = [{"id": "a", "order": [1, 3, 0, 2], "scores": [0.0, 1.0, 0.0, 0.4]}]


def test_score_tiers_group_equal_neighbours():
    assert score_tiers([1.0, 0.4, 0.0, 0.0]) == [0, 1, 2, 2]
    assert score_tiers([0.0, 0.0, 0.0]) == [0, 0, 0]
    assert score_tiers([3.0, 2.0, 1.0]) == [0, 1, 2]


@pytest.mark.parametrize("ties,mle,tiers,imitated", [
    ("mask", "all", [0, 1, 2, 2], [True, True, True, True]),
    ("strict", "all", [0, 1, 2, 3], [True, True, True, True]),
    ("mask", "best", [0, 1, 2, 2], [True, False, False, False]),
    ("mask", "accepted", [0, 1, 2, 2], [True, False, False, False]),
])
def test_ranked_examples_carry_tiers_and_mle_choice(ties, mle, tiers, imitated):
    [ex] = ranked_examples(CANDIDATES, RANKINGS, ties=ties, mle=mle, accept_score=1.0)
    assert ex["candidates"] == ["right", "half", "w1", "w2"]
    assert ex["tiers"] == tiers and ex["mle"] == imitated


def test_accepted_threshold_and_missing_scores():
    [ex] = ranked_examples(CANDIDATES, RANKINGS, mle="accepted", accept_score=0.4)
    assert ex["mle"] == [True, True, False, False]
    with pytest.raises(UserError, match="no scores"):
        ranked_examples(CANDIDATES, [{"id": "a", "order": [1, 3, 0, 2]}], mle="accepted")
    [strict] = ranked_examples(CANDIDATES, [{"id": "a", "order": [1, 3, 0, 2]}], ties="mask")
    assert strict["tiers"] == [0, 1, 2, 3]  # no scores: the order is all there is


def test_tie_counts():
    rankings = [*RANKINGS, {"id": "b", "order": [0, 1], "scores": [0.0, 0.0]}, {"id": "c", "failed": True},
                {"id": "d", "order": [0, 1]}]
    assert tie_counts(rankings) == {"scored_pairs": 7, "tied_pairs": 2, "all_tied_rankings": 1}
