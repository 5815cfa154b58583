"""Stage ``eval``: every model of the run answers the same held-out prompts, greedily, and is scored alike.

Held-out instruction data is scored by a verifier and ROUGE-L; the paper's benchmarks (Super-NaturalInstructions,
LMentry, Vicuna QA) are added by their own option blocks.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field, field_validator

from rankers.function import resolve

from tuna_open.data.jsonl import atomic_write_text
from tuna_open.eval.instructions import evaluate_instructions
from tuna_open.generate import SamplerChoice, build_sampler
from tuna_open.generate.base import SamplingParams
from tuna_open.pipeline.context import StageContext, StageResult
from tuna_open.prompts import format_prompt
from tuna_open.recipe import StageConfig

OUTPUT = "metrics"


class Config(StageConfig):
    kind: Literal["eval"]
    models: dict[str, str]
    """Report name → model (``@stage``, local dir or HF id)."""
    data: str | None = None
    """Held-out instruction data with reference outputs."""
    verifier: str | None = None
    """``module:attr`` scoring ``(response, reference) -> [0, 1]``; enables ``accuracy``."""
    template: str = "alpaca"
    max_new_tokens: int = Field(default=64, ge=1)
    sampler: SamplerChoice = SamplerChoice()

    @field_validator("verifier")
    @classmethod
    def _importable(cls, value: str | None) -> str | None:
        if value is not None:
            resolve(value)  # a typo fails at validation, naming the module or attribute
        return value

    def data_names(self) -> list[str]:
        return [self.data] if self.data else []


def run(ctx: StageContext, cfg: Config) -> StageResult:
    verifier = resolve(cfg.verifier) if cfg.verifier else None
    records = [r for r in ctx.instructions(cfg.data) if r.get("output")] if cfg.data else []
    prompts = [format_prompt(r["instruction"], r["input"], cfg.template) for r in records]
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens, seed=ctx.seed)
    metrics: dict[str, dict[str, float]] = {}
    details: dict[str, dict] = {}
    with ctx.progress(len(cfg.models), "evaluating models") as advance:
        for name, model in cfg.models.items():
            sampler = build_sampler(ctx.resolve(model), cfg.sampler)
            if records:
                predictions = [s[0].text for s in sampler.generate(prompts, params)]
                metrics[name], per_task = evaluate_instructions(records, predictions, verifier)
                details[name] = {"per_task": per_task,
                                 "examples": [{"id": r["id"], "prediction": p, "reference": r["output"]}
                                              for r, p in zip(records[:20], predictions[:20])]}
            del sampler
            advance(1)
    atomic_write_text(ctx.output, json.dumps({"metrics": metrics, "details": details}, indent=2))
    key = "accuracy" if verifier else "rougeL"
    summary = ", ".join(f"{m} {v.get(key, float('nan')):.1f}" for m, v in metrics.items())
    return StageResult(summary=f"{key}: {summary}", metrics=metrics)
