"""The sampler protocol: prompts in, N completions with their log-probabilities out.

Every backend (transformers, an in-process vLLM engine, an OpenAI-protocol server) returns the same
``Sample`` objects, so the sampling stages, the evaluation and the PPO baseline never care where text came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from pydantic import BaseModel, ConfigDict

from rankers.llm.templates import Message


class SamplingParams(BaseModel):
    """Decoding settings shared by every backend (names follow vLLM/OpenAI)."""

    model_config = ConfigDict(extra="forbid")

    n: int = 1
    max_new_tokens: int = 128
    temperature: float = 1.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    seed: int = 0
    logprobs: bool = False
    """Also return the summed log-probability of each completion under the sampling model (Tuna_p)."""


@dataclass
class Sample:
    text: str
    logprob: float | None = None
    """Sum of the completion's token log-probabilities (unscaled by temperature) when asked for."""
    num_tokens: int | None = None


Prompt = str | list[Message]
"""A rendered prompt, or a conversation for a sampler that applies the chat template itself (chat completions)."""


class Sampler(Protocol):
    """A loaded model that completes prompts. ``generate`` returns ``params.n`` samples per prompt, in order."""

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Sample]]: ...
