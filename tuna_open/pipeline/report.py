"""The run's report: ``report.json`` for machines, ``report.md`` with tables and plots for people.

``report.json`` = ``{"recipe", "models": {name: {metric: number}}, "stages": [{"name", "status", "seconds"}],
"rankers": {stage: stats}, "viewers": {stage: its rankings.html}, "baseline", "primary_metric"}``. Plots (training
curves, the primary metric per model) go to ``plots/`` and are linked from the markdown, as are the viewers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tuna_open.data.jsonl import atomic_write_text
from tuna_open.data.manifest import read_manifest
from tuna_open.errors import UserError
from tuna_open.pipeline.outputs import RUN_MARKER, is_run_dir
from tuna_open.recipe import Recipe
from tuna_open.recipe.schema import first_error
from tuna_open.stages.context import StageResult
from tuna_open.stages.registry import STAGES


def collect_models(results: dict[str, StageResult]) -> dict[str, dict[str, float]]:
    models: dict[str, dict[str, float]] = {}
    for result in results.values():
        for model, metrics in result.metrics.items():
            models.setdefault(model, {}).update(metrics)
    return models


def write_report(recipe: Recipe, run_dir: Path, entries: list[dict[str, Any]],
                 results: dict[str, StageResult]) -> dict[str, Any]:
    models = collect_models(results)
    rankers = {name: r.extra["ranker"] for name, r in results.items() if "ranker" in r.extra}
    report = {
        "recipe": recipe.name,
        "baseline": recipe.report.baseline,
        "primary_metric": recipe.report.primary_metric,
        "models": models,
        "stages": entries,
        "rankers": rankers,
        "viewers": {name: r.extra["viewer"] for name, r in results.items() if "viewer" in r.extra},
    }
    plots = _plots(run_dir / "plots", results, models, recipe.report.primary_metric)
    for result in results.values():  # plots a stage drew itself (e.g. Vicuna QA win/tie/loss)
        for src in map(Path, result.extra.get("plots", [])):
            if src.exists():
                shutil.copyfile(src, run_dir / "plots" / src.name)
                plots.append(src.name)
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2))
    atomic_write_text(run_dir / "report.md", render_markdown(report, plots))
    return report


def metric_names(models: dict[str, dict[str, float]]) -> list[str]:
    names: list[str] = []
    for metrics in models.values():
        names.extend(m for m in metrics if m not in names)
    return names


def render_markdown(report: dict[str, Any], plots: list[str]) -> str:
    models = report["models"]
    lines = [f"# tuna-open report: {report['recipe']}", ""]
    if models:
        metrics = metric_names(models)
        base = models.get(report["baseline"], {})
        lines += ["## Models", "", "| model | " + " | ".join(metrics) + " |",
                  "|---|" + "---:|" * len(metrics)]
        for name, values in models.items():
            cells = []
            for m in metrics:
                v = values.get(m)
                cell = "" if v is None else f"{v:.3f}"
                if v is not None and name != report["baseline"] and m in base:
                    cell += f" ({v - base[m]:+.3f})"
                cells.append(cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", f"Differences in parentheses are against `{report['baseline']}`.", ""]
    lines += ["## Stages", "", "| stage | kind | status | seconds |", "|---|---|---|---:|"]
    lines += [f"| {e['name']} | {e['kind']} | {e['status']} | {e['seconds']:.1f} |" for e in report["stages"]]
    if report["rankers"]:
        lines += ["", "## Rankers", ""]
        for stage, stats in report["rankers"].items():
            lines.append(f"- `{stage}`: " + ", ".join(f"{k}={v}" for k, v in stats.items()))
    if report.get("viewers"):
        lines += ["", "## Rankings viewer", ""]
        lines += [f"- [`{stage}`]({path}): every prompt's candidates in ranked order, judge output, failures and "
                  "permutation agreement" for stage, path in report["viewers"].items()]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}](plots/{p})" for p in plots]
    return "\n".join(lines) + "\n"


def _plots(out_dir: Path, results: dict[str, StageResult], models: dict[str, dict[str, float]],
           primary: str) -> list[str]:
    """Training curves and the primary metric per model, as PNGs (matplotlib's Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    curves = {name: r.history for name, r in results.items() if r.history and any("loss" in h for h in r.history)}
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, history in curves.items():
            pts = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
            if pts:
                ax.plot(*zip(*pts), label=name)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_yscale("symlog", linthresh=1e-2)  # PPO and DPO losses can be negative
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "training_loss.png", dpi=100)
        plt.close(fig)
        written.append("training_loss.png")
    scored = {m: v[primary] for m, v in models.items() if primary in v}
    if scored:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.bar(list(scored), list(scored.values()), color="tab:blue")
        ax.set_ylabel(primary)
        ax.set_title(f"held-out {primary} per model")
        for i, v in enumerate(scored.values()):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / f"{primary}.png", dpi=100)
        plt.close(fig)
        written.append(f"{primary}.png")
    return written


def report_from_run_dir(run_dir: Path) -> dict[str, Any]:
    """Re-render the report from the stage manifests of a finished (or partly finished) run."""
    recipe_file = run_dir / "recipe.json"
    if not recipe_file.is_file():
        raise UserError(f"{run_dir}: not a tuna-open run directory (no recipe.json)")
    if not is_run_dir(run_dir):  # a user's folder with a recipe.json: its report.md is theirs
        raise UserError(f"{run_dir}: not a tuna-open run directory (no {RUN_MARKER}); the report is not written")
    try:
        recipe = Recipe.model_validate_json(recipe_file.read_text(encoding="utf-8"), context={"stages": STAGES})
    except ValidationError as err:
        raise UserError(f"{recipe_file}: not a valid run recipe ({first_error(err)})") from None
    entries: list[dict[str, Any]] = []
    results: dict[str, StageResult] = {}
    for stage in recipe.stages:
        manifest = read_manifest(run_dir / "stages" / stage.name)
        if manifest is None:
            entries.append({"name": stage.name, "kind": stage.kind, "status": "missing", "seconds": 0.0})
            continue
        results[stage.name] = StageResult(**manifest["result"])
        entries.append({"name": stage.name, "kind": stage.kind, "status": "done", "seconds": manifest["seconds"]})
    return write_report(recipe, run_dir, entries, results)
