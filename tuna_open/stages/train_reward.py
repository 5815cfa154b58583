"""Stage ``train_reward``: a reward model (TRL ``RewardTrainer``) from any ranker's rankings.

The result is a sequence-classification model usable as the ``reward_model`` ranker and as PPO's reward.
"""

from __future__ import annotations

from typing import Literal

from tuna_open.stages.context import StageContext, StageResult
from tuna_open.stages.ranked import RankedInputs, train_on_pairs
from tuna_open.stages.stage import Stage
from tuna_open.train.preferences import PairMode
from tuna_open.train.reward import RewardSettings, train_reward


class Config(RankedInputs):
    kind: Literal["train_reward"]
    model: str
    """The model the reward model is initialised from (usually the SFT model)."""
    pairs: PairMode = "all_pairs"
    train: RewardSettings = RewardSettings()


def run(ctx: StageContext, cfg: Config) -> StageResult:
    return train_on_pairs(ctx, cfg, cfg.pairs, train_reward, cfg.train)


# Training: every process of an `accelerate launch` takes part.
STAGE = Stage(kind="train_reward", config=Config, output="model", run=run, all_processes=True)
