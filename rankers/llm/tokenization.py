"""The one rule for where a prompt ends and a response begins in token ids, shared by every trainer and scorer.

**The rule.** ``prompt_ids = tokenizer(prompt)`` (with the tokenizer's special tokens, e.g. BOS); the response's
ids are the tokens that follow ``prompt_ids`` in ``tokenizer(prompt + response)``, then EOS. That is, the
response is tokenized *in context*, joined to its prompt.

**Why this rule and not tokenizing the response on its own.** A SentencePiece tokenizer (LLaMA's) puts a
word-start marker on the first piece of any text it tokenizes alone: ``"The"`` alone is ``▁The``, while after the
Alpaca template's ``"### Response:\\n"`` it is ``The``. Tokenizing separately would make Tuna, DPO and the
teacher's scores train and score a token sequence that decodes to a different text (an extra space) from the one
SFT trained on and the model generates. Joint tokenization is what SFT in Alpaca, LMOps (``train.py`` and
``train_tuna.py`` tokenize ``prompt + output + eos`` and mask the prompt's length) and TRL (``SFTTrainer``,
``DPOTrainer``: prompt ids, then ``tokenizer(prompt + completion)`` after them) do, so one rule makes SFT, Tuna,
DPO, the reward model and the teacher's log-probs all see the same ids for the same text. ``prompt_ids`` stay the
prompt tokenized alone because that is exactly the context a sampler conditions on when it generates.

**When the two disagree.** A tokenizer can merge the prompt's last characters with the response's first ones into
one token (a SentencePiece ``"▁Response:\nThe"``, a BPE ``"\n" + "\n…"``), so ``tokenizer(prompt + response)`` no
longer starts with ``prompt_ids``. The joint tokenization is still what is used: the context is its tokens up to
the first one that differs from ``prompt_ids``, and the response's tokens start there, the merged token included
(it carries response characters). The ids then still decode to exactly ``prompt + response``; only the context
of that one response is a few tokens shorter than the prompt tokenized alone. Templates ending in a newline
never merge with LLaMA's tokenizer (``"\n"`` is a byte token there).
"""

from __future__ import annotations

from typing import Any, Sequence


def require_eos(tokenizer: Any) -> int:
    """The EOS id every response is trained and scored with; a tokenizer without one cannot be used."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; responses are trained and scored with EOS appended")
    return tokenizer.eos_token_id


def encode_response(tokenizer: Any, prompt: str, prompt_ids: Sequence[int], response: str,
                    eos: int) -> tuple[list[int], list[int]]:
    """``(context ids, response ids + [eos])`` of ``response`` after ``prompt`` (tokenized alone as ``prompt_ids``),
    under the rule above: the context is ``prompt_ids`` unless the tokenizer merged across the boundary."""
    joint = tokenizer(prompt + response)["input_ids"]
    shared = 0
    for a, b in zip(joint, prompt_ids):
        if a != b:
            break
        shared += 1
    return joint[:shared], joint[shared:] + [eos]


def encode_responses(tokenizer: Any, prompt: str, responses: Sequence[str]) -> list[tuple[list[int], list[int]]]:
    """One ``(context ids, response ids + [eos])`` per response of one prompt, under the rule above."""
    eos = require_eos(tokenizer)
    prompt_ids = tokenizer(prompt)["input_ids"]
    return [encode_response(tokenizer, prompt, prompt_ids, r, eos) for r in responses]
