"""The runner: stage order, fingerprints, caching, resume, manifests and the final report.

A stage is skipped (``cached``) when its manifest's fingerprint matches. A stage that was interrupted keeps
its partial records (``*.partial``) as long as its fingerprint is unchanged, so the next run resumes at the
record level; a changed fingerprint or ``--from-stage`` starts it afresh. The manifest is written last and
atomically: its presence means the stage finished.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console

from tuna_open import distributed
from tuna_open.data.jsonl import atomic_write_text
from tuna_open.data.manifest import read_manifest, write_manifest
from tuna_open.errors import UserError
from tuna_open.pipeline import integrity
from tuna_open.pipeline.fingerprint import fingerprint, without_secrets
from tuna_open.pipeline.report import write_report
from tuna_open.recipe import Recipe, iter_refs
from tuna_open.stages.context import StageContext, StageResult
from tuna_open.stages.registry import STAGES

OUTPUT_NAMES = {"model": "model", "records": "records.jsonl", "metrics": "metrics.json"}
MARKER = ".fingerprint"


def _data_files(recipe: Recipe, names: list[str]) -> list[Path]:
    files = []
    for name in names:
        src = recipe.data[name].source
        if not (src.startswith("builtin:") or src.startswith("hf:")):
            files.append(recipe.resolve_path(src))
    return files


@integrity.locked_run_dir
def run_recipe(recipe: Recipe, run_dir: Path, *, from_stage: str | None = None, dry_run: bool = False,
               console: Console | None = None) -> dict[str, Any]:
    """Run (or, with ``dry_run``, plan) every stage; returns the report dict (also written to run_dir).

    Under ``accelerate launch`` / torchrun every process runs this: training stages (``Stage.all_processes``) run on
    all of them, everything else (sampling, judging, evaluation, the cache checks and every file the runner
    writes) on the main process while the others wait (``tuna_open.distributed``), so nothing is paid twice.
    """
    distributed.init()
    console = console if distributed.is_main() else Console(quiet=True)
    console = console or Console()
    if from_stage is not None:
        recipe.stage(from_stage)  # raises a UserError naming the stages when unknown
    fps: dict[str, str] = {}
    legacy_fps: dict[str, str] = {}  # fingerprints as earlier versions computed them (see pipeline.fingerprint)
    outputs: dict[str, Path] = {}
    entries: list[dict[str, Any]] = []
    results: dict[str, StageResult] = {}
    forced = False
    ledger = integrity.Ledger(console)
    if not dry_run:
        distributed.on_main(lambda: atomic_write_text(run_dir / "recipe.json", json.dumps(
            redact(recipe.model_dump(mode="json", serialize_as_any=True)), indent=2)))
    for stage in recipe.stages:
        forced = forced or stage.name == from_stage
        spec = STAGES[stage.kind]
        effective = stage.effective(recipe)
        seed = stage.seed if stage.seed is not None else recipe.seed
        data = {n: recipe.data[n].model_dump() for n in stage.data_names()}
        files = _data_files(recipe, stage.data_names())
        fp = fingerprint({**effective, "_data": data}, {r: fps[r] for r in iter_refs(effective)}, files, seed)
        legacy_fps[stage.name] = fingerprint({**effective, "_data": data},
                                             {r: legacy_fps[r] for r in iter_refs(effective)}, files, seed, legacy=True)
        known = {fp, legacy_fps[stage.name]}
        stage_dir = run_dir / "stages" / stage.name
        output = stage_dir / OUTPUT_NAMES[spec.output]
        manifest = distributed.on_main(lambda: read_manifest(stage_dir) if output.exists() else None)
        fps[stage.name], outputs[stage.name] = fp, output
        if (not forced and manifest and manifest["fingerprint"] in known
                and distributed.on_main(lambda: ledger.reusable(stage.name, output, manifest, iter_refs(effective)))):
            results[stage.name] = StageResult(**manifest["result"])
            # The seconds the cached output took when it was computed: a cached re-run's report keeps the cost.
            entries.append({"name": stage.name, "kind": stage.kind, "status": "cached", "seconds": manifest["seconds"]})
            console.print(f"[dim]⏭  {stage.name:<18} cached   {manifest['result']['summary']}[/dim]")
            continue
        if dry_run:
            entries.append({"name": stage.name, "kind": stage.kind, "status": "would run", "seconds": 0.0})
            console.print(f"▶  {stage.name:<18} would run ({stage.kind})")
            continue
        missing = recipe.missing_inputs(stage)
        if missing:
            raise UserError("; ".join(missing))
        distributed.on_main(lambda: _prepare_stage_dir(stage_dir, fp, known, fresh=forced))
        distributed.on_main(lambda: integrity.clear_unfinished(stage_dir, output))
        ctx = StageContext(recipe=recipe, run_dir=run_dir, stage_dir=stage_dir, output=output, seed=seed,
                           outputs={k: v for k, v in outputs.items() if k != stage.name}, console=console)
        console.print(f"▶  {stage.name:<18} running  ({stage.kind})")
        start = time.perf_counter()
        if spec.all_processes:
            result = spec.run(ctx, stage)
        else:
            result = distributed.on_main(lambda: spec.run(ctx, stage))
        seconds = round(time.perf_counter() - start, 2)
        manifest = {"name": stage.name, "kind": stage.kind, "fingerprint": fp, "seed": seed,
                    "config": redact(effective), "inputs": {r: fps[r] for r in iter_refs(effective)},
                    "seconds": seconds, "result": asdict(result)}
        result = StageResult(**distributed.on_main(lambda: _finish_stage(stage_dir, output, {
            **manifest, **ledger.record(stage.name, output, iter_refs(effective))}))["result"])
        results[stage.name] = result
        entries.append({"name": stage.name, "kind": stage.kind, "status": "done", "seconds": seconds})
        console.print(f"✔  {stage.name:<18} {seconds:7.1f}s  {result.summary}")
    if dry_run:
        return {"recipe": recipe.name, "models": {}, "stages": entries}
    return distributed.on_main(lambda: write_report(recipe, run_dir, entries, results))


def _finish_stage(stage_dir: Path, output: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Check the stage wrote its artifact and write its manifest: from now on the stage counts as finished."""
    if not output.exists():
        raise RuntimeError(f"stage {manifest['name']} finished without writing {output}")
    write_manifest(stage_dir, manifest)
    (stage_dir / MARKER).unlink(missing_ok=True)
    return manifest


def redact(value: Any) -> Any:
    """Mask literal secrets (``api_key``, a URL's ``user:password@``) in anything written to the run directory."""
    return without_secrets(value, replacement="***")


def _prepare_stage_dir(stage_dir: Path, fp: str, known: set[str], fresh: bool) -> None:
    """Keep an interrupted run's partial records only when they were made under the same fingerprint (``known``:
    ``fp`` or its legacy form); the marker then says ``fp``."""
    marker = stage_dir / MARKER
    stale = fresh or (stage_dir / "manifest.json").exists() or (
        stage_dir.exists() and (not marker.exists() or marker.read_text() not in known))
    if stale and stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(fp)


def default_run_dir(recipe: Recipe) -> Path:
    return Path("runs") / recipe.name
