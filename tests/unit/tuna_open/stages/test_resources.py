"""Stages close what they open: a model loaded by one stage is gone before the next stage starts.

On a GPU that is the difference between a 7B sampler's memory being free for the judge or not; here it is
observed with weak references to every model ``from_pretrained`` returns (a model still referenced anywhere,
an unclosed sampler or ranker included, keeps its weakref alive).
"""

from __future__ import annotations

import weakref
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from rankers.base import owned
from rankers.logprob.hf_scorer import HFLogprobScorer
from tuna_open.generate.hf_sampler import HFSampler
from tuna_open.pipeline import runner
from tuna_open.pipeline.runner import run_recipe
from tuna_open.recipe import load_recipe
from tuna_open.stages.registry import STAGES


class Closable:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_owned_closes_on_error_and_tolerates_objects_without_close() -> None:
    thing = Closable()
    with pytest.raises(RuntimeError), owned(thing):
        raise RuntimeError("stage failed")
    assert thing.closed
    with owned(object()), owned(None):
        pass


def test_each_stage_releases_its_models_before_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    loaded: list[tuple[str, weakref.ref]] = []
    starts: list[tuple[str, list[str]]] = []
    load = transformers.AutoModelForCausalLM.from_pretrained.__func__
    prepare = runner._prepare_stage_dir

    def tracked_load(cls, *args, **kwargs):
        model = load(cls, *args, **kwargs)
        loaded.append((starts[-1][0], weakref.ref(model)))
        return model

    def checked_prepare(stage_dir: Path, *args: object, **kwargs: object) -> None:
        starts.append((stage_dir.name, [stage for stage, ref in loaded if ref() is not None]))
        prepare(stage_dir, *args, **kwargs)

    closed: list[tuple[str, str]] = []
    for cls in (HFSampler, HFLogprobScorer):
        def tracked_close(self, _close=cls.close):
            closed.append((starts[-1][0], type(self).__name__))
            _close(self)

        monkeypatch.setattr(cls, "close", tracked_close)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(tracked_load))
    monkeypatch.setattr(runner, "_prepare_stage_dir", checked_prepare)
    data = {
        "name": "resources",
        "data": {"p": {"source": "builtin:tasks", "split": "train", "limit": 2}},
        "stages": [
            {"name": "init", "kind": "init_model", "vocab_size": 320, "tokenizer_corpus": 200},
            {"name": "samples", "kind": "sample", "model": "@init", "data": "p", "n": 2, "max_new_tokens": 4,
             "dedup": False, "min_candidates": 1},
            {"name": "rankings", "kind": "rank", "input": "@samples", "ranker": {
                "backend": "teacher_logprob",
                "teacher_logprob": {"model": "@init", "engine": "hf", "use_request_logprobs": False}}},
            {"name": "eval", "kind": "eval", "models": {"init": "@init"}, "data": "p", "max_new_tokens": 2},
        ],
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    run_recipe(load_recipe(path, STAGES), tmp_path / "run", console=Console(quiet=True))
    assert sorted({stage for stage, _ in loaded}) == ["eval", "rankings", "samples"]  # each stage loaded a model
    assert starts == [("init", []), ("samples", []), ("rankings", []), ("eval", [])]  # none alive at the next start
    assert all(ref() is None for _, ref in loaded)
    # Released by the stage itself (what frees a vLLM engine's GPU memory and processes), not by luck of the GC.
    assert closed == [("samples", "HFSampler"), ("rankings", "HFLogprobScorer"), ("eval", "HFSampler")]
