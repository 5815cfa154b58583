"""Sampling from an OpenAI-protocol completions server (a vLLM server, any compatible API).

One completions request per prompt asks for all ``n`` samples (``n``, ``temperature``, ``top_p``, ``seed``,
``max_tokens``; ``logprobs=1`` when log-probabilities are wanted), ``max_concurrency`` requests in flight, with
the retries, backoff and usage accounting of ``rankers.openai_client``. Prompt ``i`` is sampled with
``seed + i``: a server reseeds every request, and one seed for all would give every prompt the same random
stream. A sample's ``logprob`` is the sum of its tokens' log-probs as the server reports them (vLLM: raw
model log-probs, not temperature-scaled), the EOS it stopped at included, like the transformers sampler;
``num_tokens`` is known only then (the API counts tokens per choice only in its logprobs).

A call that still fails after its retries stops sampling with ``CallFailed``: a sampler has no way to record a
missing sample, and inventing one would corrupt the candidates.
"""

from __future__ import annotations

from typing import Any, Sequence

from rankers.openai_client import ClientSettings, OpenAIClient
from tuna_open.generate.base import Sample, SamplingParams


class Config(ClientSettings):
    """Connection keys: ``base_url`` (ending in ``/v1``), ``api_key_env``, ``timeout``, ``max_retries``,
    ``max_concurrency``, ``prices``. The model is the sample stage's ``model``: the server's name for it."""


def to_samples(response: Any, params: SamplingParams) -> list[Sample]:
    """The ``n`` choices of one completions response as samples, in choice order."""
    choices = sorted(response.choices, key=lambda c: c.index)
    if len(choices) != params.n:
        raise ValueError(f"the server answered {len(choices)} choices, {params.n} were asked")
    samples = []
    for choice in choices:
        logprob = num_tokens = None
        if params.logprobs:
            if choice.logprobs is None or choice.logprobs.token_logprobs is None:
                raise ValueError("the server returned no logprobs (completions with logprobs=1 are needed)")
            logprob = float(sum(choice.logprobs.token_logprobs))
            num_tokens = len(choice.logprobs.token_logprobs)
        samples.append(Sample(text=choice.text.strip(), logprob=logprob, num_tokens=num_tokens))
    return samples


class OpenAISampler:
    """A ``Sampler`` over a model served behind an OpenAI-protocol completions endpoint."""

    def __init__(self, model: str, client: OpenAIClient) -> None:
        self.model = model
        self.client = client

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Sample]]:
        return self.client.map(lambda job: self._complete(job[1], params, params.seed + job[0]),
                               list(enumerate(prompts)))

    def _complete(self, prompt: str, params: SamplingParams, seed: int) -> list[Sample]:
        logprobs = {"logprobs": 1} if params.logprobs else {}
        response, _ = self.client.call(lambda sdk: sdk.completions.create(
            model=self.model, prompt=prompt, n=params.n, max_tokens=params.max_new_tokens,
            temperature=params.temperature, top_p=params.top_p, seed=seed, **logprobs))
        return to_samples(response, params)

    @property
    def stats(self) -> dict[str, Any]:
        """Calls, retries and tokens so far (never the API key)."""
        return self.client.meter.as_dict()

    def close(self) -> None:
        self.client.close()


def build(model: str, config: Config) -> OpenAISampler:
    return OpenAISampler(model, OpenAIClient(config))
