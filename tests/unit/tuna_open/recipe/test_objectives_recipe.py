"""recipes/objectives.yaml shares the quickstart's stage cache: every stage both recipes name has one fingerprint,
so a run dir that holds a quickstart run serves the objectives benchmark's upstream stages from cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.paths import ROOT

from tuna_open.pipeline.fingerprint import fingerprint
from tuna_open.pipeline.runner import _data_files
from tuna_open.recipe import iter_refs, load_recipe
from tuna_open.stages.registry import STAGES

RECIPES = ROOT / "recipes"


def stage_fingerprints(path: Path, seed: int) -> dict[str, str]:
    """Each stage's fingerprint, computed as the runner does."""
    recipe = load_recipe(path, STAGES, [f"seed={seed}"])
    out: dict[str, str] = {}
    for stage in recipe.stages:
        effective = stage.effective(recipe)
        data = {n: recipe.data[n].model_dump() for n in stage.data_names()}
        out[stage.name] = fingerprint({**effective, "_data": data}, {r: out[r] for r in iter_refs(effective)},
                                      _data_files(recipe, stage.data_names()),
                                      stage.seed if stage.seed is not None else recipe.seed)
    return out


@pytest.mark.parametrize("seed", [0, 7])
def test_shared_stages_have_the_quickstarts_fingerprints(seed):
    quickstart = stage_fingerprints(RECIPES / "quickstart.yaml", seed)
    objectives = stage_fingerprints(RECIPES / "objectives.yaml", seed)
    shared = [name for name in objectives if name in quickstart and name != "eval"]
    assert {"sft", "teacher", "tuna_p_rankings", "tuna_c_rankings", "tuna_p", "tuna_c", "tuna_p_mle_only",
            "tuna_c_mle_only"} <= set(shared)
    assert {name: objectives[name] for name in shared} == {name: quickstart[name] for name in shared}


def test_every_objective_is_trained_for_both_stages_and_evaluated():
    recipe = load_recipe(RECIPES / "objectives.yaml", STAGES)
    evaluated = recipe.stage("eval").models
    for stage in ("tuna_p", "tuna_c"):
        for objective in ("margin_score", "listnet", "plackett_luce", "lipo", "dpo_pl", "rrhf"):
            assert f"{stage}_{objective}" in evaluated
        assert f"{stage}_mle_only" in evaluated
