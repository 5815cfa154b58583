"""The run's report: ``report.json`` for machines, ``report.md`` and ``report.html`` for people, ``plots/``.

``report.json`` = ``{"recipe", "baseline", "primary_metric", "models": {name: {metric: number}}, "families": {name:
family}, "gains": [{"model", "against", "isolates", "diff": {metric: number}}], "stages": [{"name", "kind", "status",
"seconds"}], "seconds": {"now", "computed"}, "rankers": {stage: its counts and ranker stats}, "viewers": {stage:
rankings.html}}``.
A stage's ``seconds`` is what computing its output took, also when this run found it ``cached``: a re-run's report
still says what the run costs. ``gains`` are the recipe's controls (``tuna_open.pipeline.lineage``) subtracted
from each stage they control, and the baseline too: where a gain comes from.
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
from tuna_open.pipeline import lineage, plots
from tuna_open.pipeline.outputs import RUN_MARKER, is_run_dir
from tuna_open.pipeline.report_html import render_html
from tuna_open.pipeline.tables import ranker_stats, tables
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


def gains(recipe: Recipe, models: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Each evaluated stage with controls, minus each evaluated control and minus the baseline, on every metric."""
    by_stage: dict[str, str] = {}
    for model, stage in lineage.model_stages(recipe).items():
        if model in models:
            by_stage.setdefault(stage, model)
    baseline = recipe.report.baseline
    out: list[dict[str, Any]] = []
    for stage, found in lineage.controls(recipe).items():
        model = by_stage.get(stage)
        if model is None:
            continue
        against = [(by_stage[c.stage], c.isolates) for c in found if c.stage in by_stage]
        if baseline in models and baseline != model:
            against.append((baseline, "everything (the baseline)"))
        for other, isolates in against:
            out.append({"model": model, "against": other, "isolates": isolates,
                        "diff": {m: v - models[other][m] for m, v in models[model].items() if m in models[other]}})
    return out


def write_report(recipe: Recipe, run_dir: Path, entries: list[dict[str, Any]],
                 results: dict[str, StageResult]) -> dict[str, Any]:
    models = collect_models(results)
    primary = recipe.report.primary_metric
    report = {
        "recipe": recipe.name,
        "baseline": recipe.report.baseline,
        "primary_metric": primary,
        "models": models,
        "families": lineage.model_families(recipe, list(models)),
        "gains": gains(recipe, models),
        "stages": entries,
        "seconds": {"now": round(sum(e["seconds"] for e in entries if e["status"] == "done"), 2),
                    "computed": round(sum(e["seconds"] for e in entries), 2)},
        "rankers": ranker_stats(results),
        "viewers": {name: r.extra["viewer"] for name, r in results.items() if "viewer" in r.extra},
    }
    histories = {name: r.history for name, r in results.items() if r.history}
    scores = {m: v[primary] for m, v in models.items() if primary in v}
    kinds = {s.name: s.kind for s in recipe.stages}
    figures = plots.draw(run_dir / "plots", histories, kinds, scores, report["families"], primary,
                         recipe.report.baseline)
    for result in results.values():  # plots a stage drew itself (e.g. Vicuna QA win/tie/loss)
        for src in map(Path, result.extra.get("plots", [])):
            if src.exists():
                shutil.copyfile(src, run_dir / "plots" / src.name)
                figures.append(src.name)
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2))
    atomic_write_text(run_dir / "report.md", render_markdown(report, figures))
    atomic_write_text(run_dir / "report.html", render_html(report, figures))
    return report


def render_markdown(report: dict[str, Any], figures: list[str]) -> str:
    lines = [f"# tuna-open report: {report['recipe']}", ""]
    for t in tables(report):
        lines += [f"## {t.title}", "", "| " + " | ".join(t.headers) + " |",
                  "|" + "".join("---:|" if n else "---|" for n in t.numeric)]
        lines += ["| " + " | ".join(row) + " |" for row in t.rows]
        lines += ["", t.note, ""] if t.note else [""]
    if report.get("viewers"):
        lines += ["## Rankings viewer", ""]
        lines += [f"- [`{stage}`]({path}): every prompt's candidates in ranked order, judge output, failures and "
                  "permutation agreement" for stage, path in report["viewers"].items()]
        lines.append("")
    shown = [p for p in figures if not p.endswith(".svg")]
    if shown:
        lines += ["## Plots", ""] + [f"![{p}](plots/{p})" for p in shown]
    return "\n".join(lines).rstrip("\n") + "\n"


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
