"""What the TRL baselines (DPO, reward model, PPO, GRPO/RLOO) share, so each trainer module is only its own logic.

One settings base (the TrainingArguments every trainer takes, under TRL's names, plus a ``trainer_args``
pass-through), one place that turns it into a TRL config, atomic output directories, the train-and-save sequence
(progress display, resume from the last checkpoint), and the log-history extraction the report plots.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Mapping, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from tuna_open.distributed import atomic_output_dir  # noqa: F401  (every trainer's one save path)
from tuna_open.recipe.aliases import LEGACY_NAMES

if TYPE_CHECKING:
    from peft import LoraConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainingArguments

ArgsT = TypeVar("ArgsT", bound="TrainingArguments")


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


ReportTo = Literal["tensorboard", "wandb", "trackio"]

RESERVED_TRAINER_ARGS = {"output_dir"}
"""``trainer_args`` keys that would break the stage contract (where checkpoints and the model go)."""


class TrainSettings(BaseModel):
    """TrainingArguments knobs common to all trainers, under TRL's names; each trainer's settings subclass this.

    Where our defaults differ from TRL's configs (TRL 1.12 / transformers 5.24), and why:

    - ``num_train_epochs`` 1 (TRL 3) and ``per_device_train_batch_size`` 4 (TRL 8): the ranking stages train on
      data they just generated; one pass is the paper's setting, and SFT sets its own 3.
    - ``bf16`` and ``gradient_checkpointing`` off (TRL's configs turn both on): CPU runs and tiny models need
      neither; turn them on for 7B+ models.
    - ``seed`` 0 (TRL 42): the stage overrides it with the recipe's seed anyway.
    - ``save_steps`` None: no intermediate checkpoints (TRL saves every 500 steps and keeps all of them); set it
      to make an interrupted stage resume. ``save_total_limit`` 2 (TRL unlimited): resuming needs only the last.
    - ``report_to`` none, as in TRL; TensorBoard event files are moved to the stage directory's ``logs/`` so they
      outlive the trainer's working directory.

    ``num_epochs`` and ``per_device_batch_size`` (our earlier names) are accepted as aliases. Anything else
    ``TrainingArguments`` or the trainer's TRL config takes goes in ``trainer_args``.
    """

    model_config = ConfigDict(extra="forbid")

    learning_rate: NonNegativeFloat = 1e-6
    num_train_epochs: PositiveFloat = 1.0
    per_device_train_batch_size: PositiveInt = 4
    gradient_accumulation_steps: PositiveInt = 1
    max_steps: int = -1
    """Stop after this many optimizer steps (PPO: rollout batches) when positive; overrides ``num_train_epochs``."""
    warmup_steps: NonNegativeFloat = 0.0
    """Linear warmup: a step count, or a fraction of all steps when below 1."""
    weight_decay: NonNegativeFloat = 0.0
    lr_scheduler_type: str = "linear"
    max_grad_norm: float = 1.0
    bf16: bool = False
    gradient_checkpointing: bool = False
    logging_steps: PositiveInt = 10
    seed: int = 0
    save_steps: int | None = Field(default=None, ge=1)
    """Save a checkpoint every this many steps; a re-run of the interrupted stage (same fingerprint) resumes
    from the last complete one. None: no checkpoints. Checkpoints are deleted once the model is saved."""
    save_total_limit: int | None = Field(default=2, ge=1)
    report_to: list[ReportTo] = []
    """Experiment trackers (``tensorboard``, ``wandb``, ``trackio``); ``none`` or [] for none. The run is named
    after the stage."""
    progress_bar: bool = True
    """Trainer progress: a tqdm bar on a terminal, a plain log line with ETA every ``TUNA_PROGRESS_INTERVAL``
    seconds (default 30) otherwise (Slurm, nohup)."""
    trainer_args: dict[str, Any] = {}
    """Passed as-is to the trainer's config class (``TrainingArguments`` or the TRL config): any field this
    schema does not name, e.g. ``{optim: adafactor, dataloader_num_workers: 2}``."""

    @model_validator(mode="before")
    @classmethod
    def _legacy_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in LEGACY_NAMES.items():
            if old in data:
                if new in data:
                    raise ValueError(f"{old!r} is an alias of {new!r}; set only one")
                data[new] = data.pop(old)
        return data

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        return [v for v in value if v != "none"] if isinstance(value, list) else value

    def trl_config_class(self) -> type["TrainingArguments"]:
        """The config class ``trainer_args`` are checked against and passed to (subclasses name their TRL one)."""
        from transformers import TrainingArguments

        return TrainingArguments

    @model_validator(mode="after")
    def _check_trainer_args(self) -> "TrainSettings":
        if not self.trainer_args:
            return self  # validating a recipe imports no trainer library unless it passes trainer_args
        import dataclasses

        config_cls = self.trl_config_class()
        known = {f.name for f in dataclasses.fields(config_cls) if f.init}
        for key in self.trainer_args:
            if key in type(self).model_fields or key in LEGACY_NAMES:
                raise ValueError(f"trainer_args.{key}: set it as train.{key}, not in trainer_args")
            if key in RESERVED_TRAINER_ARGS:
                raise ValueError(f"trainer_args.{key}: set by the stage, cannot be overridden")
            if key not in known:
                raise ValueError(f"trainer_args.{key}: not a field of {config_cls.__name__}")
        return self


def trainer_dir(output_dir: str | Path) -> Path:
    """The trainer's working directory (checkpoints) for a model saved to ``output_dir``.

    A stable path next to the output, not a temporary one: an interrupted run's checkpoints must still be there
    when the stage is re-run. The runner deletes the stage directory when the fingerprint changed, so a resumed
    checkpoint always belongs to the same configuration.
    """
    output_dir = Path(output_dir)
    return output_dir.with_name(f"{output_dir.name}.trainer")


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
    """Build a TRL config from the shared settings, trainer-specific fields and ``trainer_args``.

    Self-contained: trackers only when ``report_to`` names them (the run named after the stage directory),
    checkpoints only when ``save_steps`` is set, CPU when there is no CUDA. ``trainer_args`` override anything
    set here except ``output_dir``.
    """
    import torch

    return config_cls(**{
        "output_dir": str(workdir),
        "learning_rate": settings.learning_rate,
        "num_train_epochs": settings.num_train_epochs,
        "max_steps": settings.max_steps,
        "per_device_train_batch_size": settings.per_device_train_batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "warmup_steps": settings.warmup_steps,
        "weight_decay": settings.weight_decay,
        "lr_scheduler_type": settings.lr_scheduler_type,
        "max_grad_norm": settings.max_grad_norm,
        "bf16": settings.bf16,
        "activation_checkpointing": settings.gradient_checkpointing,
        "logging_steps": settings.logging_steps,
        "seed": settings.seed,
        "save_strategy": "steps" if settings.save_steps else "no",
        **({"save_steps": settings.save_steps} if settings.save_steps else {}),
        "save_total_limit": settings.save_total_limit,
        "report_to": settings.report_to or "none",
        "run_name": Path(workdir).parent.name,
        "disable_tqdm": True,  # ``run_training`` shows progress its own way (bar or log lines)
        "use_cpu": not torch.cuda.is_available(),
        **specific,
        **settings.trainer_args,
    })


@contextmanager
def quiet_progress() -> Iterator[None]:
    """Silence the datasets (tokenizing, filtering) and transformers (loading, saving) progress bars for a block.

    A stage prints one summary line and the trainer's own progress; a dozen library bars per training run would
    bury them. Previous states are restored.
    """
    import datasets
    from transformers.utils import logging as hf_logging

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


def train_and_save(trainer: "Trainer", out: Path, history_fields: Mapping[str, str], progress: bool = True,
                   **extra: Any) -> dict[str, Any]:
    """Train (resuming from the last complete checkpoint), save a plain model + tokenizer into ``out``, drop the
    trainer's working directory (checkpoints included), return the record.

    The returned dict is what stages put in their result: ``history`` (one row per logging step, keys from
    ``history_fields``), ``train_seconds`` (training only, not loading or saving), ``examples`` (training rows
    left after the trainer's own length filtering), ``resumed_from_step`` (0 for a fresh start) and ``extra``.
    """
    examples = len(trainer.train_dataset)
    if examples == 0:
        raise ValueError("no training examples left after the trainer's length filter; raise max_length")
    seconds, resumed = run_training(trainer, progress)
    save_plain_model(trainer, out)
    if trainer.accelerator.is_main_process:
        discard_workdir(trainer.args.output_dir)
    return {"history": log_history(trainer.state.log_history, history_fields), "train_seconds": seconds,
            "examples": examples, "resumed_from_step": resumed, **extra}


def run_training(trainer: "Trainer", progress: bool) -> tuple[float, int]:
    """``trainer.train()`` with our progress display, resumed from the last complete checkpoint in its
    ``output_dir`` when there is one; returns (training seconds, step resumed from or 0).

    TRL's experimental PPO loop takes no ``resume_from_checkpoint`` and always starts afresh.
    """
    import inspect

    from transformers import PrinterCallback

    from tuna_open.progress import training_progress_callback

    trainer.remove_callback(PrinterCallback)  # its per-step dict dumps would drown the stage's summary line
    if progress:
        trainer.add_callback(training_progress_callback())
    checkpoint = last_checkpoint(trainer.args.output_dir)
    if "resume_from_checkpoint" not in inspect.signature(trainer.train).parameters:
        checkpoint = None
    start = time.perf_counter()
    trainer.train(**({"resume_from_checkpoint": checkpoint} if checkpoint else {}))
    return time.perf_counter() - start, int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0


def discard_workdir(workdir: str | Path) -> None:
    """Delete the trainer's working directory once the model is saved, keeping TensorBoard's event files.

    transformers 5 writes them under ``output_dir/runs`` (it has no ``logging_dir`` any more); they move to
    ``logs/`` beside the working directory (the stage directory), where a re-run does not clobber them.
    """
    workdir = Path(workdir)
    events = workdir / "runs"
    if events.is_dir():
        logs = workdir.parent / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for run in events.iterdir():
            shutil.move(str(run), str(logs / run.name))
    shutil.rmtree(workdir, ignore_errors=True)


def last_checkpoint(workdir: str | Path) -> str | None:
    """The newest *complete* ``checkpoint-N`` in ``workdir``, or None.

    transformers writes ``trainer_state.json`` after the weights, optimizer and RNG states, so a checkpoint a
    kill interrupted mid-save lacks it and is passed over for the one before.
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        return None
    complete = [c for c in workdir.glob("checkpoint-*")
                if c.name.rsplit("-", 1)[1].isdigit() and (c / "trainer_state.json").is_file()]
    return str(max(complete, key=lambda c: int(c.name.rsplit("-", 1)[1]))) if complete else None


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
    trainer.accelerator.wait_for_everyone()


def log_history(entries: list[dict[str, Any]], fields: Mapping[str, str]) -> list[dict[str, float]]:
    """Rows ``{"step", name: entry[key] ...}`` for each logging step that has every mapped key.

    ``fields`` maps our names to the trainer's log keys; requiring all keys skips the end-of-training summary
    entry, whose keys (``train_loss``, ``train_runtime``) differ.
    """
    return [{"step": float(e["step"]), **{name: float(e[key]) for name, key in fields.items()}}
            for e in entries if all(key in e for key in fields.values())]
