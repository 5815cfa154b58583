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


def _ctx(tmp_path, outputs):
    from rich.console import Console

    from tuna_open.recipe import parse_recipe
    from tuna_open.stages.context import StageContext
    from tuna_open.stages.registry import STAGES

    recipe = parse_recipe({"name": "r", "stages": []}, tmp_path, "r", STAGES)
    return StageContext(recipe=recipe, run_dir=tmp_path, stage_dir=tmp_path, output=tmp_path / "out.jsonl", seed=0,
                        outputs=outputs, console=Console())


def test_distill_takes_the_first_or_best_ranked_sample(tmp_path):
    from tuna_open.data.jsonl import read_jsonl, write_jsonl
    from tuna_open.stages.distill import Config, run

    samples = [{"id": "1", "task": "add", "instruction": "Add.", "input": "1 2", "output": "3", "prompt": "P",
                "candidates": ["4", "3"]},
               {"id": "2", "instruction": "Say hi.", "input": "", "prompt": "Q", "candidates": ["hi", "hello"]}]
    write_jsonl(tmp_path / "samples.jsonl", samples)
    write_jsonl(tmp_path / "rankings.jsonl", [{"id": "1", "order": [1, 0]}, {"id": "2", "failed": True}])
    ctx = _ctx(tmp_path, {"samples": tmp_path / "samples.jsonl", "rank": tmp_path / "rankings.jsonl"})

    result = run(ctx, Config(name="d", kind="distill", input="@samples"))
    assert read_jsonl(ctx.output) == [
        {"id": "1", "task": "add", "instruction": "Add.", "input": "1 2", "output": "4", "reference_output": "3"},
        {"id": "2", "instruction": "Say hi.", "input": "", "output": "hi"}]
    assert result.counts == {"instructions": 2, "dropped": 0, "equal_to_reference": 0}

    result = run(ctx, Config(name="d", kind="distill", input="@samples", rankings="@rank"))
    assert [r["output"] for r in read_jsonl(ctx.output)] == ["3"]  # best-ranked; the failed ranking is dropped
    assert result.counts == {"instructions": 1, "dropped": 1, "equal_to_reference": 1}
