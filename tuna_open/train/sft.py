"""Supervised fine-tuning with TRL's ``SFTTrainer``: loss on the response only, Alpaca prompt template.

The dataset is TRL's prompt-completion format, so TRL masks the prompt out of the loss and appends EOS to
each completion (the same convention the Tuna trainer and the likelihood rankers use).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Sequence, TypedDict

from pydantic import BaseModel, ConfigDict


class SftExample(TypedDict):
    prompt: str
    """Templated prompt."""
    response: str


class SFTSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learning_rate: float = 2e-5
    num_epochs: float = 3.0
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int = 512
    warmup_steps: float = 0.03
    """Linear warmup: a step count, or a fraction of all steps when below 1."""
    weight_decay: float = 0.0
    lr_scheduler_type: str = "cosine"
    bf16: bool = False
    gradient_checkpointing: bool = False
    logging_steps: int = 10
    max_steps: int = -1
    seed: int = 0


def train_sft(model_path: str, examples: Sequence[SftExample], settings: SFTSettings, output_dir: str | Path) -> dict:
    """Fine-tune ``model_path`` on ``examples``; saves model + tokenizer to ``output_dir`` atomically."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    output_dir = Path(output_dir)
    tmp = output_dir.with_name(output_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    dataset = Dataset.from_list([{"prompt": e["prompt"], "completion": e["response"]} for e in examples])
    args = SFTConfig(
        output_dir=str(tmp / "trainer"),
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.num_epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_length=settings.max_length,
        warmup_steps=settings.warmup_steps,
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.lr_scheduler_type,
        bf16=settings.bf16,
        activation_checkpointing=settings.gradient_checkpointing,
        logging_steps=settings.logging_steps,
        seed=settings.seed,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        completion_only_loss=True,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # the stage prints one summary line; curves go to the report
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_model(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    tmp.rename(output_dir)
    history = [{"step": h["step"], "loss": h["loss"], "learning_rate": h.get("learning_rate", 0.0)}
               for h in trainer.state.log_history if "loss" in h]
    return {"history": history, "train_seconds": seconds, "examples": len(examples)}
