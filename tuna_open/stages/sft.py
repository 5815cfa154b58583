"""Stage ``sft``: supervised fine-tuning on instruction data (the paper's Alpaca step)."""

from __future__ import annotations

from typing import Literal

from rankers.llm.templates import TemplateName
from tuna_open.recipe import StageConfig, recipe_data
from tuna_open.stages.context import StageContext, StageResult
from tuna_open.stages.prompts import prompt_builder
from tuna_open.stages.stage import Stage
from tuna_open.train.sft import SFTSettings, train_sft


class Config(StageConfig):
    kind: Literal["sft"]
    model: str
    """``@stage``, a local model directory, or a Hugging Face model id."""
    data: str
    """A recipe ``data`` entry whose records have reference outputs, or ``@stage`` records (a ``distill`` stage)."""
    template: TemplateName = "alpaca"
    train: SFTSettings = SFTSettings()

    def data_names(self) -> list[str]:
        return recipe_data(self.data)


def run(ctx: StageContext, cfg: Config) -> StageResult:
    records = [r for r in ctx.instructions(cfg.data) if r.get("output")]
    model = ctx.resolve(cfg.model)
    prompt = prompt_builder(cfg.template, model)
    examples = [{"prompt": prompt(r), "response": r["output"]} for r in records]
    settings = cfg.train.model_copy(update={"seed": ctx.seed})
    result = train_sft(model, examples, settings, ctx.output)
    # No logged step (fewer steps than logging_steps) means no loss to report, not a NaN loss.
    last = f", final loss {result['history'][-1]['loss']:.3f}" if result["history"] else ""
    resumed = f", resumed from step {result['resumed_from_step']}" if result["resumed_from_step"] else ""
    return StageResult(summary=f"{len(examples)} examples{last}{resumed}",
                       counts={"examples": len(examples), "resumed_from_step": result["resumed_from_step"]},
                       history=result["history"])


# Training: every process of an `accelerate launch` takes part.
STAGE = Stage(kind="sft", config=Config, output="model", run=run, all_processes=True)
