"""DPO baseline with TRL's ``DPOTrainer`` on preference pairs from any ranker's rankings.

Text convention (read from TRL 1.12's ``DPOTrainer._prepare_dataset``): our prompts are plain, already templated
strings, so the dataset is TRL's non-conversational ``prompt``/``chosen``/``rejected`` format. For that format TRL
appends ``eos_token`` to each response, tokenizes ``prompt`` and ``prompt + response`` with the tokenizer's
defaults, and never applies a chat template (templates are only used when ``prompt`` is a list of messages).
The model therefore learns exactly ``prompt + response + EOS``, the sequence SFT trained and the samplers decode.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from pydantic import NonNegativeFloat

from tuna_open.train.padding import ensure_pad_token
from tuna_open.train.preferences import PreferencePair, trl_preference_rows
from tuna_open.train.scaffold import train_into
from tuna_open.train.settings import LoraSettings, TrainSettings, peft_config
from tuna_open.train.trl_config import trl_args

if TYPE_CHECKING:
    from trl import DPOConfig, DPOTrainer

HISTORY_FIELDS = {
    "loss": "loss",
    "reward_margin": "rewards/margins",
    "reward_accuracy": "rewards/accuracies",
    "learning_rate": "learning_rate",
}


class DPOSettings(TrainSettings):
    learning_rate: NonNegativeFloat = 1e-6
    beta: float = 0.1
    """Strength of the pull towards the reference model (higher: smaller deviations)."""
    loss_type: str = "sigmoid"
    """Any TRL DPO loss: ``sigmoid`` (the DPO paper), ``ipo``, ``hinge``, ``robust``, ..."""
    max_length: int = 1024
    """Prompt + response tokens; a pair whose prompt alone reaches it is dropped by TRL (counted in ``examples``)."""
    lora: LoraSettings | None = None
    """Train LoRA adapters; the reference is then the base model with adapters disabled (no second copy)."""

    def trl_config_class(self) -> type["DPOConfig"]:
        from trl import DPOConfig

        return DPOConfig


def build_dpo_trainer(model_path: str, pairs: Sequence[PreferencePair], settings: DPOSettings,
                      workdir: str | Path) -> "DPOTrainer":
    """A ready ``DPOTrainer``; the reference model is a frozen copy of the starting model (or, with LoRA, the
    starting model itself with adapters disabled)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOTrainer

    set_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    ref_model = None if settings.lora else AutoModelForCausalLM.from_pretrained(model_path)
    ensure_pad_token(tokenizer, *[m for m in (model, ref_model) if m is not None])
    dataset = Dataset.from_list(trl_preference_rows(pairs))
    args = trl_args(settings, Path(workdir), loss_type=[settings.loss_type])  # TRL takes a list of losses
    return DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=peft_config(settings.lora, "CAUSAL_LM"))


def train_dpo(model_path: str, pairs: Sequence[PreferencePair], settings: DPOSettings,
              output_dir: str | Path) -> dict[str, Any]:
    """DPO-train ``model_path`` on ``pairs``; the model + tokenizer land in ``output_dir`` atomically.

    Returns ``history`` (step, loss, reward margin/accuracy, learning rate), ``train_seconds`` and ``examples``
    (pairs left after TRL's length filter).
    """
    if not pairs:
        raise ValueError("DPO needs at least one preference pair")
    return train_into(output_dir, settings, HISTORY_FIELDS,
                      lambda workdir: build_dpo_trainer(model_path, pairs, settings, workdir))
