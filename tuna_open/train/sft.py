"""Supervised fine-tuning with TRL's ``SFTTrainer``: loss on the response only, Alpaca prompt template.

The dataset is TRL's prompt-completion format, so TRL masks the prompt out of the loss and appends EOS to
each completion (the same convention the Tuna trainer and the likelihood rankers use).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, TypedDict

from pydantic import NonNegativeFloat, PositiveFloat

from tuna_open.train.trl_common import (WORKDIR, LoraSettings, TrainSettings, atomic_output_dir, quiet_progress,
                                        train_and_save, trl_args)

HISTORY_FIELDS = {"loss": "loss", "learning_rate": "learning_rate"}


class SftExample(TypedDict):
    prompt: str
    """Templated prompt."""
    response: str


class SFTSettings(TrainSettings):
    learning_rate: NonNegativeFloat = 2e-5
    num_epochs: PositiveFloat = 3.0
    warmup_steps: NonNegativeFloat = 0.03
    lr_scheduler_type: str = "cosine"
    max_length: int = 512
    loss_type: str = "chunked_nll"
    """TRL's loss: ``chunked_nll`` never materialises full-vocabulary logits (big vocabularies); plain ``nll`` is
    faster for tiny ones."""
    lora: LoraSettings | None = None


def train_sft(model_path: str, examples: Sequence[SftExample], settings: SFTSettings,
              output_dir: str | Path) -> dict[str, Any]:
    """Fine-tune ``model_path`` on ``examples``; model + tokenizer land in ``output_dir`` atomically."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_list([{"prompt": e["prompt"], "completion": e["response"]} for e in examples])
    with atomic_output_dir(output_dir) as tmp, quiet_progress(not settings.progress_bar):
        args = trl_args(SFTConfig, settings, tmp / WORKDIR, max_length=settings.max_length,
                        loss_type=settings.loss_type, completion_only_loss=True)
        trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_path), args=args,
                             train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(model_path),
                             peft_config=settings.lora.peft_config("CAUSAL_LM") if settings.lora else None)
        return train_and_save(trainer, tmp, HISTORY_FIELDS)
