"""Tuna dataset items: a prompt and its responses tokenized (prompt masked, EOS appended) and padded into a batch."""

from __future__ import annotations

from tuna_open.train.losses import IGNORE_INDEX
from tuna_open.train.tuna_data import TunaCollator, encode_group


def test_encode_group_masks_prompt_and_appends_eos(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt_ids = tok("Q: 1+1?")["input_ids"]
    group = encode_group(tok, "Q: 1+1?", ["2", "two 2"], max_length=64)
    for ids, labels, response in zip(group["input_ids"], group["labels"], ["2", "two 2"]):
        response_ids = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert ids == prompt_ids + response_ids
        assert labels == [IGNORE_INDEX] * len(prompt_ids) + response_ids
    short = encode_group(tok, "Q: 1+1?", ["two 2"], max_length=len(prompt_ids) + 1)
    assert len(short["input_ids"][0]) == len(prompt_ids) + 1 and short["labels"][0][-1] != IGNORE_INDEX


def test_collator_pads_candidates_and_length():
    groups = [{"input_ids": [[5, 6, 7], [5, 6]], "labels": [[-100, 6, 7], [-100, 6]], "tiers": [0, 0],
               "mle": [True, False]},
              {"input_ids": [[8, 9, 10, 11]], "labels": [[-100, -100, 10, 11]], "tiers": [0], "mle": [True]}]
    batch = TunaCollator(pad_token_id=0)(groups)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2, 2, 4)
    assert batch["tiers"].tolist() == [[0, 0], [0, -1]]
    assert batch["mle_mask"].tolist() == [[True, False], [True, False]]
    assert batch["input_ids"][0, 1].tolist() == [5, 6, 0, 0]
    assert batch["attention_mask"][0, 1].tolist() == [1, 1, 0, 0]
    assert (batch["labels"][1, 1] == IGNORE_INDEX).all() and (batch["attention_mask"][1, 1] == 0).all()
