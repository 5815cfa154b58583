"""The transformers engine of ``teacher_logprob``: exact candidate log-likelihoods, batched, each prompt run once.

Each (prompt, candidate) pair is ``context_ids + candidate_ids + [eos]``, tokenized by
``rankers.logprob.encoding.encode_pairs`` (the convention every engine shares). A request's candidates share its
prompt, so by default (``shared_prefix``) a batch of requests runs its prompts once, left-padded, keeping the
key/value cache and the last position's logits (each candidate's first token), then one forward over all the
candidates' tokens continuing that cache (``rankers.llm.prefix_cache``): a prompt of P tokens with N candidates
costs P token positions instead of N·P. The per-candidate path (``shared_prefix: false``, and the fallback, logged
once, for a model whose cache cannot be expanded) feeds every full sequence, sorted by length and right-padded;
right padding leaves every real token's position and (causal) context unchanged, so either path's batched score
equals the unbatched one. Only real positions' logits go through ``log_softmax``, in float32, which keeps memory at
O(candidate length x vocab) per sequence.
"""

from __future__ import annotations

import logging
from itertools import groupby
from typing import TYPE_CHECKING, Any, Sequence

from rankers.llm.hf import load_tokenizer, release_model, resolve_device, resolve_dtype, right_pad
from rankers.llm.prefix_cache import pack, run_continuations, run_prefixes, shared_or_plain
from rankers.llm.tokenization import require_eos
from rankers.logprob.encoding import Pair, Scores, encode_pairs, gather

if TYPE_CHECKING:
    from rankers.backends.teacher_logprob import Config

log = logging.getLogger(__name__)


class HFLogprobScorer:
    """A ``LogprobScorer`` over a causal LM held in this process."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 8, shared_prefix: bool = True) -> None:
        require_eos(tokenizer)
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.shared_prefix = shared_prefix

    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[Scores]:
        pairs = encode_pairs(self.tokenizer, prompts, candidates)
        return gather(candidates, *shared_or_plain(self, log, "teacher_logprob hf", lambda: self._score_shared(pairs),
                                                   lambda: self._score_each(pairs)))

    def _score_each(self, pairs: list[Pair]) -> tuple[list[Pair], list[float]]:
        """(pairs in scoring order, their sums), every candidate with its whole prompt: sorted by length so a batch
        wastes little padding, ``batch_size`` sequences to a forward."""
        pairs = sorted(pairs, key=lambda s: len(s[2]) + len(s[3]), reverse=True)
        sums: list[float] = []
        for start in range(0, len(pairs), self.batch_size):
            sums += self._score_batch([(p, c) for _, _, p, c in pairs[start:start + self.batch_size]])
        return pairs, sums

    def _score_batch(self, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
        import torch

        ids, mask = right_pad([p + c for p, c in pairs], self.tokenizer.pad_token_id)
        with torch.no_grad():
            logits = self.model(input_ids=ids.to(self.model.device),
                                attention_mask=mask.to(self.model.device)).logits
        sums = []
        for row, (prompt, cand) in enumerate(pairs):
            start, end = len(prompt), len(prompt) + len(cand)
            logp = logits[row, start - 1:end - 1].float().log_softmax(-1)
            target = ids[row, start:end].to(logp.device)
            sums.append(float(logp.gather(-1, target.unsqueeze(-1)).sum()))
        return sums

    def _score_shared(self, pairs: list[Pair]) -> tuple[list[Pair], list[float]]:
        """(pairs in scoring order, their sums): requests sorted by prompt length (little left padding), packed
        ``batch_size`` candidate sequences to a forward, a request's candidates in one."""
        requests = sorted((list(g) for _, g in groupby(pairs, key=lambda p: p[0])), key=lambda g: len(g[0][2]),
                          reverse=True)
        ordered: list[Pair] = []
        sums: list[float] = []
        for batch in pack([len(g) for g in requests], self.batch_size):
            group = [requests[b] for b in batch]
            ordered += [p for g in group for p in g]
            sums += self._score_requests(group)
        return ordered, sums

    def _score_requests(self, requests: list[list[Pair]]) -> list[float]:
        """The sums of one batch of requests' candidates, each request's prompt through the model once.

        The prefix is a request's shortest context (all its contexts are prefixes of the prompt's ids; one is
        shorter only where the tokenizer merged across the boundary), so a row is the rest of its context, then
        its candidate ids; the prefix forward's last logits predict each row's first token."""
        import torch

        cut = [min(len(p[2]) for p in r) for r in requests]
        prefixes = run_prefixes(self.model, [r[0][2][:n] for r, n in zip(requests, cut)],
                                self.tokenizer.pad_token_id, logits_to_keep=1)
        first = prefixes.output.logits[:, -1].float().log_softmax(-1)
        owners = [b for b, r in enumerate(requests) for _ in r]
        rows = [p[2][n:] + p[3] for r, n in zip(requests, cut) for p in r]
        logits = run_continuations(self.model, prefixes, owners, rows, self.tokenizer.pad_token_id).logits
        sums = []
        for row, (owner, ids, pair) in enumerate(zip(owners, rows, (p for r in requests for p in r))):
            start = len(ids) - len(pair[3])  # the first scored column; column k is predicted by column k - 1
            after = max(start, 1)
            logp = logits[row, after - 1:len(ids) - 1].float().log_softmax(-1)
            targets = torch.tensor(ids[after:], device=logp.device)
            total = float(logp.gather(-1, targets.unsqueeze(-1)).sum())
            sums.append(total + (float(first[owner, ids[0]]) if start == 0 else 0.0))
        return sums

    def close(self) -> None:
        release_model(self)


def make_scorer(config: "Config") -> HFLogprobScorer:
    from transformers import AutoModelForCausalLM

    assert config.model is not None  # the ranker checks before asking for an engine
    tokenizer = load_tokenizer(config.tokenizer or config.model)
    model = AutoModelForCausalLM.from_pretrained(config.model, dtype=resolve_dtype(config.dtype))
    return HFLogprobScorer(model.to(resolve_device(config.device)).eval(), tokenizer, config.batch_size,
                           config.shared_prefix)
