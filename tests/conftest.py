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


SLOW_TIMEOUT = 1800
"""Seconds a ``slow`` test may take (real trainers, multi-process launches on a loaded 2-core CI machine)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give slow tests the longer timeout; pyproject's ``timeout`` is for the fast ones."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))
