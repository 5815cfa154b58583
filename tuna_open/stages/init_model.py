"""Stage ``init_model``: a randomly initialised tiny Llama and a locally trained tokenizer.

This is how the quickstart (and the tests) get models without a hub: the tokenizer is trained on the
builtin task suite's texts, the architecture is one of ``BUILTIN_MODELS`` or explicit sizes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuna_open.builtin.model import BUILTIN_MODELS, TinyLlamaConfig, init_model, train_tokenizer
from tuna_open.builtin.tasks import corpus
from tuna_open.recipe import StageConfig
from tuna_open.stages.context import StageContext, StageResult
from tuna_open.stages.stage import Stage


class Config(StageConfig):
    kind: Literal["init_model"]
    architecture: Literal["student", "teacher"] | TinyLlamaConfig = "student"
    """A builtin size (``student``/``teacher``) or explicit ``TinyLlamaConfig`` fields."""
    vocab_size: int = Field(default=512, ge=300)
    tokenizer_corpus: int = Field(default=2000, ge=10)
    """How many builtin task texts the BPE tokenizer is trained on."""


def run(ctx: StageContext, cfg: Config) -> StageResult:
    arch = BUILTIN_MODELS[cfg.architecture] if isinstance(cfg.architecture, str) else cfg.architecture
    tmp = ctx.stage_dir / "model.tmp"
    tokenizer = train_tokenizer(corpus(cfg.tokenizer_corpus, ctx.seed), tmp, vocab_size=cfg.vocab_size)
    init_model(arch, tokenizer, tmp, seed=ctx.seed)
    tmp.rename(ctx.output)
    return StageResult(summary=f"{cfg.architecture if isinstance(cfg.architecture, str) else 'custom'} Llama "
                               f"(hidden {arch.hidden_size}, {arch.num_hidden_layers} layers), vocab {len(tokenizer)}",
                       counts={"vocab": len(tokenizer)})


STAGE = Stage(kind="init_model", config=Config, output="model", run=run)
