"""The recipe: a YAML file naming data sources, a default ranker and an ordered list of stages.

One concern per module: ``schema`` (the pydantic models), ``refs`` (``@stage`` references), ``aliases`` (older key
spellings), ``overrides`` (``--set``) and ``load`` (reading, validating and cross-checking a file). This package
sits below the stages: a stage module imports ``StageConfig`` from here, and ``load_recipe`` is given the stage
kinds it validates against (``tuna_open.stages.registry.STAGES``).
"""

from tuna_open.recipe.load import load_mapping, load_recipe, parse_recipe
from tuna_open.recipe.overrides import apply_overrides
from tuna_open.recipe.refs import REF, iter_refs, iter_strings, substitute_refs
from tuna_open.recipe.schema import RankerChoice, Recipe, StageConfig, recipe_data

__all__ = ["REF", "RankerChoice", "Recipe", "StageConfig", "apply_overrides", "iter_refs", "iter_strings",
           "load_mapping", "load_recipe", "parse_recipe", "recipe_data", "substitute_refs"]
