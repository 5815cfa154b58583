"""Stage ``train_grpo``: GRPO (TRL) with any ranker as the reward — scores where it gives them, ranks otherwise."""

from __future__ import annotations

from typing import Literal

from rankers import build_ranker
from rankers.base import owned
from rankers.llm.templates import TemplateName
from tuna_open.stages.context import StageContext, StageResult
from tuna_open.stages.prompts import prompt_builder
from tuna_open.stages.ranked import RankerStage
from tuna_open.stages.stage import Stage
from tuna_open.train.grpo import GRPOSettings, train_grpo


class Config(RankerStage):
    kind: Literal["train_grpo"]
    model: str
    data: str
    template: TemplateName = "alpaca"
    train: GRPOSettings = GRPOSettings()

    def data_names(self) -> list[str]:
        return [self.data]


def run(ctx: StageContext, cfg: Config) -> StageResult:
    records = ctx.instructions(cfg.data)
    model = ctx.resolve(cfg.model)
    prompt = prompt_builder(cfg.template, model)
    prompts = [{**r, "prompt": prompt(r)} for r in records]
    with owned(build_ranker(ctx.resolve(cfg.choice(ctx.recipe).flat()))) as ranker:
        result = train_grpo(model, prompts, ranker, cfg.train.model_copy(update={"seed": ctx.seed}), str(ctx.output))
    return StageResult(summary=f"GRPO on {len(prompts)} prompts", counts={"prompts": len(prompts)},
                       history=result["history"])


# Training: every process of an `accelerate launch` takes part.
STAGE = Stage(kind="train_grpo", config=Config, output="model", run=run, all_processes=True)
