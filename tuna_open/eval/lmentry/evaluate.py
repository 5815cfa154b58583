"""The recipe's ``lmentry`` suite: every example's input, templated, is answered by the model, each answer is
scored by the official rules (``tuna_open.eval.lmentry.official``: regular expressions per task; a prediction is
right when it is the bare answer or matches one of the phrasings a person would use to give it, and a phrasing
found anywhere in a longer answer counts too, as an "uncertain" 1 counted like a certain one), and the scores are
summarised as the LMentry score (``tuna_open.eval.lmentry.score``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from rankers.llm.templates import TemplateName, format_prompt
from tuna_open.eval.lmentry.official import score_official
from tuna_open.eval.lmentry.score import lmentry_score, task_metrics
from tuna_open.eval.lmentry.tasks import Example, base_task, load_tasks
from tuna_open.eval.superni import GenerateFn, generate_all

RULES = "official"
"""The rule set a result names: results saved while this project also had its own ``strict`` rules told the two
apart by this field, so it stays in every result (and in ``LMentryConfig.rules``)."""


class LMentryConfig(BaseModel):
    """Where the LMentry task files are and which part of them to evaluate."""

    model_config = ConfigDict(extra="forbid")

    data_dir: str
    """The directory of task files (``<task>.json``), e.g. a checkout's ``data/``."""
    tasks: list[str] | None = None
    """Default: every LMentry task (core and analysis) with a file in ``data_dir``."""
    limit: int | None = Field(default=None, ge=1)
    """Examples per task, spread evenly over the task's templates (default: all)."""
    template: TemplateName = "alpaca"
    """How an example's input reaches the model: a ``rankers.llm.templates`` name (``raw`` passes it unchanged)."""
    rules: Literal["official"] = RULES
    """Deprecated, and ``official`` is the only value: this project's own ``strict`` rules were removed (the official
    scorers' port agrees with aviaefrat/lmentry on every score). Kept so that recipes that name it still load and
    every eval stage keeps its fingerprint (cached evaluations stay valid)."""


def score_prediction(task: str, example: Example, prediction: str) -> bool:
    """Whether ``prediction`` answers ``example`` of ``task`` correctly (a variant scores as its core task)."""
    return score_official(base_task(task), example.metadata, example.input, prediction)[0] == 1


def evaluate(generate_fn: GenerateFn, data_dir: str | Path, tasks: Sequence[str] | None = None,
             limit: int | None = None, template: str = "alpaca") -> dict[str, Any]:
    """Generate for every example of the chosen tasks, score each answer, and compute the LMentry score."""
    examples = load_tasks(data_dir, tasks, limit)
    flat = [example for task_examples in examples.values() for example in task_examples]
    predictions = generate_all(generate_fn, [format_prompt(example.input, "", template) for example in flat])
    correct = [score_prediction(e.task, e, p) for e, p in zip(flat, predictions)]
    per_task: dict[str, dict[str, Any]] = {}
    records: dict[str, list[dict[str, Any]]] = {}
    start = 0
    for task, task_examples in examples.items():
        end = start + len(task_examples)
        per_task[task] = task_metrics(task_examples, correct[start:end])
        records[task] = [{"id": e.id, "input": e.input, "prediction": p, "correct": ok}
                         for e, p, ok in zip(task_examples, predictions[start:end], correct[start:end])]
        start = end
    return {**lmentry_score(per_task), "rules": RULES, "per_task": per_task, "predictions": records}


def summarize(result: dict[str, Any]) -> dict[str, float]:
    """The flat numbers for a run report (a number that could not be computed is left out)."""
    flat = {"lmentry_accuracy": result["accuracy"], "lmentry_robustness": result["robustness"],
            "lmentry_score": result["lmentry_score"]}
    return {key: float(value) for key, value in flat.items() if value is not None}
