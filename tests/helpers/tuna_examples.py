"""Tuna training examples and settings shared by the trainer's unit and integration tests."""

from __future__ import annotations

from pathlib import Path

import torch

from tuna_open.train.losses import tuna_loss
from tuna_open.train.tuna_data import TunaCollator, encode_group
from tuna_open.train.tuna_trainer import TunaTrainConfig

PROMPT = "### Instruction:\nAdd {a} and {b}.\n\n### Response:\n"


def ranked_examples(count: int = 6) -> list[dict]:
    """The right sum first, then ever worse answers: a ranking the model can learn in a few steps."""
    return [{"prompt": PROMPT.format(a=i, b=i + 1),
             "candidates": [str(2 * i + 1), f"{2 * i + 1} 0", "rank: [0, 1, 2, 3]"]}
            for i in range(count)]


def fast_config(**overrides) -> TunaTrainConfig:
    settings = {"learning_rate": 3e-3, "max_steps": 12, "per_device_batch_size": 2, "logging_steps": 2,
                "lr_scheduler_type": "constant", "max_length": 64}
    return TunaTrainConfig(**{**settings, **overrides})


def ranking_scores(model_dir: Path, examples: list[dict]) -> torch.Tensor:
    """[prompts, candidates] length-normalised log-likelihoods under the saved model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    groups = [encode_group(tokenizer, e["prompt"], e["candidates"], 64) for e in examples]
    with torch.no_grad():
        batch = TunaCollator(tokenizer.pad_token_id)(groups)
        return tuna_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"]).scores
