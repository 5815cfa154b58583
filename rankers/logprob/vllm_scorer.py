"""The in-process vLLM engine of ``teacher_logprob``: candidate log-likelihoods as vLLM prompt log-probs.

Each (prompt, candidate) pair is one token-id prompt ``prompt_ids + candidate_ids + [eos]`` (tokenized by
``rankers.logprob.encoding.encode_pairs``, the convention every engine shares); vLLM computes the log-prob of
every prompt token given the ones before it (``prompt_logprobs=0``: the actual token only, no alternatives) and
generates one throwaway token. The candidate's span is summed. All pairs of a ``score`` call go to the engine as
one batch, which vLLM schedules itself.

The engine runs without prefix caching: with it, vLLM returns stale prompt log-probs for cached positions
(vllm-project/vllm#42019; on CPU they come back NaN), and the candidates of one prompt share its prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from rankers.config import RankerConfigError
from rankers.llm.vllm_engine import load_llm, shutdown_llm
from rankers.logprob.encoding import Scores, encode_pairs, gather

if TYPE_CHECKING:
    from rankers.backends.teacher_logprob import Config


class VLLMLogprobScorer:
    """A ``LogprobScorer`` over a ``vllm.LLM`` held in this process."""

    def __init__(self, llm: Any, tokenizer: Any) -> None:
        self.llm = llm
        self.tokenizer = tokenizer

    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[Scores]:
        from vllm import SamplingParams

        pairs = encode_pairs(self.tokenizer, prompts, candidates)
        if not pairs:
            return gather(candidates, pairs, [])
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
        results = self.llm.generate([{"prompt_token_ids": p + c} for _, _, p, c in pairs], params, use_tqdm=False)
        sums = []
        for (_, _, prompt_ids, ids), result in zip(pairs, results):
            positions = result.prompt_logprobs[len(prompt_ids):len(prompt_ids) + len(ids)]
            sums.append(float(sum(pos[token].logprob for pos, token in zip(positions, ids))))
        return gather(candidates, pairs, sums)

    def close(self) -> None:
        shutdown_llm(self.llm)


def make_scorer(config: "Config") -> VLLMLogprobScorer:
    from rankers.llm.hf import load_tokenizer

    assert config.model is not None  # the ranker checks before asking for an engine
    if config.enable_prefix_caching:
        raise RankerConfigError("ranker teacher_logprob: enable_prefix_caching must stay off for the vllm engine "
                                "(cached positions return stale prompt log-probs, vllm-project/vllm#42019)")
    llm = load_llm(config.model, config.model_copy(update={"enable_prefix_caching": False}), seed=config.seed)
    return VLLMLogprobScorer(llm, load_tokenizer(config.tokenizer or config.model))
