"""The in-process vLLM engine of ``teacher_logprob``: candidate log-likelihoods as vLLM prompt log-probs.

Each (prompt, candidate) pair is one token-id prompt ``prompt_ids + candidate_ids + [eos]`` (tokenized here by
``encode_candidates``, the convention every engine shares); vLLM computes the log-prob of every prompt token
given the ones before it (``prompt_logprobs=0``: the actual token only, no alternatives) and generates one
throwaway token. The candidate's span is summed. All pairs of a ``score`` call go to the engine as one batch,
which vLLM schedules itself.

The engine runs without prefix caching: with it, vLLM returns stale prompt log-probs for cached positions
(vllm-project/vllm#42019; on CPU they come back NaN), and the candidates of one prompt share its prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from rankers.logprobs_openai import encode_candidates
from rankers.vllm_engine import load_llm, shutdown_llm

if TYPE_CHECKING:
    from rankers.teacher_logprob import Config


class VLLMLogprobScorer:
    """A ``LogprobScorer`` over a ``vllm.LLM`` held in this process."""

    def __init__(self, llm: Any, tokenizer: Any) -> None:
        self.llm = llm
        self.tokenizer = tokenizer

    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[list[tuple[float, int]]]:
        from vllm import SamplingParams

        if len(prompts) != len(candidates):
            raise ValueError(f"{len(prompts)} prompts but {len(candidates)} candidate lists")
        pairs = []  # (request index, candidate index, prompt length, candidate ids)
        inputs = []
        for i, (prompt, cands) in enumerate(zip(prompts, candidates)):
            if not cands:
                continue
            prompt_ids, candidate_ids = encode_candidates(self.tokenizer, prompt, cands)
            for j, ids in enumerate(candidate_ids):
                pairs.append((i, j, len(prompt_ids), ids))
                inputs.append({"prompt_token_ids": prompt_ids + ids})
        out: list[list[tuple[float, int]]] = [[(0.0, 0)] * len(c) for c in candidates]
        if not inputs:
            return out
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
        for (i, j, start, ids), result in zip(pairs, self.llm.generate(inputs, params, use_tqdm=False)):
            positions = result.prompt_logprobs[start:start + len(ids)]
            out[i][j] = (float(sum(pos[token].logprob for pos, token in zip(positions, ids))), len(ids))
        return out

    def close(self) -> None:
        shutdown_llm(self.llm)


def make_scorer(config: "Config") -> VLLMLogprobScorer:
    from rankers.hf import load_tokenizer

    assert config.model is not None  # the ranker checks before asking for an engine
    llm = load_llm(config.model, tokenizer=config.tokenizer, dtype=config.dtype,
                   tensor_parallel_size=config.tensor_parallel_size,
                   gpu_memory_utilization=config.gpu_memory_utilization, max_model_len=config.max_model_len,
                   enable_prefix_caching=False, seed=config.seed)
    return VLLMLogprobScorer(llm, load_tokenizer(config.tokenizer or config.model))
