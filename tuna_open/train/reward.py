"""Reward model baseline with TRL's ``RewardTrainer`` (Bradley-Terry loss) on pairs from any ranker's rankings.

The result is a one-logit ``AutoModelForSequenceClassification`` initialised from the causal-LM checkpoint (the
LM head is dropped, a fresh score head is added, ``config.pad_token_id`` is set so the model finds the last
real token). It is used as the ``reward_model`` ranker and as PPO's reward and value initialisation.

Text convention (read from TRL 1.12's ``RewardTrainer._prepare_dataset``): with non-conversational
``prompt``/``chosen``/``rejected`` strings TRL appends ``eos_token`` to each response, then tokenizes the string
concatenation ``prompt + response + eos_token`` with the tokenizer's defaults (no chat template), and the score is
read at the last token, i.e. at EOS. So the model scores exactly ``templated prompt + response + EOS``; a scorer
must feed it that same text (PPO does: its responses are truncated after the EOS they stop on). Pairs longer
than ``max_length`` are dropped by TRL, not truncated.
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
    from trl import RewardConfig, RewardTrainer

HISTORY_FIELDS = {
    "loss": "loss",
    "accuracy": "accuracy",
    "margin": "margin",
    "learning_rate": "learning_rate",
}


class RewardSettings(TrainSettings):
    learning_rate: NonNegativeFloat = 1e-5
    max_length: int = 1024
    """Prompt + response tokens; longer pairs are dropped (``examples`` counts the rest)."""
    center_rewards_coefficient: float | None = None
    """Penalise the mean reward's square (pins the scale so rewards stay near zero, as PPO expects)."""
    lora: LoraSettings | None = None

    def trl_config_class(self) -> type["RewardConfig"]:
        from trl import RewardConfig

        return RewardConfig


def build_reward_trainer(model_path: str, pairs: Sequence[PreferencePair], settings: RewardSettings,
                         workdir: str | Path) -> "RewardTrainer":
    """A ready ``RewardTrainer``.

    The model is passed as a path so TRL seeds before adding the random score head (reproducible init), loads it
    with ``num_labels=1`` and silences the expected "lm_head unused, score newly initialised" report.
    """
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed
    from trl import RewardTrainer

    set_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    dataset = Dataset.from_list(trl_preference_rows(pairs))
    args = trl_args(settings, Path(workdir))
    model: Any = model_path
    if ensure_pad_token(tokenizer):  # the model must embed the new pad token: load it here (seeded above)
        model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1)
        ensure_pad_token(tokenizer, model)
    return RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config(settings.lora, "SEQ_CLS"))


def train_reward(model_path: str, pairs: Sequence[PreferencePair], settings: RewardSettings,
                 output_dir: str | Path) -> dict[str, Any]:
    """Train a reward model from ``model_path`` on ``pairs``; model + tokenizer land in ``output_dir`` atomically.

    Returns ``history`` (step, loss, pair accuracy, chosen-rejected margin, learning rate), ``train_seconds`` and
    ``examples`` (pairs within ``max_length``).
    """
    if not pairs:
        raise ValueError("a reward model needs at least one preference pair")
    return train_into(output_dir, settings, HISTORY_FIELDS,
                      lambda workdir: build_reward_trainer(model_path, pairs, settings, workdir))
