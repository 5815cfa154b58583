"""Stage kinds, registered by name. Adding one is one module (``Config``, ``OUTPUT``, ``run``) plus one line.

Each stage is a function from input artifacts to output artifacts: ``run(ctx, config) -> StageResult``. The
runner (``tuna_open.pipeline.runner``) owns fingerprints, caching, resume and the run directory; a stage only
reads its inputs through ``ctx`` and writes its output where ``ctx.output`` says.

Under ``accelerate launch`` a stage runs on the main process only (the others wait), unless its module sets
``ALL_PROCESSES = True``: the training stages, whose trainers split the work across processes themselves.
"""

from __future__ import annotations

import importlib
from types import ModuleType

STAGES: dict[str, str] = {
    "init_model": "tuna_open.stages.init_model",
    "sft": "tuna_open.stages.sft",
    "sample": "tuna_open.stages.sample",
    "distill": "tuna_open.stages.distill",
    "rank": "tuna_open.stages.rank",
    "train_tuna": "tuna_open.stages.train_tuna",
    "train_dpo": "tuna_open.stages.train_dpo",
    "train_reward": "tuna_open.stages.train_reward",
    "train_ppo": "tuna_open.stages.train_ppo",
    "train_grpo": "tuna_open.stages.train_grpo",
    "eval": "tuna_open.stages.eval",
}


def stage_module(kind: str) -> ModuleType:
    if kind not in STAGES:
        raise KeyError(f"unknown stage kind {kind!r} (known: {', '.join(STAGES)})")
    return importlib.import_module(STAGES[kind])
