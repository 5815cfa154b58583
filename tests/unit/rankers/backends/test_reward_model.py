"""The reward model's prefix-once path against its per-candidate path (tested against TRL's text format in
``test_model_rankers.py``): the same rewards, each request's common prefix computed once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers.model_probes import WithoutCache, counted_positions

from rankers import RankRequest, build_ranker
from rankers.backends.reward_model import RewardModelRanker, shared_length

REQUESTS = [
    RankRequest(prompt="Add 12 and 30, then say what the total is.", candidates=["42", "The answer is 41.", "3 2"]),
    RankRequest(prompt="Reverse the list.", input="1 2 3", candidates=["3 2 1", "1 2 3 4 5 6 7 8", "", "x"]),
    RankRequest(prompt="Nothing to rank.", candidates=[]),
    RankRequest(prompt="x", candidates=["y"]),
]
"""Prompts of different lengths with 3, 4, 0 and 1 candidates of different lengths (one empty: its row differs from
the others only from the EOS on)."""


def loaded(reward_dir: Path, pad_is_eos: bool, **keys: object) -> RewardModelRanker:
    ranker = build_ranker({"backend": "reward_model", "model": str(reward_dir), **keys})
    ranker.rank(REQUESTS[:1])  # loads the model
    if pad_is_eos:  # a tokenizer without a pad token (LLaMA's, GPT-2's): EOS pads, as load_tokenizer sets it
        ranker.tokenizer.pad_token = ranker.tokenizer.eos_token
        ranker.model.config.pad_token_id = ranker.tokenizer.eos_token_id
    return ranker


@pytest.mark.parametrize("pad_is_eos", [False, True])
@pytest.mark.parametrize("template", ["alpaca", "chat"])
@pytest.mark.parametrize("batch_size", [1, 3, 4, 16])
def test_shared_prefix_rewards_equal_the_per_candidate_path(reward_dir: Path, batch_size: int, template: str,
                                                            pad_is_eos: bool) -> None:
    keys = {"batch_size": batch_size, "template": template}
    shared = loaded(reward_dir, pad_is_eos, **keys)
    plain = loaded(reward_dir, pad_is_eos, shared_prefix=False, **keys)
    with counted_positions(shared.model) as counts:
        got = shared.rank(REQUESTS)
    want = plain.rank(REQUESTS)
    assert [r.scores for r in got] == [pytest.approx(r.scores, abs=1e-4) for r in want]
    assert [r.order for r in got] == [r.order for r in want] and got[2].scores == []
    assert len({round(s, 4) for r in want for s in r.scores}) > 4  # a real model, not a constant
    groups = [[shared.token_ids(r, c) for c in r.candidates] for r in REQUESTS]
    cuts = [shared_length(g, shared.model.config.pad_token_id) for g in groups]
    assert all(cuts[i] > 5 for i in (0, 1))
    assert sum(counts) == sum(n + sum(len(row) - n for row in g) for g, n in zip(groups, cuts))  # prefixes once


def test_the_prefix_stops_before_the_first_token_a_reward_is_read_at() -> None:
    assert shared_length([[1, 5, 6, 2], [1, 5, 6, 7, 2]], pad_id=0) == 3
    assert shared_length([[1, 5, 6, 2], [1, 5, 6, 7, 2]], pad_id=2) == 2  # "6" is read in the first row
    assert shared_length([[1, 5, 6, 2]], pad_id=2) == 2
    assert shared_length([[5, 6], [7, 6]], pad_id=0) == 0


def test_requests_sharing_no_token_take_the_per_candidate_rows(reward_dir: Path) -> None:
    ranker = loaded(reward_dir, pad_is_eos=False)
    groups = [[[5, 6, 7, 2], [8, 9, 2]], [[1, 5, 6, 2], [1, 5, 7, 8, 2]], [[1, 9, 2]]]
    got = ranker.shared_rewards(groups)
    want = [[ranker.rewards([row])[0] for row in g] for g in groups]
    assert got == [pytest.approx(w, abs=1e-4) for w in want]


def test_a_model_without_an_expandable_cache_falls_back_with_one_warning(reward_dir: Path, caplog) -> None:
    ranker = loaded(reward_dir, pad_is_eos=False)
    want = ranker.rank(REQUESTS)
    ranker.model = WithoutCache(ranker.model)
    with caplog.at_level(logging.WARNING, logger="rankers.backends.reward_model"):
        got = ranker.rank(REQUESTS) + ranker.rank(REQUESTS)
    assert [r.message for r in caplog.records] == [
        "reward_model: scoring each candidate with its whole prompt; the shared-prefix forward failed "
        "(PrefixCacheUnavailable: WithoutCache returned no filled key/value cache that can be expanded "
        "(got NoneType))"]
    assert not ranker.shared_prefix
    assert [r.scores for r in got] == [pytest.approx(r.scores, abs=1e-4) for r in want * 2]
