"""The transformers engine of ``teacher_logprob``: exact candidate log-likelihoods, batched and right-padded.

Each (prompt, candidate) pair becomes one sequence ``prompt_ids + candidate_ids + [eos]`` (tokenized by
``rankers.logprob.encoding.encode_pairs``, the convention every engine shares); sequences are sorted by
length so a batch wastes little padding, and right padding leaves every real token's position and (causal) context
unchanged, so a batched score equals the unbatched one. Only the candidate span's logits go through ``log_softmax``,
which keeps memory at O(candidate length x vocab) per sequence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from rankers.llm.hf import load_tokenizer, release_model, resolve_device, resolve_dtype, right_pad
from rankers.llm.tokenization import require_eos
from rankers.logprob.encoding import Scores, encode_pairs, gather

if TYPE_CHECKING:
    from rankers.backends.teacher_logprob import Config


class HFLogprobScorer:
    """A ``LogprobScorer`` over a causal LM held in this process."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 8) -> None:
        require_eos(tokenizer)
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[Scores]:
        pairs = sorted(encode_pairs(self.tokenizer, prompts, candidates), key=lambda s: len(s[2]) + len(s[3]),
                       reverse=True)
        sums: list[float] = []
        for start in range(0, len(pairs), self.batch_size):
            sums += self._score_batch([(p, c) for _, _, p, c in pairs[start:start + self.batch_size]])
        return gather(candidates, pairs, sums)

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

    def close(self) -> None:
        release_model(self)


def make_scorer(config: "Config") -> HFLogprobScorer:
    from transformers import AutoModelForCausalLM

    assert config.model is not None  # the ranker checks before asking for an engine
    tokenizer = load_tokenizer(config.tokenizer or config.model)
    model = AutoModelForCausalLM.from_pretrained(config.model, dtype=resolve_dtype(config.dtype))
    return HFLogprobScorer(model.to(resolve_device(config.device)).eval(), tokenizer, config.batch_size)
