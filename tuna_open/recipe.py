"""The recipe: a YAML file validated by pydantic models. The schema *is* the documentation.

A recipe names its data sources, an optional default ranker, and an ordered list of stages. Stages refer to
each other's outputs with ``"@stage_name"`` strings (a model directory or a records file), which is how
inputs are wired and how fingerprints chain: change anything upstream and everything downstream re-runs.

Everything that can be checked before work starts is checked here (schema, unknown keys, files exist,
backends known, references point to earlier stages), so a typo never costs a training run.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Iterator, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rankers.registry import BACKENDS, RankerConfig, RankerConfigError, validate_config
from tuna_open.data.jsonl import read_text
from tuna_open.errors import UserError
from tuna_open.train.trl_common import LEGACY_NAMES

REF = re.compile(r"^@([A-Za-z0-9_\-]+)$")
KEY_ALIASES = {**LEGACY_NAMES, **{new: old for old, new in LEGACY_NAMES.items()}}
"""Pairs of keys naming the same setting (``tuna_open.train.trl_common.LEGACY_NAMES``), for ``--set``."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldMap(Strict):
    """Column names of an instruction dataset (Alpaca's by default)."""

    instruction: str = "instruction"
    input: str = "input"
    output: str = "output"
    id: str | None = None
    task: str | None = None
    messages: str | None = None
    """The conversation column of ``messages`` / ``sharegpt`` data (default ``messages`` / ``conversations``)."""


DataFormat = Literal["auto", "alpaca", "messages", "prompt_completion", "sharegpt"]


class DataSource(Strict):
    """Instruction data: ``builtin:tasks``, a ``.json``/``.jsonl``/``.csv``/``.parquet`` file, or ``hf:DATASET_ID``.

    Records may be Alpaca (``instruction``/``input``/``output``), TRL conversational (``messages``), TRL
    prompt/completion (strings or message lists) or ShareGPT (``conversations`` of ``from``/``value``). In a
    conversation the last assistant turn is the response (SFT target, reference); the turns before it are the
    prompt, rendered by ``template: chat``.
    """

    source: str
    format: DataFormat = "auto"
    """The record schema; ``auto`` detects it from the first record's keys."""
    split: str | None = None
    """builtin: train|heldout; hf: the dataset split (default train)."""
    config: str | None = None
    """hf: the dataset configuration (subset) name."""
    revision: str | None = None
    """hf: a branch, tag or commit of the dataset repository."""
    limit: int | None = Field(default=None, ge=1)
    offset: int = Field(default=0, ge=0)
    seed: int | None = None
    """builtin: which world to draw (defaults to the recipe seed)."""
    fields: FieldMap = FieldMap()


class RankerChoice(RankerConfig):
    """A ranker picked by ``backend``, with option blocks for any number of backends.

    Keeping one block per backend is what makes ``--set ranker.backend=NAME`` a one-key swap: the options of
    every backend stay in the recipe, and only the selected block is used. Keys shared by all backends
    (``permutations``, ``cache_dir``, ``seed``) sit at the top: they are ``RankerConfig``'s, inherited with their
    bounds, so a recipe and a flat ranker config accept the same values.
    """

    model_config = ConfigDict(extra="allow")

    max_failure_fraction: float = Field(default=0.1, ge=0.0, le=1.0)
    """The rank stage fails when more than this fraction of requests could not be ranked."""

    @model_validator(mode="after")
    def _check_blocks(self) -> "RankerChoice":
        for key, value in (self.model_extra or {}).items():
            if key not in BACKENDS:
                raise ValueError(f"unknown key {key!r} (a ranker block must be named after a backend: "
                                 f"{', '.join(sorted(BACKENDS))})")
            if not isinstance(value, dict):
                raise ValueError(f"{key}: expected a mapping of {key} options")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown ranker backend {self.backend!r} (known: {', '.join(sorted(BACKENDS))})")
        try:
            for name in {self.backend, *(self.model_extra or {})}:
                validate_config(self.flat(name))
        except RankerConfigError as err:
            raise ValueError(str(err)) from None
        return self

    def flat(self, backend: str | None = None) -> dict[str, Any]:
        """The flat config ``rankers.build_ranker`` takes for ``backend`` (default: the selected one)."""
        name = backend or self.backend
        common = {k: getattr(self, k) for k in RankerConfig.model_fields if k != "backend"}
        return {"backend": name, **common, **copy.deepcopy((self.model_extra or {}).get(name, {}))}


