"""The registry: every name loads its module, the engines match the keys that choose them, bounds live once, and
``import rankers`` pulls in no heavy dependency."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args, get_type_hints

import pytest

from rankers import RankerConfig, RankerConfigError, validate_config
from rankers.backends import teacher_logprob
from rankers.registry import BACKENDS, backend_module
from tuna_open.recipe import RankerChoice


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_backend_loads_a_module_with_config_and_build(name: str) -> None:
    module = backend_module(name)
    assert module.__name__.startswith("rankers.backends.")
    assert issubclass(module.Config, RankerConfig) and callable(module.build)
    assert get_type_hints(module.build)["return"].name == name  # the loader of this name, not another's


def test_unknown_backend_lists_the_known() -> None:
    with pytest.raises(RankerConfigError, match=r"unknown ranker backend 'nope' \(known: ensemble, fastchat, function"):
        backend_module("nope")


def test_every_engine_key_has_a_scorer() -> None:
    assert set(teacher_logprob.ENGINES) == set(get_args(teacher_logprob.Config.model_fields["engine"].annotation))
    for load in teacher_logprob.ENGINES.values():
        assert load().__module__.startswith("rankers.logprob.")


def test_common_bounds_hold_in_flat_configs_and_recipes() -> None:
    with pytest.raises(RankerConfigError, match="permutations: Input should be greater than or equal to 1"):
        validate_config({"backend": "function", "callable": "math:fsum", "permutations": 0})
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        RankerChoice.model_validate({"backend": "function", "permutations": 0, "function": {"callable": "math:fsum"}})


def test_import_is_cheap() -> None:
    code = ("import sys, rankers; from rankers.registry import build_ranker; "
            "print(sorted({'vllm', 'openai', 'transformers', 'torch'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
