"""What the TRL baselines (DPO, reward model, PPO, GRPO/RLOO) share, so each trainer module is only its own logic.

One settings base (the TrainingArguments every trainer takes, under the names ``SFTSettings`` uses), one place
that turns it into a TRL config with the project's quiet defaults, atomic output directories, the train-and-save
sequence, and the log-history extraction the report plots.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveFloat, PositiveInt

from tuna_open.distributed import atomic_output_dir  # noqa: F401  (every trainer's one save path)

if TYPE_CHECKING:
    from peft import LoraConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainingArguments

ArgsT = TypeVar("ArgsT", bound="TrainingArguments")

WORKDIR = "_trainer"
"""Trainer scratch space inside the temporary output directory; removed before the output is published."""


class LoraSettings(BaseModel):
    """Train LoRA adapters instead of all weights; the saved model has them merged, so consumers need no PEFT."""

    model_config = ConfigDict(extra="forbid")

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | Literal["all-linear"] = "all-linear"

    def peft_config(self, task_type: Literal["CAUSAL_LM", "SEQ_CLS"]) -> "LoraConfig":
        """``SEQ_CLS`` makes PEFT also train (and save) the fresh score head, which LoRA alone would leave random."""
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules, task_type=task_type)


class TrainSettings(BaseModel):
    """TrainingArguments knobs common to all baselines; each trainer's settings subclass this and add its own."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: NonNegativeFloat = 1e-6
    num_epochs: PositiveFloat = 1.0
    per_device_batch_size: PositiveInt = 4
    gradient_accumulation_steps: PositiveInt = 1
    max_steps: int = -1
    """Stop after this many optimizer steps (PPO: rollout batches) when positive; overrides ``num_epochs``."""
    warmup_steps: NonNegativeFloat = 0.0
    """Linear warmup: a step count, or a fraction of all steps when below 1."""
    weight_decay: NonNegativeFloat = 0.0
    lr_scheduler_type: str = "linear"
    bf16: bool = False
    gradient_checkpointing: bool = False
    logging_steps: PositiveInt = 10
    seed: int = 0
    progress_bar: bool = False
    """Show the trainer's tqdm bar (off: the stage prints one summary line and the report draws the curves)."""


PAD_TOKEN = "[PAD]"
"""The pad token added to tokenizers that have none (LMOps's ``DEFAULT_PAD_TOKEN``, as in Alpaca's ``train.py``)."""


def ensure_pad_token(tokenizer: "PreTrainedTokenizerBase", *models: "PreTrainedModel") -> bool:
    """Give ``tokenizer`` a pad token distinct from EOS and make ``models`` able to embed it; True if one was added.

    Why: LLaMA-1's tokenizer has no pad token, and TRL's trainers then pad with EOS. PPO finds a response's end
    as its first pad token, so with pad == EOS the EOS would drop out of the policy loss and the reward be read
    before it. So, as LMOps and Alpaca do
    (``smart_tokenizer_and_embedding_resize``), a new special token ``[PAD]`` is added and every model's
    embeddings are resized, the new rows set to the mean of the old ones. Every trainer calls this, SFT first, so
    a model trained here always carries the same pad token, and later stages find it already there. A pad that is
    never attended to never affects outputs; the mean rows only keep a sampled pad from being an outlier.
    """
    added = tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id
    if added:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    for model in models:
        old = model.get_input_embeddings().num_embeddings  # not weight.shape: a ZeRO-3 shard is empty
        if old < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            # A sequence-classification model has no output embeddings.
            weights = [layer.weight for layer in (model.get_input_embeddings(), model.get_output_embeddings())
                       if layer is not None]
            with _gathered(weights):  # under ZeRO-3 each process holds a shard: edit the whole rows on rank 0
                for weight in weights:
                    weight.data[old:] = weight.data[:old].mean(dim=0, keepdim=True)
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return added


