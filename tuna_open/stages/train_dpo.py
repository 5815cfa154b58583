"""Stage ``train_dpo``: DPO (TRL ``DPOTrainer``) on preference pairs drawn from any ranker's rankings."""

from __future__ import annotations

from typing import Literal

from tuna_open.errors import UserError
from tuna_open.pipeline.context import StageContext, StageResult
from tuna_open.stages.ranked import RankedInputs
from tuna_open.train.dpo import DPOSettings, train_dpo
from tuna_open.train.preferences import PairMode, preference_pairs

OUTPUT = "model"


class Config(RankedInputs):
    kind: Literal["train_dpo"]
    model: str
    pairs: PairMode = "best_vs_rest"
    """How a ranking becomes preference pairs: all ordered pairs, best vs each other, or best vs worst."""
    train: DPOSettings = DPOSettings()


def run(ctx: StageContext, cfg: Config) -> StageResult:
    pairs = preference_pairs(*cfg.load(ctx), mode=cfg.pairs)
    if not pairs:
        raise UserError(f"stage {cfg.name}: no preference pairs in {cfg.rankings}")
    result = train_dpo(ctx.resolve(cfg.model), pairs, cfg.train.model_copy(update={"seed": ctx.seed}), str(ctx.output))
    return StageResult(summary=f"{len(pairs)} preference pairs ({cfg.pairs})", counts={"pairs": len(pairs)},
                       history=result["history"])
