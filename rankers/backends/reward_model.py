"""Backend ``reward_model``: score each (prompt, candidate) with a sequence-classification reward model.

The text must be exactly what the reward model was trained on. TRL's ``RewardTrainer`` on plain-text pairs
(what the ``train_reward`` stage produces) reads ``format_prompt(prompt, input) + response + eos_token``,
tokenized with the tokenizer's usual special tokens; that is ``template: alpaca`` (or ``raw``). Reward models
trained on conversations (most published ones) read the tokenizer's chat template: ``template: chat``.
Any ``AutoModelForSequenceClassification`` with one output works; its logit is the score, read (by the model) at
each row's last token that is not the pad token.

A request's rows share their leading tokens (the prompt's), so by default (``shared_prefix``) a batch of requests
runs each request's longest common prefix once and its candidates' remaining tokens as a continuation of that
cache (``rankers.llm.prefix_cache``). The prefix stops before the first position the model reads a reward at, so
that position is always in the continuation, where the model finds it by the same rule: when pad is EOS the reward
is read before the final EOS, and a candidate whose rows differ only in that EOS still has a token to read. The
per-candidate path (``shared_prefix: false``, and the fallback, logged once, for a model whose cache cannot be
expanded) feeds every full row, as does a request whose rows share no token (no BOS, different first tokens).
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Sequence

from pydantic import Field

from rankers.base import Ranking, RankRequest, order_from_scores
from rankers.config import RankerConfig
from rankers.llm.hf import load_tokenizer, release_model, resolve_device, resolve_dtype, right_pad
from rankers.llm.prefix_cache import pack, run_continuations, run_prefixes, shared_or_plain
from rankers.llm.templates import conversation, request_prompt

log = logging.getLogger(__name__)


class Config(RankerConfig):
    model: str
    tokenizer: str | None = None
    """Defaults to ``model``."""
    template: Literal["alpaca", "raw", "chat"] = "alpaca"
    batch_size: int = Field(default=8, ge=1)
    """Rows per forward pass; with ``shared_prefix`` a request's rows stay in one (a request with more rows gets a
    forward to itself)."""
    shared_prefix: bool = True
    """Run each request's common prefix once for all its candidates (the same rewards up to float rounding);
    ``false`` for a model whose key/value cache cannot be expanded and reused (also the logged fallback)."""
    dtype: str = "auto"
    device: str = "auto"


class RewardModelRanker:
    """Orders candidates by reward; the reward model is loaded on the first ``rank`` call."""

    name = "reward_model"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.model: Any = None
        self.tokenizer: Any = None
        self.shared_prefix = config.shared_prefix

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

    def shared_rewards(self, groups: list[list[list[int]]]) -> list[list[float]]:
        """``rewards`` of each request's rows, its common prefix through the model once."""
        pad = self.model.config.pad_token_id
        cuts = [shared_length(rows, pad) for rows in groups]
        out = split(self.rewards([row for rows, n in zip(groups, cuts) if not n for row in rows]),
                    [len(rows) if not n else 0 for rows, n in zip(groups, cuts)])
        todo = sorted((i for i, n in enumerate(cuts) if n), key=lambda i: cuts[i], reverse=True)
        for batch in pack([len(groups[i]) for i in todo], self.config.batch_size):
            chosen = [todo[b] for b in batch]
            prefixes = run_prefixes(self.model, [groups[i][0][:cuts[i]] for i in chosen], pad)
            owners = [b for b, i in enumerate(chosen) for _ in groups[i]]
            rows = [row[cuts[i]:] for i in chosen for row in groups[i]]
            logits = run_continuations(self.model, prefixes, owners, rows, pad).logits
            for i, values in zip(chosen, split([float(x) for x in logits[:, 0].float()],
                                               [len(groups[i]) for i in chosen])):
                out[i] = values
        return out

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        if self.model is None:
            self._load()
        groups = [[self.token_ids(r, c) for c in r.candidates] for r in requests]
        return [Ranking(order=order_from_scores(scores), scores=scores) for scores in self._rewards(groups)]

    def _rewards(self, groups: list[list[list[int]]]) -> list[list[float]]:
        return shared_or_plain(self, log, "reward_model", lambda: self.shared_rewards(groups), lambda: split(
            self.rewards([row for rows in groups for row in rows]), [len(rows) for rows in groups]))

    def close(self) -> None:
        release_model(self)


def shared_length(rows: list[list[int]], pad_id: int) -> int:
    """How many leading tokens of ``rows`` the prefix forward may take: those all rows share, up to (not
    including) the first position the model reads a reward at, its last token that is not ``pad_id``."""
    reads = [max((i for i, t in enumerate(row) if t != pad_id), default=0) for row in rows]
    shared = 0
    for column in zip(*rows):
        if shared == min(reads, default=0) or any(t != column[0] for t in column):
            break
        shared += 1
    return shared


def split(values: list[float], sizes: list[int]) -> list[list[float]]:
    """``values`` cut into consecutive lists of ``sizes``."""
    out, pos = [], 0
    for size in sizes:
        out.append(values[pos:pos + size])
        pos += size
    return out


def build(config: Config) -> RewardModelRanker:
    return RewardModelRanker(config)
