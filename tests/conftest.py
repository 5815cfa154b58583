"""Shared fixtures: a tiny Llama model + tokenizer built locally once per test session (no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.paths import ROOT
from helpers.tiny_models import CHAT_TEMPLATE, TEXTS, build_sentencepiece_tokenizer

torch.set_num_threads(1)  # CI has 2 cores; keep per-test threading predictable

SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved random-init tiny Llama (hidden 64, 2 layers, head_dim 32) with its tokenizer."""
    from tuna_open.builtin.model import BUILTIN_MODELS, init_model, train_tokenizer

    out = tmp_path_factory.mktemp("tiny_model")
    tok = train_tokenizer(TEXTS, out, vocab_size=300)
    init_model(BUILTIN_MODELS["student"], tok, out, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_chat_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with ``CHAT_TEMPLATE`` in its tokenizer (the plain fixture keeps none)."""
    import shutil

    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tiny_chat_model") / "model"
    shutil.copytree(tiny_model_dir, out)
    tok = AutoTokenizer.from_pretrained(out)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sentencepiece_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with a LLaMA-1-like SentencePiece tokenizer without a pad token (see above)."""
    from tuna_open.builtin.model import BUILTIN_MODELS, init_model

    out = tmp_path_factory.mktemp("sp_model")
    init_model(BUILTIN_MODELS["student"], build_sentencepiece_tokenizer(TEXTS), out, seed=0)
    return out


SLOW_TIMEOUT = 1800
"""Seconds a ``slow`` test may take (real trainers, multi-process launches on a loaded 2-core CI machine)."""


SLOW_FOLDERS = ("integration", "e2e")
"""Every test under these folders is ``slow``: real trainers, multi-process launches, vLLM, whole recipes."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow folders' tests ``slow`` and give slow tests the longer timeout (pyproject's is for the fast)."""
    tests = Path(__file__).resolve().parent
    for item in items:
        path = Path(str(item.path)).resolve()
        if path.is_relative_to(tests) and path.relative_to(tests).parts[0] in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


@pytest.fixture(scope="session")
def ranked_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished small run (tiny model → 3 samples for 8 builtin prompts → ranked by their log-probs): the run
    directory, with stages ``init``, ``samples`` and ``rankings``."""
    import yaml
    from rich.console import Console

    from tuna_open.pipeline.runner import run_recipe
    from tuna_open.recipe import load_recipe
    from tuna_open.stages.registry import STAGES

    root = tmp_path_factory.mktemp("ranked_run")
    recipe = {
        "name": "ranked", "data": {"p": {"source": "builtin:tasks", "split": "train", "limit": 8}},
        "stages": [
            {"name": "init", "kind": "init_model", "vocab_size": 320, "tokenizer_corpus": 200},
            {"name": "samples", "kind": "sample", "model": "@init", "data": "p", "n": 3, "max_new_tokens": 6,
             "temperature": 1.0, "dedup": False, "min_candidates": 1, "logprobs": True},
            {"name": "rankings", "kind": "rank", "input": "@samples",
             "ranker": {"backend": "teacher_logprob", "teacher_logprob": {}}},
        ],
    }
    (root / "r.yaml").write_text(yaml.safe_dump(recipe))
    run_recipe(load_recipe(root / "r.yaml", STAGES), root / "run", console=Console(quiet=True))
    return root / "run"
