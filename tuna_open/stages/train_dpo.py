"""Stage ``train_dpo``: DPO (TRL ``DPOTrainer``) on preference pairs drawn from any ranker's rankings."""

from __future__ import annotations

from typing import Literal

from tuna_open.stages.context import StageContext, StageResult
from tuna_open.stages.ranked import RankedInputs, train_on_pairs
from tuna_open.stages.stage import Stage
from tuna_open.train.dpo import DPOSettings, train_dpo
from tuna_open.train.preferences import PairMode


class Config(RankedInputs):
    kind: Literal["train_dpo"]
    pairs: PairMode = "best_vs_rest"
    """How a ranking becomes preference pairs: all ordered pairs, best vs each other, or best vs worst."""
    train: DPOSettings = DPOSettings()


def run(ctx: StageContext, cfg: Config) -> StageResult:
    return train_on_pairs(ctx, cfg, cfg.pairs, train_dpo, cfg.train)


# Training: every process of an `accelerate launch` takes part.
STAGE = Stage(kind="train_dpo", config=Config, output="model", run=run, all_processes=True)
