"""Per-task accuracy and the LMentry score.

**The LMentry score** (``lmentry/analysis/lmentry_score.py``): ``accuracy * robustness / 100``, where accuracy
is the mean of the 25 core tasks' accuracies, and robustness (``analysis/robustness.py``) the mean of four
aspects, each ``100 - the largest accuracy gap`` within a group, averaged over groups: *argument order*
(accuracy when the answer is the first vs. the second argument; 7 tasks), *argument content* (the task
variants of ``ARGUMENT_CONTENT_GROUPS``), *template* (the 3 prompt templates of each core task) and *adjacent
tasks* (the 17 task pairs of ``ADJACENT_TASK_PAIRS``). A group that the evaluated data cannot fill (a task left
out, or a template with no examples, as in a cut-down copy) is skipped and reported under ``missing``; the
result is then marked incomplete, and its robustness is not comparable with the paper's.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Sequence

from tuna_open.eval.lmentry.tasks import (
    ADJACENT_TASK_PAIRS,
    ARGUMENT_CONTENT_GROUPS,
    ARGUMENT_ORDER_TASKS,
    CORE_TASKS,
    Example,
)


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _accuracy(flags: Sequence[bool]) -> float:
    return 100.0 * sum(flags) / len(flags)


def task_metrics(examples: Sequence[Example], correct: Sequence[bool]) -> dict[str, Any]:
    """Accuracy (0-100) overall, per template and, for two-argument tasks, per answer position."""
    by_template: dict[int, list[bool]] = defaultdict(list)
    by_index: dict[int, list[bool]] = defaultdict(list)
    for example, ok in zip(examples, correct):
        by_template[int(example.metadata["template_id"])].append(ok)
        if "answer_index" in example.metadata:
            by_index[int(example.metadata["answer_index"])].append(ok)
    return {"accuracy": _accuracy(correct), "n": len(correct),
            "per_template": {t: _accuracy(v) for t, v in sorted(by_template.items())},
            "per_answer_index": {i: _accuracy(v) for i, v in sorted(by_index.items())}}


def _robustness_of(accuracies: Sequence[float]) -> float:
    """LMentry's ``robustness_func``: 100 minus the largest gap between any two accuracies."""
    return 100.0 - (max(accuracies) - min(accuracies))


def lmentry_score(per_task: dict[str, dict[str, Any]], num_templates: int = 3) -> dict[str, Any]:
    """Accuracy, the four robustness aspects, robustness, and the LMentry score from per-task metrics."""
    missing: list[str] = []

    def aspect(name: str, groups: Iterable[tuple[str, list[float] | None]]) -> float | None:
        values = []
        for label, accs in groups:
            if accs is None:
                missing.append(f"{name}: {label}")
            else:
                values.append(_robustness_of(accs))
        return _mean(values)

    def task_accuracies(names: Sequence[str]) -> list[float] | None:
        return [per_task[n]["accuracy"] for n in names] if all(n in per_task for n in names) else None

    def positions(task: str) -> list[float] | None:
        by_index = per_task.get(task, {}).get("per_answer_index", {})
        return [by_index[0], by_index[1]] if 0 in by_index and 1 in by_index else None

    def templates(task: str) -> list[float] | None:
        by_template = per_task.get(task, {}).get("per_template", {})
        ids = range(num_templates)
        return [by_template[t] for t in ids] if all(t in by_template for t in ids) else None

    aspects = {
        "argument_order": aspect("argument_order", ((t, positions(t)) for t in ARGUMENT_ORDER_TASKS)),
        "argument_content": aspect("argument_content", ((task, task_accuracies([f"{task}_{v}" for v in variants]))
                                                        for task, variants in ARGUMENT_CONTENT_GROUPS.items())),
        "template": aspect("template", ((t, templates(t)) for t in CORE_TASKS)),
        "adjacent_tasks": aspect("adjacent_tasks", ((f"{a}/{b}", task_accuracies([a, b]))
                                                    for a, b in ADJACENT_TASK_PAIRS)),
    }
    missing.extend(f"accuracy: {t}" for t in CORE_TASKS if t not in per_task)
    accuracy = _mean(per_task[t]["accuracy"] for t in CORE_TASKS if t in per_task)
    robustness = _mean(v for v in aspects.values() if v is not None)
    score = accuracy * robustness / 100.0 if accuracy is not None and robustness is not None else None
    return {"accuracy": accuracy, "robustness": robustness, "lmentry_score": score, "robustness_aspects": aspects,
            "complete": not missing, "missing": missing}