def _gathered(params: list[Any]) -> Any:
    """``deepspeed.zero.GatheredParameters`` (edits on rank 0, broadcast on exit) under ZeRO-3, else no-op."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0)


def trl_args(config_cls: type[ArgsT], settings: TrainSettings, workdir: Path, **specific: Any) -> ArgsT:
    """Build a TRL config from the shared settings plus trainer-specific fields.

    Quiet and self-contained: no reporting integrations, no intermediate checkpoints (the caller saves the final
    model once), CPU when there is no CUDA. TRL's own defaults of ``bf16=True`` and gradient checkpointing on are
    overridden by the settings, which default to off because CPU runs and tiny models need neither.
    """
    import torch

    return config_cls(
        output_dir=str(workdir),
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.num_epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        warmup_steps=settings.warmup_steps,
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.lr_scheduler_type,
        bf16=settings.bf16,
        activation_checkpointing=settings.gradient_checkpointing,
        logging_steps=settings.logging_steps,
        seed=settings.seed,
        save_strategy="no",
        report_to=[],
        disable_tqdm=not settings.progress_bar,
        use_cpu=not torch.cuda.is_available(),
        **specific,
    )


@contextmanager
def quiet_progress(quiet: bool = True) -> Iterator[None]:
    """Silence the datasets (tokenizing, filtering) and transformers (loading, saving) progress bars for a block.

    A stage prints one summary line; a dozen bars per training run would bury it. Previous states are restored.
    """
    import datasets
    from transformers.utils import logging as hf_logging

    if not quiet:
        yield
        return
    datasets_off, transformers_on = datasets.are_progress_bars_disabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not datasets_off:
            datasets.enable_progress_bars()
        if transformers_on:
            hf_logging.enable_progress_bar()


def train_and_save(trainer: "Trainer", out: Path, history_fields: Mapping[str, str], **extra: Any) -> dict[str, Any]:
    """Train, save a plain model + tokenizer into ``out``, drop the trainer's scratch space, return the record.

    The returned dict is what stages put in their result: ``history`` (one row per logging step, keys from
    ``history_fields``), ``train_seconds`` (training only, not loading or saving), ``examples`` (training rows
    left after the trainer's own length filtering) and ``extra``.
    """
    from transformers import PrinterCallback

    examples = len(trainer.train_dataset)
    if examples == 0:
        raise ValueError("no training examples left after the trainer's length filter; raise max_length")

    trainer.remove_callback(PrinterCallback)  # its per-step dict dumps would drown the stage's summary line
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    save_plain_model(trainer, out)
    return {"history": log_history(trainer.state.log_history, history_fields), "train_seconds": seconds,
            "examples": examples, **extra}


def save_plain_model(trainer: "Trainer", out: Path) -> None:
    """Save model and tokenizer so ``from_pretrained`` loads them without PEFT (LoRA adapters merged first).

    Every process calls it: ``save_model`` gathers sharded (ZeRO-3 / FSDP) weights from all of them, and the
    files are written by the main process only, so N processes never write the same file.
    """
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    main = trainer.accelerator.is_main_process
    if isinstance(model, PeftModel):
        if main:
            model.merge_and_unload().save_pretrained(str(out))
    else:
        trainer.save_model(str(out))
    if main:
        trainer.processing_class.save_pretrained(str(out))
        shutil.rmtree(trainer.args.output_dir, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()


def log_history(entries: list[dict[str, Any]], fields: Mapping[str, str]) -> list[dict[str, float]]:
    """Rows ``{"step", name: entry[key] ...}`` for each logging step that has every mapped key.

    ``fields`` maps our names to the trainer's log keys; requiring all keys skips the end-of-training summary
    entry, whose keys (``train_loss``, ``train_runtime``) differ.
    """
    return [{"step": float(e["step"]), **{name: float(e[key]) for name, key in fields.items()}}
            for e in entries if all(key in e for key in fields.values())]
