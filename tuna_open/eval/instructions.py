"""Held-out instruction evaluation: verifier accuracy plus the official-style ROUGE-L / exact match.

The verifier is any ``module:attr`` callable ``(response, reference) -> float`` in [0, 1] where 1 means fully
correct (the builtin suite's ``tuna_open.builtin.tasks:score``, or ``contains_answer`` below for chatty models);
accuracy is the share of responses it scores 1.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Callable, Sequence

from tuna_open.eval.superni import compute_metrics

Verifier = Callable[[str, str], float]


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def contains_answer(response: str, reference: str) -> float:
    """1.0 when the reference's words appear, in order and as whole words, in the response (case and punctuation
    ignored), else 0.0: a verifier for short factual answers that real chat models wrap in a sentence
    ("The capital of France is Paris.")."""
    ref = _words(reference)
    return float(bool(ref) and f" {ref} " in f" {_words(response)} ")


def evaluate_instructions(records: Sequence[dict[str, Any]], predictions: Sequence[str],
                          verifier: Verifier | None) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Overall metrics (0–100) and per-task accuracy for predictions on records with reference ``output``."""
    refs = [[r["output"]] for r in records]
    metrics = {k: float(v) for k, v in compute_metrics(list(predictions), refs).items()}
    per_task: dict[str, dict[str, float]] = {}
    if verifier is not None:
        scores = [verifier(p, r["output"]) for p, r in zip(predictions, records)]
        metrics["accuracy"] = 100.0 * sum(s >= 1.0 for s in scores) / len(scores)
        metrics["verifier_score"] = 100.0 * sum(scores) / len(scores)
        by_task: dict[str, list[float]] = defaultdict(list)
        for s, r in zip(scores, records):
            by_task[r.get("task", "all")].append(s)
        per_task = {t: {"accuracy": 100.0 * sum(x >= 1.0 for x in v) / len(v), "n": float(len(v))}
                    for t, v in sorted(by_task.items())}
    return metrics, per_task
