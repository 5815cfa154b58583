"""Sampling backends behind one protocol (``base.Sampler``), chosen by name like rankers.

``transformers`` generate runs everywhere (the default, CPU included); an in-process vLLM engine and any
OpenAI-protocol server (a vLLM server, an API model) are selected with ``backend: vllm|openai``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from tuna_open.generate import hf_sampler, openai_sampler, vllm_sampler
from tuna_open.generate.base import Sampler
from tuna_open.generate.hf_sampler import HFSamplerConfig


@dataclass(frozen=True)
class SamplerBackend:
    """A sampling backend: the options block it validates, and how it loads a model with them."""

    config: type[BaseModel]
    build: Callable[[str, Any], Sampler]


SAMPLERS: dict[str, SamplerBackend] = {
    "hf": SamplerBackend(HFSamplerConfig, hf_sampler.HFSampler),
    "vllm": SamplerBackend(vllm_sampler.Config, vllm_sampler.build),
    "openai": SamplerBackend(openai_sampler.Config, openai_sampler.build),
}


class SamplerChoice(BaseModel):
    """Which backend generates, with one option block per backend (only the selected one is used)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["hf", "vllm", "openai"] = "hf"
    hf: HFSamplerConfig = HFSamplerConfig()
    vllm: dict[str, Any] = {}
    """Options of ``tuna_open.generate.vllm_sampler.Config`` (tensor_parallel_size, gpu_memory_utilization…)."""
    openai: dict[str, Any] = {}
    """Options of ``tuna_open.generate.openai_sampler.Config`` (base_url, api_key_env, max_concurrency…)."""

    @model_validator(mode="after")
    def _check_selected(self) -> "SamplerChoice":
        if self.backend != "hf":  # the hf block is typed: validated with the choice itself
            SAMPLERS[self.backend].config.model_validate(getattr(self, self.backend))
        return self

    @property
    def chat_api(self) -> bool:
        """The selected sampler is sent conversations (``openai`` with ``api: chat``), not rendered prompts."""
        return self.backend == "openai" and self.openai.get("api") == "chat"

    def check_template(self, template: str) -> None:
        """A chat-completions sampler is sent conversations, which only ``template: chat`` describes."""
        if self.chat_api and template != "chat":
            raise ValueError(f"sampler.openai.api 'chat' applies the server's chat template: set template: chat "
                             f"(not {template!r})")


def build_sampler(model: str, choice: SamplerChoice) -> Sampler:
    """Load ``model`` (HF id, local dir, or the served model's name for ``openai``) with the chosen backend."""
    backend = SAMPLERS[choice.backend]
    return backend.build(model, backend.config.model_validate(getattr(choice, choice.backend)))
