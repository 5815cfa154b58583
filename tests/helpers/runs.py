"""Small recipes run in-process, shared by the runner's unit and integration tests."""

from __future__ import annotations

from pathlib import Path

import yaml
from rich.console import Console

from tuna_open.pipeline.runner import run_recipe
from tuna_open.recipe import load_recipe
from tuna_open.stages.registry import STAGES


def recipe_dict(limit: int = 6, vocab: int = 320, chunk: int = 3) -> dict:
    return {
        "name": "pipe",
        "data": {"p": {"source": "builtin:tasks", "split": "train", "limit": limit}},
        "stages": [
            {"name": "init", "kind": "init_model", "vocab_size": vocab, "tokenizer_corpus": 200},
            {"name": "samples", "kind": "sample", "model": "@init", "data": "p", "n": 2, "max_new_tokens": 4,
             "dedup": False, "min_candidates": 1, "logprobs": True, "chunk_size": chunk},
        ],
    }


def run(tmp_path: Path, data: dict, **kw: object) -> dict:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return run_recipe(load_recipe(path, STAGES), tmp_path / "run", console=Console(quiet=True), **kw)


def statuses(report: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in report["stages"]}
