"""Shared by the stages that learn from rankings (Tuna, DPO, reward model) or call a ranker (rank, eval, GRPO).

The config classes hold data and what follows from it alone (``effective``, ``candidates_ref``, ``choice``); the
work of loading inputs and training is done by functions that take the config (``load_ranked``,
``train_on_pairs``), so a stage reads as one call into them.
"""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel

from rankers.llm.templates import TemplateName
from tuna_open.data.records import CANDIDATES_FIELDS
from tuna_open.errors import UserError
from tuna_open.recipe import RankerChoice, Recipe, StageConfig
from tuna_open.stages.context import StageContext, StageResult
from tuna_open.stages.prompts import prompt_builder
from tuna_open.train.preferences import PairMode, preference_pairs


class RankedInputs(StageConfig):
    model: str
    """The model to train (``@stage``, a local dir or an HF id)."""
    rankings: str
    """``@stage`` of a ``rank`` stage."""
    candidates: str | None = None
    """``@stage`` with the ranked candidates; defaults to the rank stage's ``input``."""
    template: TemplateName = "alpaca"
    """How the trained model sees each prompt: a candidates record's prompt is rendered again from its
    instruction (or conversation) with this template and the trained model's tokenizer, so candidates sampled
    in another format (a teacher's chat template, a chat API) still train the student in its own."""

    def effective(self, recipe: Recipe) -> dict[str, Any]:
        out = super().effective(recipe)
        out["candidates"] = self.candidates_ref(recipe)
        return out

    def candidates_ref(self, recipe: Recipe) -> str:
        """The ``@stage`` of the ranked candidates: ``candidates``, else the ``input`` of the rank stage."""
        if self.candidates is not None:
            return self.candidates
        producer = recipe.stage(self.rankings.lstrip("@"))
        if not hasattr(producer, "input"):
            raise UserError(f"stage {self.name}: rankings {self.rankings} is not a rank stage; set 'candidates'")
        return producer.input


def load_ranked(ctx: StageContext, cfg: RankedInputs, model: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(candidates records, ranking records) of ``cfg``'s inputs, prompts rendered for ``model``."""
    prompt = prompt_builder(cfg.template, model)
    candidates = [{**c, "prompt": prompt(c)} if "instruction" in c else c
                  for c in ctx.records(cfg.candidates_ref(ctx.recipe), CANDIDATES_FIELDS)]
    return candidates, ctx.records(cfg.rankings)


def train_on_pairs(ctx: StageContext, cfg: RankedInputs, mode: PairMode, train: Callable[..., dict[str, Any]],
                   settings: BaseModel) -> StageResult:
    """Rankings → preference pairs → ``train(model, pairs, settings, output)`` (the DPO and reward stages)."""
    model = ctx.resolve(cfg.model)
    pairs = preference_pairs(*load_ranked(ctx, cfg, model), mode=mode)
    if not pairs:
        raise UserError(f"stage {cfg.name}: no preference pairs in {cfg.rankings}")
    result = train(model, pairs, settings.model_copy(update={"seed": ctx.seed}), str(ctx.output))
    return StageResult(summary=f"{len(pairs)} preference pairs ({mode})",
                       counts={"pairs": len(pairs), "resumed_from_step": result["resumed_from_step"]},
                       history=result["history"])


class RankerStage(StageConfig):
    """A stage that calls a ranker: its own ``ranker`` block, or the recipe's top-level one."""

    ranker: RankerChoice | None = None
    """Defaults to the recipe's top-level ``ranker``."""

    def choice(self, recipe: Recipe) -> RankerChoice:
        choice = self.ranker or recipe.ranker
        if choice is None:
            raise UserError(f"stage {self.name}: no ranker "
                            "(set the stage's 'ranker' or the recipe's top-level 'ranker')")
        return choice

    def effective(self, recipe: Recipe) -> dict[str, Any]:
        # Only the selected backend's block determines the output; other blocks are inert options.
        choice = self.choice(recipe)
        return {**self.model_dump(exclude={"ranker"}),
                "ranker": {**choice.flat(), "max_failure_fraction": choice.max_failure_fraction}}
