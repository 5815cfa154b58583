"""recipes/objectives.yaml shares the quickstart's stage cache: every stage both recipes name has one fingerprint,
so a run dir that holds a quickstart run serves the objectives benchmark's upstream stages from cache."""

from __future__ import annotations

import pytest
from helpers.fingerprints import stage_fingerprints
from helpers.paths import ROOT

from tuna_open.recipe import load_recipe
from tuna_open.stages.registry import STAGES

RECIPES = ROOT / "recipes"


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
