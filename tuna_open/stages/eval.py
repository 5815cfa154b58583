"""Stage ``eval``: every model of the run answers the same prompts, greedily, and is scored alike.

Suites, each optional: held-out instruction data scored by a verifier and ROUGE-L (``data``), the paper's
Super-NaturalInstructions ROUGE-L (``superni``) and LMentry (``lmentry``), and Vicuna QA judged pairwise by
any ranker against a baseline model (``vicuna_qa``).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rankers import build_ranker
from rankers.backends.function import resolve
from rankers.base import owned
from rankers.llm.templates import TemplateName
from tuna_open.data.jsonl import atomic_write_text
from tuna_open.errors import UserError
from tuna_open.eval import superni as superni_suite
from tuna_open.eval import vicuna_qa as vicuna_suite
from tuna_open.eval.instructions import evaluate_instructions
from tuna_open.eval.lmentry import evaluate as lmentry_suite
from tuna_open.eval.lmentry.evaluate import LMentryConfig
from tuna_open.eval.superni import SuperNIConfig
from tuna_open.eval.vicuna_qa import VicunaQAConfig
from tuna_open.generate import SamplerChoice, build_sampler
from tuna_open.generate.base import Sampler, SamplingParams
from tuna_open.recipe import Recipe
from tuna_open.stages.context import StageContext, StageResult
from tuna_open.stages.prompts import sampler_prompter
from tuna_open.stages.ranked import RankerStage
from tuna_open.stages.stage import Stage


class Config(RankerStage):
    """``ranker`` (or the recipe's top-level one) is the Vicuna QA judge; it is only needed with ``vicuna_qa``."""

    kind: Literal["eval"]
    models: dict[str, str]
    """Report name → model (``@stage``, local dir or HF id)."""
    data: str | None = None
    """Held-out instruction data with reference outputs."""
    verifier: str | None = None
    """``module:attr`` scoring ``(response, reference) -> [0, 1]``; enables ``accuracy``."""
    template: TemplateName = "alpaca"
    """How ``data`` records reach each model (``chat``: that model's chat template); the benchmark suites have
    their own ``template`` keys."""
    max_new_tokens: int = Field(default=64, ge=1)
    sampler: SamplerChoice = SamplerChoice()
    superni: SuperNIConfig | None = None
    lmentry: LMentryConfig | None = None
    vicuna_qa: VicunaQAConfig | None = None

    def effective(self, recipe: Recipe) -> dict[str, Any]:
        # The judge only matters (and is only required) when Vicuna QA is evaluated.
        return super().effective(recipe) if self.vicuna_qa else self.model_dump(exclude={"ranker"})

    @field_validator("verifier")
    @classmethod
    def _importable(cls, value: str | None) -> str | None:
        if value is not None:
            resolve(value)  # a typo fails at validation, naming the module or attribute
        return value

    def data_names(self) -> list[str]:
        return [self.data] if self.data else []

    def input_paths(self) -> dict[str, str]:
        paths = {"lmentry.data_dir": self.lmentry.data_dir} if self.lmentry else {}
        if self.superni and not self.superni.source.startswith(superni_suite.HF_PREFIX):
            paths["superni.source"] = self.superni.source
        if self.vicuna_qa:
            paths["vicuna_qa.questions"] = self.vicuna_qa.questions
            if self.vicuna_qa.references:
                paths["vicuna_qa.references"] = self.vicuna_qa.references
        return paths

    @model_validator(mode="after")
    def _templates_fit(self) -> Config:
        self.sampler.check_template(self.template)
        # The benchmark suites render their own instruction text without a tokenizer; only ``data`` has records.
        for suite in (self.superni, self.lmentry, self.vicuna_qa):
            if suite is not None and suite.template == "chat":
                raise ValueError(f"{type(suite).__name__}.template: 'chat' is only supported for the data suite")
            if suite is not None and self.sampler.chat_api:
                raise ValueError(f"{type(suite).__name__} sends text prompts, which a chat-completions sampler "
                                 "cannot take (use api: completions)")
        return self


def _generate_fn(sampler: Sampler, params: SamplingParams):  # -> Callable[[list[str]], list[str]]
    return lambda prompts: [s[0].text for s in sampler.generate(prompts, params)]


def evaluate_model(sampler: Sampler, cfg: Config, records: list[dict[str, Any]], prompts: list[Any],
                   verifier: Any) -> tuple[dict[str, float], dict[str, Any]]:
    """All configured suites for one model: (flat metrics for the report, details for metrics.json).

    ``prompts`` are what the sampler is sent for ``records`` (rendered for this model, or conversations)."""
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens)
    generate = _generate_fn(sampler, params)
    metrics: dict[str, float] = {}
    details: dict[str, Any] = {}
    if records:
        predictions = generate(prompts)
        overall, per_task = evaluate_instructions(records, predictions, verifier)
        metrics.update(overall)
        details["instructions"] = {"per_task": per_task, "examples": [
            {"id": r["id"], "prediction": p, "reference": r["output"]} for r, p in zip(records[:20], predictions)]}
    try:
        if cfg.superni:
            result = superni_suite.evaluate(generate, cfg.superni)
            metrics.update(superni_suite.summarize(result))
            details["superni"] = {k: v for k, v in result.items() if k != "predictions"}
        if cfg.lmentry:
            result = lmentry_suite.evaluate(generate, **cfg.lmentry.model_dump(exclude={"rules"}))
            metrics.update(lmentry_suite.summarize(result))
            details["lmentry"] = {k: v for k, v in result.items() if k != "predictions"}
    except ValueError as err:  # missing/malformed benchmark files: the suites name the file
        raise UserError(str(err)) from None
    return metrics, details


