"""Held-out instruction evaluation: verifier accuracy plus the official-style ROUGE-L / exact match.

The verifier is any ``module:attr`` callable ``(response, reference) -> float`` in [0, 1] where 1 means fully
correct (the builtin suite's ``tuna_open.builtin.tasks:score``); accuracy is the share of responses it scores 1.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Sequence

from tuna_open.eval.superni import compute_metrics

Verifier = Callable[[str, str], float]


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
