"""Pre-flight checks of ``tuna-open validate``: what would otherwise fail hours into a run.

The schema check (``tuna_open.recipe``) proves a recipe is well formed; it cannot see that the judge's API key is
missing, that vLLM is not installed on this machine, or that the vLLM server the sampler points at is down. Those
surface only when their stage starts, often after a long SFT stage. Here every backend a stage will actually use
(the selected one, not every option block) is checked for: its API key variable, the optional packages it imports
(vllm, deepspeed, the trackers of ``report_to``), and, on request, that its ``base_url`` answers.
"""

from __future__ import annotations

import importlib.util
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Iterator

from rankers.llm.client_settings import OPENAI_HOST, ClientSettings, redact_url, resolve_api_key
from rankers.llm.errors import EngineError
from rankers.registry import BACKENDS
from tuna_open.generate import SAMPLERS
from tuna_open.models import resolve_model_refs
from tuna_open.recipe import Recipe

OPENAI_CLIENTS = {"openai", "pairwise"}
"""Ranker backends that talk to an OpenAI-protocol endpoint (``teacher_logprob`` does with ``engine: openai``)."""
BLOCK_NAMES = set(BACKENDS) | set(SAMPLERS)
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio", "deepspeed": "deepspeed",
            "vllm": "vllm"}


@dataclass
class Preflight:
    problems: list[str] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)
    """base_url → the first stage that uses it."""
    keys: set[str] = field(default_factory=set)
    """Environment variables found holding API keys."""


def used_backends(node: Any) -> Iterator[dict[str, Any]]:
    """Every backend config a stage will use, flattened: a ``{backend: NAME, NAME: {...}, OTHER: {...}}`` choice
    yields ``{backend: NAME, **its block}`` (other blocks are inert options); nested configs (ensemble members,
    pairwise judges) are walked too."""
    if isinstance(node, dict):
        backend = node.get("backend")
        if isinstance(backend, str):
            block = node.get(backend)
            node = {k: v for k, v in node.items() if k not in BLOCK_NAMES}
            if isinstance(block, dict):
                node.update(block)
            yield node
        for value in node.values():
            if isinstance(value, (dict, list)):
                yield from used_backends(value)
    elif isinstance(node, list):
        for value in node:
            yield from used_backends(value)


def _packages(node: Any) -> Iterator[tuple[str, str]]:
    """(package, why) for packages a stage's training settings need: ``report_to`` trackers, DeepSpeed."""
    if isinstance(node, dict):
        for tracker in node.get("report_to") or []:
            yield PACKAGES.get(tracker, tracker), f"report_to: {tracker}"
        if (node.get("trainer_args") or {}).get("deepspeed"):
            yield "deepspeed", "trainer_args.deepspeed"
        for value in node.values():
            yield from _packages(value)


def preflight(recipe: Recipe, check_endpoints: bool = False, timeout: float = 5.0) -> Preflight:
    """Problems that would stop the run later, one line each; empty when the recipe can start."""
    out = Preflight()
    for stage in recipe.stages:
        out.problems += recipe.missing_inputs(stage)
        config = stage.effective(recipe)
        needs = list(_packages(config))
        resolve_model_refs(config, lambda ref: needs.append(("gguf", f"model {ref} (a GGUF file)")))
        for backend in used_backends(config):
            name, engine = backend["backend"], backend.get("engine")
            if "vllm" in (name, engine):
                needs.append(("vllm", f"backend {name}" + (f" (engine {engine})" if engine else "")))
            if name in OPENAI_CLIENTS or engine == "openai":
                settings = ClientSettings.model_validate(
                    {k: backend[k] for k in ClientSettings.model_fields if k in backend})
                try:
                    resolve_api_key(settings)
                    if settings.api_key is None and settings.api_key_env:
                        out.keys.add(settings.api_key_env)
                except EngineError as err:
                    out.problems.append(f"stage {stage.name}: {err}")
                for url in settings.urls():  # a list of servers: each is checked
                    out.endpoints.setdefault(url or f"https://{OPENAI_HOST}/v1", stage.name)
        for package, why in needs:
            if not is_installed(package):
                out.problems.append(f"stage {stage.name}: {why} needs the {package} package, which is not installed")
    if check_endpoints:
        for url, stage_name in out.endpoints.items():
            error = endpoint_error(url, timeout)
            if error:
                out.problems.append(f"stage {stage_name}: {redact_url(url)} does not answer ({redact_url(error)})")
    out.problems = list(dict.fromkeys(out.problems))
    return out


def is_installed(package: str) -> bool:
    """Importable without importing it (vllm or deepspeed take seconds and may touch the GPU)."""
    return importlib.util.find_spec(package) is not None


def endpoint_error(base_url: str, timeout: float) -> str | None:
    """None when ``GET base_url/models`` gets any HTTP answer (even 401: the server is up), else the reason."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as err:
        return str(getattr(err, "reason", err))
