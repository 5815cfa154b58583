"""Sampling from an OpenAI-protocol server (a vLLM server, any compatible API): completions or chat completions.

``api: completions`` (the default) sends the rendered prompt text to ``/v1/completions``; ``api: chat`` sends
the record's conversation to ``/v1/chat/completions`` and the server applies the model's chat template, so a
chat-only endpoint (an Instruct model behind a hosted API) can be a sampler (the sample stage then needs
``template: chat``). One request per prompt asks for all ``n`` samples (``n``, ``temperature``, ``top_p``,
``seed``, ``max_tokens``; with log-probabilities ``logprobs=1`` for completions, ``logprobs=true`` for chat),
``max_concurrency`` requests in flight, with the retries, backoff and usage accounting of
``rankers.llm.openai_client``. Prompt ``i`` is sampled with ``seed + i``: a server reseeds every request, and one
seed for all would give every prompt the same random stream. A sample's ``logprob`` is the sum of its tokens'
log-probs as the server reports them (vLLM: raw model log-probs, not temperature-scaled; its completions
include the EOS it stopped at, like the transformers sampler); ``num_tokens`` is known only then (the API counts
tokens per choice only in its logprobs).

A call that still fails after its retries, or whose reply does not read as the samples asked for, stops
sampling with ``CallFailed``: a sampler has no way to record a missing sample, and inventing one would corrupt
the candidates. The samples already answered are not lost with it: ``generate_as_completed`` hands each prompt's
samples over as they arrive (and those of the calls in flight when one fails or a Ctrl-C comes), so the sample
stage saves them for the resume.
"""

from __future__ import annotations

from typing import Any, Iterator, Literal, Sequence

from rankers.base import in_order
from rankers.llm.client_settings import ClientSettings
from rankers.llm.openai_client import OpenAIClient
from tuna_open.generate.base import Prompt, Sample, SamplingParams


class Config(ClientSettings):
    """Connection keys: ``base_url`` (ending in ``/v1``), ``api_key_env``, ``timeout``, ``max_retries``,
    ``max_concurrency``, ``prices``. The model is the sample stage's ``model``: the server's name for it."""

    api: Literal["completions", "chat"] = "completions"
    """``chat``: ``/v1/chat/completions`` with the record's messages (the server's chat template)."""


def _token_logprobs(choice: Any, chat: bool) -> list[float] | None:
    """A choice's token log-probs: completions' ``token_logprobs``, or chat's ``logprobs.content[*].logprob``."""
    if choice.logprobs is None:
        return None
    if chat:
        return None if choice.logprobs.content is None else [t.logprob for t in choice.logprobs.content]
    return choice.logprobs.token_logprobs


def to_samples(response: Any, params: SamplingParams, chat: bool = False) -> list[Sample]:
    """The ``n`` choices of one (chat) completions response as samples, in choice order."""
    choices = sorted(response.choices, key=lambda c: c.index)
    if len(choices) != params.n:
        raise ValueError(f"the server answered {len(choices)} choices, {params.n} were asked")
    samples = []
    for choice in choices:
        logprob = num_tokens = None
        if params.logprobs:
            token_logprobs = _token_logprobs(choice, chat)
            if token_logprobs is None:
                raise ValueError("the server returned no logprobs (" + ("chat completions with logprobs=true"
                                 if chat else "completions with logprobs=1") + " are needed)")
            logprob = float(sum(token_logprobs))
            num_tokens = len(token_logprobs)
        text = (choice.message.content or "") if chat else choice.text
        samples.append(Sample(text=text.strip(), logprob=logprob, num_tokens=num_tokens))
    return samples


class OpenAISampler:
    """A ``Sampler`` over a model served behind an OpenAI-protocol completions or chat-completions endpoint."""

    def __init__(self, model: str, client: OpenAIClient, api: str = "completions") -> None:
        self.model = model
        self.client = client
        self.chat = api == "chat"

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Sample]]:
        return in_order(self.generate_as_completed(prompts, params), len(prompts))

    def generate_as_completed(self, prompts: Sequence[Prompt],
                              params: SamplingParams) -> Iterator[tuple[int, list[Sample]]]:
        """(index, that prompt's samples) as each call is answered (``OpenAIClient.map_as_completed``)."""
        for prompt in prompts:
            if isinstance(prompt, str) == self.chat:
                raise TypeError("the chat API samples conversations, the completions API prompt strings")
        return self.client.map_as_completed(lambda job: self._complete(job[1], params, params.seed + job[0]),
                                            list(enumerate(prompts)))

    def _complete(self, prompt: Prompt, params: SamplingParams, seed: int) -> list[Sample]:
        common = {"model": self.model, "n": params.n, "max_tokens": params.max_new_tokens,
                  "temperature": params.temperature, "top_p": params.top_p, "seed": seed}
        if self.chat:
            logprobs: dict[str, Any] = {"logprobs": True} if params.logprobs else {}
            samples, _ = self.client.call(
                lambda sdk: sdk.chat.completions.create(messages=prompt, **common, **logprobs),
                lambda response: to_samples(response, params, chat=True))
        else:
            logprobs = {"logprobs": 1} if params.logprobs else {}
            samples, _ = self.client.call(lambda sdk: sdk.completions.create(prompt=prompt, **common, **logprobs),
                                          lambda response: to_samples(response, params))
        return samples

    @property
    def stats(self) -> dict[str, Any]:
        """Calls, retries and tokens so far (never the API key)."""
        return self.client.meter.as_dict()

    def close(self) -> None:
        self.client.close()


def build(model: str, config: Config) -> OpenAISampler:
    return OpenAISampler(model, OpenAIClient(config), config.api)
