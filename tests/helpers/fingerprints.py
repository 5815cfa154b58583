"""Stage fingerprints of a recipe file, computed as the runner computes them (for tests of cache validity)."""

from __future__ import annotations

from pathlib import Path

from tuna_open.pipeline.fingerprint import fingerprint
from tuna_open.pipeline.runner import _data_files
from tuna_open.recipe import iter_refs, load_recipe
from tuna_open.stages.registry import STAGES


def stage_fingerprints(path: Path, seed: int, overrides: list[str] | None = None) -> dict[str, str]:
    """Each stage's fingerprint, computed as the runner does (``overrides``: ``--set`` items)."""
    recipe = load_recipe(path, STAGES, [f"seed={seed}", *(overrides or [])])
    out: dict[str, str] = {}
    for stage in recipe.stages:
        effective = stage.effective(recipe)
        data = {n: recipe.data[n].model_dump() for n in stage.data_names()}
        out[stage.name] = fingerprint({**effective, "_data": data}, {r: out[r] for r in iter_refs(effective)},
                                      _data_files(recipe, stage.data_names()),
                                      stage.seed if stage.seed is not None else recipe.seed)
    return out
