"""Stage ``train_ppo``: the paper's RLHF baseline with TRL's PPO (``trl.experimental.ppo`` in TRL 1.12)."""

from __future__ import annotations

from typing import Literal

from rankers.llm.templates import TemplateName
from tuna_open.recipe import StageConfig
from tuna_open.stages.context import StageContext, StageResult
from tuna_open.stages.prompts import prompt_builder
from tuna_open.stages.stage import Stage
from tuna_open.train.ppo import PPOSettings, train_ppo


class Config(StageConfig):
    kind: Literal["train_ppo"]
    model: str
    """The policy to start from (the SFT model)."""
    reward_model: str
    """A sequence-classification reward model (``@train_reward`` stage, a dir or an HF id); also the value init."""
    data: str
    """Instructions whose prompts PPO generates on."""
    template: TemplateName = "alpaca"
    train: PPOSettings = PPOSettings()

    def data_names(self) -> list[str]:
        return [self.data]


def run(ctx: StageContext, cfg: Config) -> StageResult:
    model = ctx.resolve(cfg.model)
    prompts = list(map(prompt_builder(cfg.template, model), ctx.instructions(cfg.data)))
    result = train_ppo(model, ctx.resolve(cfg.reward_model), prompts,
                       cfg.train.model_copy(update={"seed": ctx.seed}), str(ctx.output))
    return StageResult(summary=f"PPO on {len(prompts)} prompts", counts={"prompts": len(prompts)},
                       history=result["history"])


# Training: every process of an `accelerate launch` takes part.
STAGE = Stage(kind="train_ppo", config=Config, output="model", run=run, all_processes=True)
