"""Recipe validation: every user mistake is one clear line naming the problem, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers.paths import ROOT

from tuna_open.cli import main
from tuna_open.errors import UserError
from tuna_open.recipe import apply_overrides, load_recipe
from tuna_open.stages.registry import STAGES

MINIMAL = {
    "name": "t",
    "data": {"train": {"source": "builtin:tasks", "split": "train", "limit": 8}},
    "stages": [
        {"name": "init", "kind": "init_model"},
        {"name": "sft", "kind": "sft", "model": "@init", "data": "train"},
    ],
}


def write(tmp_path: Path, data: object, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def validate(path: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", str(path), *extra])
    return result.exit_code, result.output


def test_minimal_recipe_validates(tmp_path: Path) -> None:
    code, out = validate(write(tmp_path, MINIMAL))
    assert code == 0, out
    assert "2 stages" in out


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(recipe: Path) -> None:
    code, out = validate(recipe, "--schema-only")  # pre-flight (keys, vllm) depends on the machine
    assert code == 0, out


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    code, out = validate(write(tmp_path, {**MINIMAL, "learning_rat": 1}))
    assert code == 2
    assert "unknown key 'learning_rat'" in out
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out


def test_unknown_stage_key_names_stage_and_key(tmp_path: Path) -> None:
    bad = yaml.safe_load(yaml.safe_dump(MINIMAL))
    bad["stages"][1]["train"] = {"lerning_rate": 1e-3}
    code, out = validate(write(tmp_path, bad))
    assert code == 2
    assert "stages[1] (sft)" in out and "lerning_rate" in out


def test_broken_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nstages: [\n  {name: a\n")
    code, out = validate(path)
    assert code == 2
    assert f"{path}:" in out and "invalid YAML" in out
    assert len(out.strip().splitlines()) == 1


def test_missing_recipe_and_missing_data_file(tmp_path: Path) -> None:
    code, out = validate(tmp_path / "nope.yaml")
    assert code == 2 and "recipe file not found" in out
    bad = {**MINIMAL, "data": {"train": {"source": "missing.jsonl"}}}
    code, out = validate(write(tmp_path, bad))
    assert code == 2 and "data.train.source: file not found: missing.jsonl" in out


def test_references_must_point_to_earlier_stages(tmp_path: Path) -> None:
    bad = yaml.safe_load(yaml.safe_dump(MINIMAL))
    bad["stages"] = [bad["stages"][1], bad["stages"][0]]
    code, out = validate(write(tmp_path, bad))
    assert code == 2 and "'@init' refers to a later stage" in out


def test_unknown_backend_and_stage_kind(tmp_path: Path) -> None:
    code, out = validate(write(tmp_path, {**MINIMAL, "ranker": {"backend": "gpt5"}}))
    assert code == 2 and "unknown ranker backend 'gpt5'" in out
    bad = yaml.safe_load(yaml.safe_dump(MINIMAL))
    bad["stages"].append({"name": "x", "kind": "train_magic"})
    code, out = validate(write(tmp_path, bad))
    assert code == 2 and "unknown stage kind 'train_magic'" in out


def test_set_overrides_address_stages_by_name(tmp_path: Path) -> None:
    data = apply_overrides(MINIMAL, ["stages.sft.train.num_epochs=1", "seed=7"])
    assert data["seed"] == 7 and data["stages"][1]["train"] == {"num_epochs": 1}
    with pytest.raises(UserError, match="no stage named 'nope'"):
        apply_overrides(MINIMAL, ["stages.nope.x=1"])
    recipe = load_recipe(write(tmp_path, MINIMAL), STAGES, ["stages.sft.train.learning_rate=0.5"])
    assert recipe.stage("sft").train.learning_rate == 0.5


def test_ranker_backend_swap_is_one_key(tmp_path: Path) -> None:
    data = {**MINIMAL, "ranker": {"backend": "function",
                                  "function": {"callable": "tuna_open.builtin.tasks:score_request"},
                                  "teacher_logprob": {"model": "@init"}}}
    path = write(tmp_path, data)
    recipe = load_recipe(path, STAGES, ["ranker.backend=teacher_logprob"])
    assert recipe.ranker.flat()["backend"] == "teacher_logprob"
    assert recipe.ranker.flat()["model"] == "@init"
    code, out = validate(path, "--set", "ranker.function.nonsense=1")
    assert code == 2 and "nonsense" in out