class StageConfig(Strict):
    """Fields every stage has. ``name`` is also the name of its output (``@name``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    kind: str
    seed: int | None = None
    """Overrides the recipe seed for this stage."""

    def effective(self, recipe: "Recipe") -> dict[str, Any]:
        """The config that determines this stage's output (recipe defaults filled in); fingerprinted."""
        return self.model_dump()

    def data_names(self) -> list[str]:
        """Recipe ``data`` entries this stage reads (checked to exist before work starts)."""
        return []


def recipe_data(*names: str | None) -> list[str]:
    """The ``names`` that are recipe ``data`` entries: not unset, not ``@stage`` records (a stage's output)."""
    return [name for name in names if name and not name.startswith("@")]


class ReportConfig(Strict):
    baseline: str = "sft"
    """The model the report compares every other model against."""
    primary_metric: str = "accuracy"


class Recipe(Strict):
    name: str
    description: str = ""
    seed: int = 0
    data: dict[str, DataSource] = {}
    ranker: RankerChoice | None = None
    """The default ranker of ``rank`` stages that have none of their own (Tuna_c's judge)."""
    stages: list[StageConfig]
    report: ReportConfig = ReportConfig()
    base_dir: Path = Field(default=Path("."), exclude=True)
    """Directory the recipe file lives in; relative paths in the recipe resolve against it."""

    @field_validator("stages", mode="before")
    @classmethod
    def _validate_stages(cls, raw: Any) -> list[StageConfig]:
        from tuna_open.stages import stage_module

        if not isinstance(raw, list):
            raise ValueError("expected a list of stages")
        out: list[StageConfig] = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or "kind" not in item:
                raise ValueError(f"stages[{i}]: each stage needs a 'kind'")
            try:
                module = stage_module(item["kind"])
            except KeyError as err:
                raise ValueError(f"stages[{i}]: {err.args[0]}") from None
            try:
                out.append(module.Config.model_validate(item))
            except ValidationError as err:
                raise ValueError(f"stages[{i}] ({item.get('name', '?')}).{_first_error(err)}") from None
        return out

    def stage(self, name: str) -> StageConfig:
        for s in self.stages:
            if s.name == name:
                return s
        raise UserError(f"no stage named {name!r} (stages: {', '.join(s.name for s in self.stages)})")

    def resolve_path(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = f"unknown key {first['loc'][-1]!r}"
    return f"{loc}: {msg}" if loc else msg


def iter_strings(value: Any) -> Iterator[str]:
    """Every string inside a (nested) config value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from iter_strings(v)


def iter_refs(value: Any) -> Iterator[str]:
    """Every ``@stage`` reference inside a (nested) config value."""
    for text in iter_strings(value):
        m = REF.match(text)
        if m:
            yield m.group(1)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set dotted.key=value`` overrides (values parsed as YAML scalars).

    ``stages.NAME.key`` addresses a stage by name, since positions in the list are fragile.
    """
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected dotted.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as err:
            raise UserError(f"--set {item}: invalid YAML value ({getattr(err, 'problem', None) or err})") from None
        node: Any = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                match = [s for s in node if isinstance(s, dict) and s.get("name") == part]
                if not match:
                    raise UserError(f"--set {key}: no stage named {part!r}")
                node = match[0]
            else:
                if not isinstance(node, dict):
                    raise UserError(f"--set {key}: {'.'.join(parts[:i])} is not a mapping")
                node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {key}: cannot set a key inside a non-mapping")
        if parts[-1] in KEY_ALIASES:  # TRL's name overrides a recipe's older spelling, and back
            node.pop(KEY_ALIASES[parts[-1]], None)
        node[parts[-1]] = value
    return data


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


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Parse, override and validate a recipe; every user mistake becomes a one-line UserError."""
    path = Path(path)
    data = load_mapping(path, "recipe")
    return parse_recipe(apply_overrides(data, overrides or []), path.resolve().parent, str(path))


def parse_recipe(data: dict[str, Any], base_dir: Path, where: str) -> Recipe:
    """Validate recipe data (relative paths resolve against ``base_dir``); errors name ``where`` and the field."""
    try:
        recipe = Recipe.model_validate({**data, "base_dir": base_dir})
    except ValidationError as err:
        raise UserError(f"{where}: {_first_error(err)}") from None
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
        for data_name in getattr(stage, "data_names", lambda: [])():
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
            from tuna_open.data.sources import check_source  # sources imports this module

            check_source(src, recipe.base_dir, f"{path}: data.{name}")
        elif src.source.startswith("builtin:") and src.source != "builtin:tasks":
            raise UserError(f"{path}: data.{name}.source: unknown builtin data {src.source!r} (known: builtin:tasks)")
