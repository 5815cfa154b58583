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

MAX_BYTES = 4_000_000
"""Largest recipe or ranker config read: far above any real one, far below what would stall a load."""
MAX_NODES = 200_000
"""Most YAML nodes a document may hold once its aliases are expanded (``&a``/``*a``): a few lines of nested
aliases ("billion laughs") expand to billions of values when the config is dumped or fingerprinted."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys: PyYAML silently keeps the last of two ``stages:`` lists,
    so a recipe ran something other than what half of it says."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = (key_node.tag, key_node.value)
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r} (also on line {first[key] + 1})",
                        key_node.start_mark)
                first[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Nodes under ``node`` with every alias expanded; memoised by node, so computing it is linear."""
    if id(node) in sizes:
        if sizes[id(node)] < 0:
            raise UserError("a YAML alias refers to a node that contains it (a recursive document)")
        return sizes[id(node)]
    sizes[id(node)] = -1
    children = (node.value if isinstance(node, yaml.SequenceNode)
                else [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
    sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def parse_yaml(text: str, where: str) -> Any:
    """The YAML document in ``text``, duplicate keys refused and alias expansion bounded (``MAX_NODES``)."""
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            size = _expanded_size(node, {})
        except UserError as err:
            raise UserError(f"{where}: {err}") from None
        if size > MAX_NODES:
            raise UserError(f"{where}: more than {MAX_NODES} values once its aliases are expanded; refused")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_mapping(path: Path, what: str) -> dict[str, Any]:
    """Read a YAML (or JSON) mapping; a missing file or a syntax error is one line naming ``file:line:col``."""
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a {what} file (YAML or JSON)")
    if not path.is_file():
        raise UserError(f"{path}: {what} file not found")
    if path.stat().st_size > MAX_BYTES:
        raise UserError(f"{path}: {path.stat().st_size} bytes; a {what} is at most {MAX_BYTES} (is it the right file?)")
    try:
        data = parse_yaml(read_text(path), str(path))
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


MODEL_KEYS = frozenset({"model", "models", "reward_model"})
"""Config keys naming models (at any depth: a ranker's ``model`` too)."""
LOCAL_PREFIXES = ("/", "./", "../", "~")
"""How a model that is a local directory, not a Hub id (``org/name``), starts."""


def _model_paths(config: Any) -> list[str]:
    """Every model named under ``MODEL_KEYS`` in a (nested) stage config."""
    found: list[str] = []
    if isinstance(config, dict):
        for key, value in config.items():
            if key in MODEL_KEYS:
                found += [v for v in (value.values() if isinstance(value, dict) else [value]) if isinstance(v, str)]
            else:
                found += _model_paths(value)
    elif isinstance(config, list):
        for value in config:
            found += _model_paths(value)
    return found


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
        for model in _model_paths(stage.effective(recipe)):
            if model.startswith(LOCAL_PREFIXES) and not Path(model).expanduser().exists():
                raise UserError(f"{where}: model {model}: no such directory (a local path, relative to the "
                                "working directory)")
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
