"""Tuna training on the tiny model: SFT mixing, skipped prompts, the ranking it learns, saving (plain and LoRA)."""

from __future__ import annotations

import pytest
from helpers.tuna_examples import PROMPT, fast_config, ranked_examples

from tuna_open.train.tuna_trainer import _groups


def test_sft_examples_are_mixed_as_single_candidate_groups(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    sft = [{"prompt": PROMPT.format(a=i, b=i), "response": str(2 * i)} for i in range(3)]
    ranked, mixed = _groups(tok, ranked_examples(4), sft, fast_config(sft_mix_ratio=1.5))
    assert len(ranked) == 4 and len(mixed) == 6  # 1.5 per ranked prompt, cycling through the 3 SFT examples
    assert [len(g["input_ids"]) for g in ranked + mixed] == [3] * 4 + [1] * 6
    sft_sequences = [tuple(g["input_ids"][0]) for g in mixed]
    assert len(set(sft_sequences)) == 3 and len(set(sft_sequences[:3])) == 3  # each once before any repeat
    assert _groups(tok, ranked_examples(4), sft, fast_config(sft_mix_ratio=0))[1] == []


def test_prompts_longer_than_max_length_are_skipped(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = ranked_examples(2) + [{"prompt": "x " * 100, "candidates": ["1", "2"]}]
    ranked, _ = _groups(tok, examples, None, fast_config(max_length=32))
    assert len(ranked) == 2
    with pytest.raises(ValueError, match="max_length"):
        _groups(tok, examples[2:], None, fast_config(max_length=32))








