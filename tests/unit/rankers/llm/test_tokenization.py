"""One prompt/response tokenisation rule (``rankers.llm.tokenization``) in every trainer and scorer, checked with a
LLaMA-1-like SentencePiece tokenizer, where a response tokenized on its own starts with ``▁The`` but after the
Alpaca template's ``### Response:\\n`` with ``The``."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.tiny_models import TEXTS, build_sentencepiece_tokenizer

from rankers.llm.templates import format_prompt
from rankers.llm.tokenization import encode_responses
from rankers.logprob.encoding import encode_pairs

PROMPT = format_prompt("Reverse the list 1 2 3.")
RESPONSE = "The quick brown fox."


@pytest.fixture(scope="module")
def sp_tokenizer():
    return build_sentencepiece_tokenizer(TEXTS)


def test_the_response_is_tokenized_in_context(sp_tokenizer) -> None:
    tok = sp_tokenizer
    alone = tok.convert_ids_to_tokens(tok(RESPONSE, add_special_tokens=False)["input_ids"])
    ((context, response),) = encode_responses(tok, PROMPT, [RESPONSE])
    in_context = tok.convert_ids_to_tokens(response)
    assert alone[0] == "▁The" and in_context[0].startswith("Th")  # the difference the rule settles
    assert in_context[-2:] == alone[-1:] + ["</s>"]
    assert context == tok(PROMPT)["input_ids"]  # the sampler's context, BOS included
    assert tok.decode(context + response[:-1], skip_special_tokens=True) == PROMPT + RESPONSE


def test_a_merge_across_the_boundary_keeps_the_text() -> None:
    # Newlines inside words, and a corpus where the template's end is often followed by the response's start.
    merging = build_sentencepiece_tokenizer([PROMPT + RESPONSE] * 30 + TEXTS, split_newlines=False)
    prompt_ids = merging(PROMPT)["input_ids"]
    ((context, response),) = encode_responses(merging, PROMPT, [RESPONSE])
    assert merging(PROMPT + RESPONSE)["input_ids"][:len(prompt_ids)] != prompt_ids, "the test needs a merge"
    assert context == prompt_ids[:len(context)] and len(context) < len(prompt_ids)
    assert "The" in merging.convert_ids_to_tokens(response)[0]  # the merged token is the response's
    assert merging.decode(context + response[:-1], skip_special_tokens=True) == PROMPT + RESPONSE


def test_every_trainer_and_scorer_sees_the_same_ids(sentencepiece_model_dir: Path, tmp_path: Path) -> None:
    """SFT, Tuna, DPO (TRL's own tokenisation), the reward model and the teacher's log-probs."""
    from transformers import AutoTokenizer

    from tuna_open.train.dpo import DPOSettings, build_dpo_trainer
    from tuna_open.train.reward import RewardSettings, build_reward_trainer
    from tuna_open.train.sft import SFTSettings, build_sft_trainer
    from tuna_open.train.tuna_data import encode_group

    model = str(sentencepiece_model_dir)
    tok = AutoTokenizer.from_pretrained(model)
    ((context, response),) = encode_responses(tok, PROMPT, [RESPONSE])
    ((_, rejected),) = encode_responses(tok, PROMPT, ["3 2 1"])

    group = encode_group(tok, PROMPT, [RESPONSE], max_length=512)
    assert group["input_ids"] == [context + response]
    assert group["labels"] == [[-100] * len(context) + response]

    [(_, _, pair_context, pair_ids)] = encode_pairs(tok, [PROMPT], [[RESPONSE]])
    assert (pair_context, pair_ids) == (context, response)

    sft = build_sft_trainer(model, [{"prompt": PROMPT, "response": RESPONSE}], SFTSettings(), tmp_path / "sft")
    row = sft.train_dataset[0]
    assert row["input_ids"] == context + response
    assert row["labels"] == [-100] * len(context) + response

    pair = {"id": "0", "prompt": PROMPT, "chosen": RESPONSE, "rejected": "3 2 1"}
    dpo = build_dpo_trainer(model, [pair], DPOSettings(), tmp_path / "dpo").train_dataset[0]
    assert (dpo["prompt_ids"], dpo["chosen_ids"], dpo["rejected_ids"]) == (context, response, rejected)

    reward = build_reward_trainer(model, [pair], RewardSettings(), tmp_path / "reward").train_dataset[0]
    assert reward["chosen_ids"] == context + response and reward["rejected_ids"] == context + rejected