def _local_paths(ctx: StageContext, cfg: Config) -> Config:
    """Benchmark directories relative to the recipe's directory, as every other path of a recipe is."""
    update: dict[str, Any] = {}
    if cfg.superni and not cfg.superni.source.startswith(superni_suite.HF_PREFIX):
        update["superni"] = cfg.superni.model_copy(update={"source": str(ctx.recipe.resolve_path(cfg.superni.source))})
    if cfg.lmentry:
        data_dir = str(ctx.recipe.resolve_path(cfg.lmentry.data_dir))
        update["lmentry"] = cfg.lmentry.model_copy(update={"data_dir": data_dir})
    return cfg.model_copy(update=update)


def run(ctx: StageContext, cfg: Config) -> StageResult:
    cfg = _local_paths(ctx, cfg)
    verifier = resolve(cfg.verifier) if cfg.verifier else None
    records = [r for r in ctx.instructions(cfg.data) if r.get("output")] if cfg.data else []
    questions = []
    if cfg.vicuna_qa:
        v = cfg.vicuna_qa
        try:
            questions = vicuna_suite.load_questions(ctx.recipe.resolve_path(v.questions),
                                                    v.references and ctx.recipe.resolve_path(v.references), v.limit)
        except ValueError as err:
            raise UserError(str(err)) from None
    metrics: dict[str, dict[str, float]] = {}
    details: dict[str, Any] = {}
    answers: dict[str, list[str]] = {}
    with ctx.progress(len(cfg.models), "evaluating models") as advance:
        for name, model in cfg.models.items():
            path = ctx.resolve(model)
            prompter = sampler_prompter(cfg.template, path, cfg.sampler.chat_api)
            prompts = [prompter(r)[0] for r in records]
            with owned(build_sampler(path, cfg.sampler)) as sampler:  # one model in memory at once
                metrics[name], details[name] = evaluate_model(sampler, cfg, records, prompts, verifier)
                if questions:
                    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens)
                    answers[name] = _generate_fn(sampler, params)(
                        vicuna_suite.question_prompts(questions, cfg.vicuna_qa.template))
                if getattr(sampler, "truncated", 0):
                    ctx.console.print(f"[yellow]warning: {cfg.name}: {sampler.truncated} prompts longer than "
                                      f"{name}'s context were truncated to their last tokens[/yellow]")
            advance(1)
    if questions:
        with owned(build_ranker(ctx.resolve(cfg.choice(ctx.recipe).flat()))) as judge:
            results = vicuna_suite.compare(questions, answers, judge, baseline=cfg.vicuna_qa.baseline)
        for name, flat in vicuna_suite.summarize(results).items():
            metrics.setdefault(name, {}).update(flat)
        details["vicuna_qa"] = [r.to_dict() for r in results]
        vicuna_suite.plot_win_tie_loss(results, ctx.stage_dir / "vicuna_qa.png")
    atomic_write_text(ctx.output, json.dumps({"metrics": metrics, "details": details}, indent=2))
    key = "accuracy" if verifier else next(iter(next(iter(metrics.values()), {})), "")
    summary = ", ".join(f"{m} {v[key]:.1f}" for m, v in metrics.items() if key in v)
    plots = [str(ctx.stage_dir / "vicuna_qa.png")] if questions else []
    return StageResult(summary=f"{key}: {summary}" if key else "no metrics", metrics=metrics,
                       extra={"plots": plots} if plots else {})


STAGE = Stage(kind="eval", config=Config, output="metrics", run=run)
