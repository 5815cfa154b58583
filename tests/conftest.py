"""Shared fixtures: a tiny Llama model + tokenizer built locally once per test session (no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # CI has 2 cores; keep per-test threading predictable

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

_TEXTS = [
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "### Instruction:\nAdd 12 and 30.\n\n### Response:\n42",
    "### Instruction:\nReverse the list 1 2 3.\n\n### Response:\n3 2 1",
    "The quick brown fox jumps over the lazy dog. 0123456789 rank: [0, 1, 2, 3]",
] * 20


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved random-init tiny Llama (hidden 64, 2 layers, head_dim 32) with its tokenizer."""
    from tuna_open.builtin.model import BUILTIN_MODELS, init_model, train_tokenizer

    out = tmp_path_factory.mktemp("tiny_model")
    tok = train_tokenizer(_TEXTS, out, vocab_size=300)
    init_model(BUILTIN_MODELS["student"], tok, out, seed=0)
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ranked_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished small run (tiny model → 3 samples for 8 builtin prompts → ranked by their log-probs): the run
    directory, with stages ``init``, ``samples`` and ``rankings``."""
    import yaml
    from rich.console import Console

    from tuna_open.pipeline.runner import run_recipe
    from tuna_open.recipe import load_recipe

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
    run_recipe(load_recipe(root / "r.yaml"), root / "run", console=Console(quiet=True))
    return root / "run"
