"""The hf engine's prefix-once path against its per-candidate path (tested against a direct computation in
``tests/unit/rankers/backends/test_model_rankers.py``): the same scores, each prompt computed once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers.model_probes import WithoutCache, counted_positions

from rankers import build_ranker
from rankers.llm.hf import load_tokenizer
from rankers.logprob.encoding import encode_pairs
from rankers.logprob.hf_scorer import HFLogprobScorer

PROMPTS = ["Add 12 and 30, then say what the total is.", "Sort the numbers: th", "x", "Say he"]
"""Prompts of different lengths; the second and fourth merge with some candidates' first characters, so those
candidates' contexts are shorter than their request's other ones."""
CANDIDATES = [["42", "The answer is 41.", "3 2 1 0"], ["e numbers", "ere", " 1 2 3 4 5 6 7 8 9", "llo"], [],
              ["llo"]]
"""3, 4, 0 and 1 candidates, of different lengths."""


@pytest.fixture(scope="module")
def lm(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), load_tokenizer(str(tiny_model_dir))


def assert_same_scores(shared: list, plain: list) -> None:
    assert [[n for _, n in r] for r in shared] == [[n for _, n in r] for r in plain]
    assert [[s for s, _ in r] for r in shared] == [pytest.approx([s for s, _ in r], abs=1e-4) for r in plain]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 5, 16])
def test_shared_prefix_scores_equal_the_per_candidate_path(lm, batch_size: int) -> None:
    model, tok = lm
    contexts = [{len(c) for _, _, c, _ in encode_pairs(tok, [p], [c])} for p, c in zip(PROMPTS, CANDIDATES) if c]
    assert any(len(lengths) > 1 for lengths in contexts)  # the boundary merge really happens
    shared = HFLogprobScorer(model, tok, batch_size).score(PROMPTS, CANDIDATES)
    plain = HFLogprobScorer(model, tok, batch_size, shared_prefix=False).score(PROMPTS, CANDIDATES)
    assert shared[2] == [] and len({s for r in shared for s, _ in r}) > 5
    assert_same_scores(shared, plain)


def test_each_prompt_enters_the_model_once(lm) -> None:
    model, tok = lm
    pairs = encode_pairs(tok, PROMPTS, CANDIDATES)
    per_candidate = sum(len(c) + len(ids) for _, _, c, ids in pairs)
    cut = {i: min(len(c) for j, _, c, _ in pairs if j == i) for i, _, _, _ in pairs}
    once = sum(cut.values()) + sum(len(c) - cut[i] + len(ids) for i, _, c, ids in pairs)
    for shared, expected in ((True, once), (False, per_candidate)):
        with counted_positions(model) as counts:
            HFLogprobScorer(model, tok, batch_size=8, shared_prefix=shared).score(PROMPTS, CANDIDATES)
        assert sum(counts) == expected
    assert once < per_candidate - 2 * len(tok(PROMPTS[0])["input_ids"])


def test_a_model_without_an_expandable_cache_falls_back_with_one_warning(lm, caplog) -> None:
    model, tok = lm
    scorer = HFLogprobScorer(WithoutCache(model), tok, batch_size=4)
    with caplog.at_level(logging.WARNING, logger="rankers.logprob.hf_scorer"):
        first = scorer.score(PROMPTS, CANDIDATES)
        second = scorer.score(PROMPTS[:1], CANDIDATES[:1])
    assert [r.message for r in caplog.records] == [
        "teacher_logprob hf: scoring each candidate with its whole prompt; the shared-prefix forward failed "
        "(PrefixCacheUnavailable: WithoutCache returned no filled key/value cache that can be expanded "
        "(got NoneType))"]
    assert not scorer.shared_prefix
    assert_same_scores(first, HFLogprobScorer(model, tok, 4, shared_prefix=False).score(PROMPTS, CANDIDATES))
    assert second == first[:1]


def test_the_config_chooses_the_path(tiny_model_dir: Path) -> None:
    def scorer(**keys: object) -> HFLogprobScorer:
        ranker = build_ranker({"backend": "teacher_logprob", "model": str(tiny_model_dir), **keys})
        return ranker.scorer

    assert scorer().shared_prefix and not scorer(shared_prefix=False).shared_prefix
