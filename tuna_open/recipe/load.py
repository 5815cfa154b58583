"""Loading a recipe: read the YAML, apply ``--set``, validate, then check what one field alone cannot.

Everything that can be checked before work starts is checked here (schema, unknown keys, files exist,
backends known, references point to earlier stages), so a typo never costs a training run.

The recipe layer does not know which stage kinds exist (the stages import the recipe, not the reverse): the
caller passes them, normally ``tuna_open.stages.registry.STAGES``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from tuna_open.data.jsonl import read_text
from tuna_open.data.sources import check_source
from tuna_open.errors import UserError
from tuna_open.recipe.overrides import apply_overrides
from tuna_open.recipe.refs import iter_refs, iter_strings
from tuna_open.recipe.schema import Recipe, StageKind, first_error


def load_mapping(path: Path, what: str) -> dict[str, Any]:
    """Read a YAML (or JSON) mapping; a missing file or a syntax error is one line naming ``file:line:col``."""
    if not path.is_file():
        raise UserError(f"{path}: {what} file not found")
    try:
        data = yaml.safe_load(read_text(path))
    except ValueError as err:  # not UTF-8
        raise UserError(str(err)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{where}: invalid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a {what} must be a YAML mapping")
    return data


def load_recipe(path: str | Path, stages: Mapping[str, StageKind], overrides: list[str] | None = None) -> Recipe:
    """Parse, override and validate a recipe whose stages are of the kinds in ``stages``; every user mistake
    becomes a one-line UserError."""
    path = Path(path)
    data = load_mapping(path, "recipe")
    return parse_recipe(apply_overrides(data, overrides or []), path.resolve().parent, str(path), stages)


def parse_recipe(data: dict[str, Any], base_dir: Path, where: str, stages: Mapping[str, StageKind]) -> Recipe:
    """Validate recipe data (relative paths resolve against ``base_dir``); errors name ``where`` and the field."""
    try:
        recipe = Recipe.model_validate({**data, "base_dir": base_dir}, context={"stages": stages})
    except ValidationError as err:
        raise UserError(f"{where}: {first_error(err)}") from None
    check_recipe(recipe, where)
    return recipe


def check_recipe(recipe: Recipe, path: Path | str) -> None:
    """Cross-field checks: unique names, references to earlier stages, data names and files exist."""
    seen: set[str] = set()
    for i, stage in enumerate(recipe.stages):
        where = f"{path}: stages[{i}] ({stage.name})"
        if stage.name in seen:
            raise UserError(f"{where}: duplicate stage name {stage.name!r}")
        for ref in iter_refs(stage.effective(recipe)):
            if ref not in seen:
                later = ref in {s.name for s in recipe.stages}
                raise UserError(f"{where}: '@{ref}' " + ("refers to a later stage" if later else "is not a stage"))
        for text in iter_strings(stage.model_dump()):
            # Relative to the working directory, like a model directory given as a path.
            if text.startswith("gguf:") and not Path(text[len("gguf:"):]).expanduser().is_file():
                raise UserError(f"{where}: {text}: GGUF file not found")
        for data_name in stage.data_names():
            if data_name not in recipe.data:
                known = ", ".join(recipe.data) or "none"
                raise UserError(f"{where}: unknown data {data_name!r} (recipe data: {known})")
        seen.add(stage.name)
    for name, src in recipe.data.items():
        if not (src.source.startswith("builtin:") or src.source.startswith("hf:")):
            if not recipe.resolve_path(src.source).exists():
                raise UserError(f"{path}: data.{name}.source: file not found: {src.source}")
            if not recipe.resolve_path(src.source).is_file():
                raise UserError(f"{path}: data.{name}.source: {src.source} is a directory, expected a data file "
                                f"(.json, .jsonl, .csv or .parquet)")
            check_source(src, recipe.base_dir, f"{path}: data.{name}")
        elif src.source.startswith("builtin:") and src.source != "builtin:tasks":
            raise UserError(f"{path}: data.{name}.source: unknown builtin data {src.source!r} (known: builtin:tasks)")
