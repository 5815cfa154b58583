"""Stage ``train_reward``: a reward model (TRL ``RewardTrainer``) from any ranker's rankings.

The result is a sequence-classification model usable as the ``reward_model`` ranker and as PPO's reward.
"""

from __future__ import annotations

from typing import Literal

from tuna_open.errors import UserError
from tuna_open.pipeline.context import StageContext, StageResult
from tuna_open.stages.ranked import RankedInputs
from tuna_open.train.preferences import PairMode, preference_pairs
from tuna_open.train.reward import RewardSettings, train_reward

OUTPUT = "model"


class Config(RankedInputs):
    kind: Literal["train_reward"]
    model: str
    """The model the reward model is initialised from (usually the SFT model)."""
    pairs: PairMode = "all_pairs"
    train: RewardSettings = RewardSettings()


def run(ctx: StageContext, cfg: Config) -> StageResult:
    pairs = preference_pairs(*cfg.load(ctx), mode=cfg.pairs)
    if not pairs:
        raise UserError(f"stage {cfg.name}: no preference pairs in {cfg.rankings}")
    result = train_reward(ctx.resolve(cfg.model), pairs, cfg.train.model_copy(update={"seed": ctx.seed}),
                          str(ctx.output))
    return StageResult(summary=f"{len(pairs)} preference pairs ({cfg.pairs})", counts={"pairs": len(pairs)},
                       history=result["history"])
