"""Stage ``train_tuna``: learn a ranking with the paper's objective (margin ranking + λ·MLE).

The same stage trains Tuna_p (teacher-likelihood rankings, lr 1e-5 in the paper), Tuna_c (judge rankings,
lr 1e-6) and sequential Tuna (Tuna_c's data, starting from the Tuna_p model): which one is only a matter of
the ``model`` and ``rankings`` it is given.
"""

from __future__ import annotations

from typing import Any, Literal

from tuna_open.errors import UserError
from rankers.templates import TemplateName
from tuna_open.pipeline.context import StageContext, StageResult
from tuna_open.prompts import format_prompt
from tuna_open.stages.ranked import RankedInputs
from tuna_open.train.preferences import join_rankings
from tuna_open.train.tuna_trainer import TunaTrainConfig, train_tuna

OUTPUT = "model"


class Config(RankedInputs):
    kind: Literal["train_tuna"]
    sft_data: str | None = None
    """Optional recipe data mixed in as MLE-only examples (the paper regularises with the SFT data)."""
    template: TemplateName = "alpaca"
    train: TunaTrainConfig = TunaTrainConfig()

    def data_names(self) -> list[str]:
        return [self.sft_data] if self.sft_data else []


def ranked_examples(candidates: list[dict[str, Any]], rankings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join rankings with their candidates (``join_rankings``: each id exactly once) into
    ``{"prompt", "candidates" best→worst}``.

    Failed rankings are skipped: training on an invented order would teach noise.
    """
    return [{"prompt": rec["prompt"], "candidates": [rec["candidates"][i] for i in r["order"]]}
            for rec, r in join_rankings(candidates, rankings)]


def run(ctx: StageContext, cfg: Config) -> StageResult:
    examples = ranked_examples(*cfg.load(ctx))
    if not examples:
        raise UserError(f"stage {cfg.name}: no usable rankings in {cfg.rankings}")
    sft = None
    if cfg.sft_data:
        sft = [{"prompt": format_prompt(r["instruction"], r["input"], cfg.template), "response": r["output"]}
               for r in ctx.instructions(cfg.sft_data) if r.get("output")]
    settings = cfg.train.model_copy(update={"seed": ctx.seed})
    result = train_tuna(ctx.resolve(cfg.model), examples, settings, str(ctx.output), sft_examples=sft)
    hist = result["history"]
    last = f", final loss {hist[-1]['loss']:.3f}" if hist else ""
    return StageResult(summary=f"{len(examples)} ranked prompts{last}", counts={"examples": len(examples)},
                       history=hist)
