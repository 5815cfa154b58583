"""The recipe's schema: pydantic models validating a YAML file. The schema *is* the documentation.

A recipe names its data sources, an optional default ranker, and an ordered list of stages. Stages refer to
each other's outputs with ``"@stage_name"`` strings (``tuna_open.recipe.refs``), which is how inputs are wired
and how fingerprints chain: change anything upstream and everything downstream re-runs.

Which stage kinds exist is not known here (every stage module imports this one): ``Recipe`` validates each stage
entry against the kinds passed in its validation context (``tuna_open.recipe.load.parse_recipe``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Mapping, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from rankers.config import RankerConfig, RankerConfigError
from rankers.registry import BACKENDS, validate_config
from tuna_open.data.schema import DataSource
from tuna_open.errors import UserError


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt option must fail validation, not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


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


Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
"""A seed numpy, torch and the samplers all accept: ``seed: 1e23`` validated, then crashed the run."""

NAME_MAX = 100
"""Longest recipe or stage name: each is a directory name (``runs/<recipe>``, ``stages/<stage>``) with files
named after it inside, and file systems refuse names over 255 bytes."""


class StageConfig(Strict):
    """Fields every stage has. ``name`` is also the name of its output (``@name``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$", max_length=NAME_MAX)
    kind: str
    seed: Seed | None = None
    """Overrides the recipe seed for this stage."""

    def effective(self, recipe: "Recipe") -> dict[str, Any]:
        """The config that determines this stage's output (recipe defaults filled in); fingerprinted."""
        return self.model_dump()

    def data_names(self) -> list[str]:
        """Recipe ``data`` entries this stage reads (checked to exist before work starts)."""
        return []

    def input_paths(self) -> dict[str, str]:
        """Local files or directories this stage reads, by field (``lmentry.data_dir``), relative to the recipe
        (``Recipe.missing_inputs``)."""
        return {}


def recipe_data(*names: str | None) -> list[str]:
    """The ``names`` that are recipe ``data`` entries: not unset, not ``@stage`` records (a stage's output)."""
    return [name for name in names if name and not name.startswith("@")]


class StageKind(Protocol):
    """What the recipe needs of a stage kind (``tuna_open.stages.stage.Stage``): the config class its entries are."""

    @property
    def config(self) -> type[StageConfig]: ...


class ReportConfig(Strict):
    baseline: str = "sft"
    """The model the report compares every other model against."""
    primary_metric: str = "accuracy"


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$", max_length=NAME_MAX)
    """The default run directory is ``runs/<name>``: one plain path component (no ``/``, no leading ``.``), so a
    run never lands outside ``runs/``."""
    description: str = ""
    seed: Seed = 0
    data: dict[str, DataSource] = {}
    ranker: RankerChoice | None = None
    """The default ranker of ``rank`` stages that have none of their own (Tuna_c's judge)."""
    stages: list[StageConfig]
    report: ReportConfig = ReportConfig()
    base_dir: Path = Field(default=Path("."), exclude=True)
    """Directory the recipe file lives in; relative paths in the recipe resolve against it."""

    @field_validator("stages", mode="before")
    @classmethod
    def _validate_stages(cls, raw: Any, info: ValidationInfo) -> list[StageConfig]:
        kinds: Mapping[str, StageKind] | None = (info.context or {}).get("stages")
        if kinds is None:  # a caller's bug, not a recipe's: no one-line UserError
            raise TypeError("Recipe validation needs the stage kinds: context={'stages': STAGES} "
                            "(tuna_open.stages.registry)")
        if not isinstance(raw, list):
            raise ValueError("expected a list of stages")
        out: list[StageConfig] = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or "kind" not in item:
                raise ValueError(f"stages[{i}]: each stage needs a 'kind'")
            if item["kind"] not in kinds:
                raise ValueError(f"stages[{i}]: unknown stage kind {item['kind']!r} (known: {', '.join(kinds)})")
            try:
                out.append(kinds[item["kind"]].config.model_validate(item))
            except ValidationError as err:
                raise ValueError(f"stages[{i}] ({item.get('name', '?')}).{first_error(err)}") from None
        return out

    def stage(self, name: str) -> StageConfig:
        for s in self.stages:
            if s.name == name:
                return s
        raise UserError(f"no stage named {name!r} (stages: {', '.join(s.name for s in self.stages)})")

    def missing_inputs(self, stage: StageConfig) -> list[str]:
        """``stage``'s local inputs (``input_paths``) that do not exist, one line each naming the field.

        Checked by ``validate``'s pre-flight and by the runner just before the stage runs, so a missing benchmark
        directory fails before its models are loaded; not when the recipe loads: benchmark files are per machine,
        and a recipe stays valid where they are not fetched yet.
        """
        return [f"stage {stage.name}: {field}: not found: {path}"
                for field, path in stage.input_paths().items() if not self.resolve_path(path).exists()]

    def resolve_path(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def first_error(err: ValidationError) -> str:
    """A validation error as one line: the first error's location and message (``unknown key`` for extras)."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = f"unknown key {first['loc'][-1]!r}"
    return f"{loc}: {msg}" if loc else msg
