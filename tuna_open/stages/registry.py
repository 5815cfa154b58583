"""Every stage kind, by name. Adding one is one module declaring a ``STAGE`` plus one entry here."""

from __future__ import annotations

from typing import Any

from tuna_open.stages import (
    distill,
    eval,
    init_model,
    rank,
    sample,
    sft,
    train_dpo,
    train_grpo,
    train_ppo,
    train_reward,
    train_tuna,
)
from tuna_open.stages.stage import Stage

STAGES: dict[str, Stage[Any]] = {stage.kind: stage for stage in (
    init_model.STAGE,
    sft.STAGE,
    sample.STAGE,
    distill.STAGE,
    rank.STAGE,
    train_tuna.STAGE,
    train_dpo.STAGE,
    train_reward.STAGE,
    train_ppo.STAGE,
    train_grpo.STAGE,
    eval.STAGE,
)}
