"""The objectives benchmarks share their parents' stage cache: every stage both recipes name has one fingerprint,
so a run dir that holds a quickstart (or real_cpu_tuna_c) run serves the benchmark's upstream stages from cache,
and each variant differs from its control in one setting."""

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


@pytest.mark.parametrize("recipe,parent,shared_at_least", [
    ("objectives_regime.yaml", "objectives.yaml", {"student_init", "sft"}),
    ("real_cpu_listnet.yaml", "real_cpu_tuna_c.yaml", {"sft", "sft_samples", "tuna_c_rankings", "tuna_c_mle_only"})])
def test_benchmark_variants_share_their_parents_stages(recipe, parent, shared_at_least):
    theirs = stage_fingerprints(RECIPES / parent, 3)
    ours = stage_fingerprints(RECIPES / recipe, 3)
    shared = [name for name in ours if name in theirs and name != "eval"]
    assert shared_at_least <= set(shared)
    assert {name: ours[name] for name in shared} == {name: theirs[name] for name in shared}


@pytest.mark.parametrize("recipe,control", [("objectives_regime.yaml", "regime_mle_only"),
                                            ("real_cpu_listnet.yaml", "tuna_c_mle_only")])
def test_each_variant_is_its_control_with_the_ranking_term_on(recipe, control):
    """The control is the variants' settings at rank_weight 0; a variant changes only the objective settings."""
    loaded = load_recipe(RECIPES / recipe, STAGES)
    base = loaded.stage(control).model_dump()
    objective_keys = {"objective", "margin_scale", "rank_weight"}
    variants = [s for s in loaded.stages if s.kind == "train_tuna" and s.name != control]
    assert variants and base["train"]["rank_weight"] == 0.0
    for stage in variants:
        dump = stage.model_dump()
        assert {k: v for k, v in dump.items() if k not in ("name", "train")} == \
            {k: v for k, v in base.items() if k not in ("name", "train")}
        assert {k: v for k, v in dump["train"].items() if k not in objective_keys} == \
            {k: v for k, v in base["train"].items() if k not in objective_keys}
        assert stage.name in loaded.stage("eval").models
