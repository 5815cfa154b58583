"""The ``train:`` block users write in recipes: the knobs every trainer shares, under TRL's names.

Kept apart from the code that trains so that validating a recipe imports no trainer library (``trainer_args``
aside, which must be checked against the TRL config class).
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from tuna_open.recipe.aliases import LEGACY_NAMES

if TYPE_CHECKING:
    from peft import LoraConfig
    from transformers import TrainingArguments


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


def peft_config(lora: LoraSettings | None, task_type: Literal["CAUSAL_LM", "SEQ_CLS"]) -> "LoraConfig | None":
    """What TRL trainers take as ``peft_config``: None without a ``lora`` block, so all weights are trained."""
    return lora.peft_config(task_type) if lora else None


ObjectiveName = Literal["margin", "listnet", "plackett_luce", "lipo", "dpo_pl", "rrhf"]
"""``train_tuna``'s ranking terms (``tuna_open.train.objectives``); here because recipes name them and validating a
recipe must not import torch."""
MarginScale = Literal["rank", "score"]

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

    ``num_epochs`` and ``per_device_batch_size`` (our earlier names) are deprecated aliases of
    ``num_train_epochs`` and ``per_device_train_batch_size`` (``LEGACY_NAMES``). Anything else
    ``TrainingArguments`` or the trainer's TRL config takes goes in ``trainer_args``.

    Every field reaches the TRL config under its own name (``tuna_open.train.trl_config``) unless it is listed in
    ``not_for_trl``, so a field added here cannot be silently left out of training.
    """

    model_config = ConfigDict(extra="forbid")

    not_for_trl: ClassVar[frozenset[str]] = frozenset({"progress_bar", "trainer_args", "lora"})
    """Fields our code consumes instead of the TRL config: the progress display, the pass-through itself, and
    ``lora`` (subclasses that have it turn it into the trainer's ``peft_config``). Subclasses add their own."""

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
                warnings.warn(f"train.{old} is deprecated, use train.{new}", DeprecationWarning, stacklevel=2)
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
        config_cls = self.trl_config_class()
        known = {f.name for f in dataclasses.fields(config_cls) if f.init}
        for key in self.trainer_args:
            if key in type(self).model_fields or key in LEGACY_NAMES:
                raise ValueError(f"trainer_args.{key}: set it as train.{key}, not in trainer_args")
            if key in RESERVED_TRAINER_ARGS:
                raise ValueError(f"trainer_args.{key}: set by the stage, cannot be overridden")
            if key not in known:
                raise ValueError(f"trainer_args.{key}: not a field of {config_cls.__name__}")
        hints = typing.get_type_hints(config_cls)
        for key, value in self.trainer_args.items():
            # The field's own type: a wrong one validated, then crashed the run deep inside the trainer.
            try:
                TypeAdapter(hints[key]).validate_python(value)
            except ValidationError as err:
                raise ValueError(f"trainer_args.{key}: {err.errors()[0]['msg']} (got {value!r})") from None
        return self
