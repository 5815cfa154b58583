"""Backend ``reward_model``: score each (prompt, candidate) with a sequence-classification reward model.

The text must be exactly what the reward model was trained on. TRL's ``RewardTrainer`` on plain-text pairs
(what the ``train_reward`` stage produces) reads ``format_prompt(prompt, input) + response + eos_token``,
tokenized with the tokenizer's usual special tokens; that is ``template: alpaca`` (or ``raw``). Reward models
trained on conversations (most published ones) read the tokenizer's chat template: ``template: chat``.
Any ``AutoModelForSequenceClassification`` with one output works; its logit is the score.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

from pydantic import Field

from rankers.base import Ranking, RankRequest, order_from_scores
from rankers.config import RankerConfig
from rankers.llm.hf import load_tokenizer, release_model, resolve_device, resolve_dtype, right_pad
from rankers.llm.templates import conversation, request_prompt


class Config(RankerConfig):
    model: str
    tokenizer: str | None = None
    """Defaults to ``model``."""
    template: Literal["alpaca", "raw", "chat"] = "alpaca"
    batch_size: int = Field(default=8, ge=1)
    dtype: str = "auto"
    device: str = "auto"


class RewardModelRanker:
    """Orders candidates by reward; the reward model is loaded on the first ``rank`` call."""

    name = "reward_model"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.model: Any = None
        self.tokenizer: Any = None

    def _load(self) -> None:
        from transformers import AutoModelForSequenceClassification

        cfg = self.config
        self.tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
        model = AutoModelForSequenceClassification.from_pretrained(cfg.model, dtype=resolve_dtype(cfg.dtype))
        if model.config.num_labels != 1:
            raise ValueError(f"{cfg.model}: a reward model has one output, this one has {model.config.num_labels}")
        if model.config.pad_token_id is None:  # needed to find each padded row's last token
            model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = model.to(resolve_device(cfg.device)).eval()

    def token_ids(self, request: RankRequest, candidate: str) -> list[int]:
        """The reward model's input for one candidate (see the module docstring for why this format)."""
        tok = self.tokenizer
        if self.config.template == "chat":
            turns = conversation(request.prompt, request.input, request.messages)
            text = tok.apply_chat_template(turns + [{"role": "assistant", "content": candidate}], tokenize=False)
            return tok(text, add_special_tokens=False)["input_ids"]
        prompt = request_prompt(request, self.config.template, self.name)
        return tok(prompt + candidate + tok.eos_token)["input_ids"]

    def rewards(self, rows: list[list[int]]) -> list[float]:
        import torch

        out: list[float] = []
        for start in range(0, len(rows), self.config.batch_size):
            ids, mask = right_pad(rows[start:start + self.config.batch_size], self.tokenizer.pad_token_id)
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(self.model.device),
                                     attention_mask=mask.to(self.model.device)).logits
            out.extend(float(x) for x in logits[:, 0].float())
        return out

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        if self.model is None:
            self._load()
        rows = [self.token_ids(r, c) for r in requests for c in r.candidates]
        rewards = self.rewards(rows)
        out, pos = [], 0
        for r in requests:
            scores = rewards[pos:pos + len(r.candidates)]
            pos += len(r.candidates)
            out.append(Ranking(order=order_from_scores(scores), scores=scores))
        return out

    def close(self) -> None:
        release_model(self)


def build(config: Config) -> RewardModelRanker:
    return RewardModelRanker(config)
