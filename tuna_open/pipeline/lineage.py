"""What the report knows of a recipe's design: which stage each evaluated model is, its family, and its controls.

Everything here is read from the stage configs (kinds and ``@stage`` references), never from stage names, so the
"where the gain comes from" table and the plots' colours stay right for any recipe:

- a ``train_tuna`` stage's **controls** are (a) a ``train_tuna`` stage on the same ``rankings`` from the same
  starting model with ``train.rank_weight: 0`` (MLE-only: what the ranking term adds) and (b) an ``sft`` stage that
  continues the same starting model on the labels that model was fine-tuned on, with the same learning rate and
  batch size (equal-step SFT: what the ranked data adds over more of the same SFT);
- a **teacher** is a stage a ranker (a judge) or a ``distill`` stage reads its model from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tuna_open.recipe import REF, Recipe, StageConfig, iter_refs

Family = Literal["SFT and controls", "Tuna", "baselines", "teacher", "other"]
FAMILIES: tuple[Family, ...] = ("SFT and controls", "Tuna", "baselines", "teacher", "other")
BASELINE_KINDS = frozenset({"train_dpo", "train_ppo", "train_grpo", "train_reward"})
"""Other learners from the same feedback: the comparisons the paper draws."""
CONTROL_SETTINGS = ("learning_rate", "per_device_train_batch_size")
"""What an SFT control shares with the stage it controls, so that only the objective and the data differ."""


@dataclass(frozen=True)
class Control:
    stage: str
    kind: Literal["mle_only", "sft_continued"]

    @property
    def isolates(self) -> str:
        """What the difference to this control measures, for the report's readers."""
        if self.kind == "mle_only":
            return "the ranking term (same data, rank_weight 0)"
        return "the ranked data (SFT continued, same model and optimiser)"


def _ref(value: Any) -> str | None:
    """The stage an ``@stage`` string names, else None."""
    m = REF.match(value) if isinstance(value, str) else None
    return m.group(1) if m else None


def model_stages(recipe: Recipe) -> dict[str, str]:
    """Evaluated model name → the stage that trained it.

    An eval stage's ``models`` maps report names to ``@stage`` (``alpaca: "@sft"``); a model not named there is
    the stage of its name, if there is one.
    """
    out = {s.name: s.name for s in recipe.stages}
    for stage in recipe.stages:
        models = getattr(stage, "models", None)
        if isinstance(models, dict):
            out.update({name: ref for name, value in models.items() if (ref := _ref(value))})
    return out


def _train(stage: StageConfig) -> dict[str, Any]:
    train = getattr(stage, "train", None)
    return train.model_dump() if train is not None else {}


def teachers(recipe: Recipe) -> set[str]:
    """Stages whose model judges (a ranker's, e.g. ``teacher_logprob: {model: "@teacher"}``) or is distilled."""
    out: set[str] = set()
    for stage in recipe.stages:
        # The effective config holds the judge only where the stage uses one (eval: with Vicuna QA alone).
        out.update(iter_refs(stage.effective(recipe).get("ranker", {})))
        if stage.kind == "distill":
            out.update(filter(None, [_ref(getattr(stage, "model", None))]))
    return out


def controls(recipe: Recipe) -> dict[str, list[Control]]:
    """Every ``train_tuna`` stage that has controls in the recipe → its controls (see the module docstring)."""
    by_name = {s.name: s for s in recipe.stages}
    out: dict[str, list[Control]] = {}
    for x in recipe.stages:
        if x.kind != "train_tuna" or _train(x).get("rank_weight", 1.0) == 0:
            continue
        start = getattr(x, "model")
        start_data = getattr(by_name.get(_ref(start) or ""), "data", None)
        found: list[Control] = []
        for y in recipe.stages:
            if y is x or getattr(y, "model", None) != start:
                continue
            if (y.kind == "train_tuna" and getattr(y, "rankings") == getattr(x, "rankings")
                    and _train(y).get("rank_weight") == 0):
                found.append(Control(y.name, "mle_only"))
            elif (y.kind == "sft" and (start_data is None or getattr(y, "data") == start_data)
                  and all(_train(y).get(k) == _train(x).get(k) for k in CONTROL_SETTINGS)):
                found.append(Control(y.name, "sft_continued"))
        if found:
            out[x.name] = found
    return out


def families(recipe: Recipe) -> dict[str, Family]:
    """Stage name → family, from its kind and its role: teachers, then SFT and every control, Tuna, baselines."""
    judged = teachers(recipe)
    controlling = {c.stage for found in controls(recipe).values() for c in found}
    out: dict[str, Family] = {}
    for s in recipe.stages:
        if s.name in judged:
            out[s.name] = "teacher"
        elif s.kind == "sft" or s.name in controlling or (s.kind == "train_tuna" and _train(s).get("rank_weight") == 0):
            out[s.name] = "SFT and controls"
        elif s.kind == "train_tuna":
            out[s.name] = "Tuna"
        elif s.kind in BASELINE_KINDS:
            out[s.name] = "baselines"
        else:
            out[s.name] = "other"
    return out


def model_families(recipe: Recipe, models: list[str]) -> dict[str, Family]:
    """Evaluated model → family; a model no stage trained (an HF id evaluated as a reference) is ``other``."""
    stages, fams = model_stages(recipe), families(recipe)
    return {m: fams.get(stages.get(m, ""), "other") for m in models}
