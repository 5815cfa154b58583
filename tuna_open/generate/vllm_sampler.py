"""Sampling with an in-process vLLM engine: the fast path for Tuna_p's teacher and Tuna_c's student samples.

All prompts of a ``generate`` call go to the engine at once (vLLM batches and schedules them), each with
``n`` samples and its own seed (``seed + i``, as the OpenAI sampler does). With ``logprobs`` a sample carries
vLLM's ``cumulative_logprob``: the sum of its tokens' raw model log-probs (vLLM's default ``raw_logprobs``
mode, not temperature-scaled), EOS included, like the transformers sampler. Prompts are tokenized by vLLM with
the tokenizer's default special tokens (BOS), as the transformers sampler and the scorers do.

Parallelism: ``tensor_parallel_size`` splits the model over GPUs. vLLM refuses data parallelism inside one
process; to sample with several engine replicas, serve the model (``--data-parallel-size``) and use the
``openai`` sampler with ``max_concurrency`` to keep them busy.
"""

from __future__ import annotations

from typing import Any, Sequence

from rankers.llm.vllm_engine import EngineSettings, load_llm, shutdown_llm
from tuna_open.generate.base import Sample, SamplingParams


class Config(EngineSettings):
    """Engine keys (``rankers.llm.vllm_engine.EngineSettings``): tokenizer, dtype, tensor_parallel_size,
    gpu_memory_utilization, max_model_len, enable_prefix_caching, enforce_eager."""


class VLLMSampler:
    """A ``Sampler`` over a ``vllm.LLM`` held in this process."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Sample]]:
        from vllm import SamplingParams as VLLMParams

        per_prompt = [VLLMParams(n=params.n, max_tokens=params.max_new_tokens, temperature=params.temperature,
                                 top_p=params.top_p, seed=params.seed + i,
                                 logprobs=0 if params.logprobs else None)
                      for i in range(len(prompts))]
        results = self.llm.generate(list(prompts), per_prompt, use_tqdm=False) if prompts else []
        return [[Sample(text=c.text.strip(), logprob=c.cumulative_logprob if params.logprobs else None,
                        num_tokens=len(c.token_ids))
                 for c in sorted(result.outputs, key=lambda c: c.index)]
                for result in results]

    def close(self) -> None:
        shutdown_llm(self.llm)


def build(model: str, config: Config) -> VLLMSampler:
    return VLLMSampler(load_llm(model, config))
