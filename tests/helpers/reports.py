"""A report's inputs without training anything: the quickstart recipe with stage results shaped like a real run's."""

from __future__ import annotations

from pathlib import Path

from helpers.paths import ROOT
from tuna_open.pipeline.report import write_report
from tuna_open.recipe import Recipe, load_recipe
from tuna_open.stages.context import StageResult
from tuna_open.stages.registry import STAGES

XSS = "<img src=x onerror=\"document.title='pwned'\">"
ACCURACY = {"teacher": 61.875, "sft": 20.75, "sft_more": 20.625, "tuna_p": 26.375, "tuna_c": 21.625,
            "tuna_c_mle_only": 23.125, "tuna_p_mle_only": 36.75, "tuna": 30.125, "dpo": 21.75, "ppo": 20.75, XSS: 5.0}
"""Held-out accuracy of quickstart seed 0 (and a model whose name is markup, which every page must escape)."""


def _history(*keys: str, steps: int = 6) -> list[dict[str, float]]:
    return [{"step": float(10 * s), "learning_rate": 1e-3, **{k: 1.0 / (s + i + 1) for i, k in enumerate(keys)}}
            for s in range(1, steps + 1)]


def quickstart_results() -> tuple[Recipe, dict[str, StageResult]]:
    """Every quickstart stage's result: metrics for the eval stage, histories for the trainers (with the per-step
    ranking diagnostics ``logps/rank_<i>``), counts and ranker stats for the rank stages (one with permutations,
    tokens and cost, as an API judge under ``permutations: k`` reports them)."""
    recipe = load_recipe(ROOT / "recipes/quickstart.yaml", STAGES)
    results: dict[str, StageResult] = {}
    for stage in recipe.stages:
        results[stage.name] = StageResult(summary=stage.name)
        if stage.kind == "sft":
            results[stage.name].history = _history("loss")
        elif stage.kind == "train_tuna":
            results[stage.name].history = _history("loss", "rank_loss", "mle_loss", "logps/rank_0", "logps/rank_1")
        elif stage.kind in ("train_dpo", "train_reward"):
            results[stage.name].history = _history("loss", "reward_margin")
        elif stage.kind == "train_ppo":
            results[stage.name].history = _history("loss", "reward", "kl")
        elif stage.kind == "rank":
            results[stage.name] = StageResult(
                summary="ranked", counts={"rankings": 2400, "failed": 3, "retried": 1, "scored_pairs": 14400,
                                          "tied_pairs": 10489},
                extra={"ranker": {"requests": 2400, "failed": 3, "cache_hits": 76},
                       "viewer": f"stages/{stage.name}/rankings.html"})
    results["tuna_c_rankings"].extra["ranker"].update(
        {"prompt_tokens": 1000, "completion_tokens": 500, "cost_usd": 0.25, "self_consistency_mean": 0.8125})
    results["eval"].metrics = {m: {"accuracy": a, "rougeL": a + 15.0} for m, a in ACCURACY.items()}
    return recipe, results


def entries(recipe: Recipe) -> list[dict]:
    return [{"name": s.name, "kind": s.kind, "status": "cached", "seconds": 2.5} for s in recipe.stages]


def write_quickstart_report(run_dir: Path) -> dict:
    recipe, results = quickstart_results()
    run_dir.mkdir(parents=True, exist_ok=True)
    return write_report(recipe, run_dir, entries(recipe), results)
