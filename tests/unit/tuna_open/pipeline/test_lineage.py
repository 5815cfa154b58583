"""The recipe's design as the report reads it: controls, families and which stage each evaluated model is."""

from __future__ import annotations

from pathlib import Path

import yaml
from helpers.paths import ROOT

from tuna_open.pipeline import lineage
from tuna_open.pipeline.lineage import Control
from tuna_open.recipe import load_recipe
from tuna_open.stages.registry import STAGES

QUICKSTART = ROOT / "recipes/quickstart.yaml"


def quickstart(tmp_path: Path, edit: dict[str, dict] | None = None):
    """The quickstart recipe, with ``edit`` merged into the named stages' ``train`` blocks."""
    data = yaml.safe_load(QUICKSTART.read_text())
    for stage in data["stages"]:
        stage.get("train", {}).update((edit or {}).get(stage["name"], {}))
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_recipe(path, STAGES)


def test_quickstart_controls_are_found_from_the_configs(tmp_path: Path) -> None:
    # tuna_c: the MLE-only twin and SFT continued at tuna_c's learning rate and batch size; tuna_p only its MLE-only
    # twin (sft_more runs at a fifth of its learning rate); tuna starts from tuna_p, where no control starts.
    assert lineage.controls(quickstart(tmp_path)) == {
        "tuna_p": [Control("tuna_p_mle_only", "mle_only")],
        "tuna_c": [Control("sft_more", "sft_continued"), Control("tuna_c_mle_only", "mle_only")]}


def test_a_control_must_hold_the_settings_it_controls_for(tmp_path: Path) -> None:
    recipe = quickstart(tmp_path, {"sft_more": {"learning_rate": 1.0e-3}, "tuna_p_mle_only": {"rank_weight": 0.5}})
    assert lineage.controls(recipe) == {"tuna_c": [Control("tuna_c_mle_only", "mle_only")]}
    # A control that differs in its ranking weight is a Tuna stage, not SFT.
    assert lineage.families(recipe)["tuna_p_mle_only"] == "Tuna"


def test_families_come_from_kinds_and_roles(tmp_path: Path) -> None:
    recipe = quickstart(tmp_path)
    evaluated = list(recipe.stage("eval").models) + ["smollm2"]
    assert lineage.model_families(recipe, evaluated) == {
        "teacher": "teacher",  # an sft stage by kind, but the judge of tuna_p_rankings
        "sft": "SFT and controls", "sft_more": "SFT and controls", "tuna_c_mle_only": "SFT and controls",
        "tuna_p_mle_only": "SFT and controls", "tuna_p": "Tuna", "tuna_c": "Tuna", "tuna": "Tuna",
        "dpo": "baselines", "ppo": "baselines", "smollm2": "other"}


def test_evaluated_names_map_to_the_stages_that_trained_them() -> None:
    recipe = load_recipe(ROOT / "recipes/paper_gpt4.yaml", STAGES)
    assert lineage.model_stages(recipe)["alpaca"] == "sft"
