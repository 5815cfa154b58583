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


CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
"""A minimal Jinja chat template; it writes BOS itself, as Llama 3's does, so the no-double-BOS rule is exercised."""


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
