"""Stage ``sample``: N responses per instruction from a model (the Tuna_p teacher or the Tuna_c student).

Work is flushed per chunk to a resumable partial file, so a killed run keeps every finished record. Filters
apply when the stage finishes: exact duplicates are removed (``dedup``), prompts left with fewer than
``min_candidates`` distinct responses are dropped (nothing to rank), and prompts whose candidates are
near-duplicates of each other (mean unstemmed pairwise ROUGE-L above ``diversity_max_rougeL``) are dropped.
``diversity`` is LMOps's way instead (``tuna_open.generate.diversity``): prompts whose samples fail the criterion
are sampled again at a higher temperature while sampling, and nothing is dropped unless asked; each record
carries ``resamples`` (rounds after the first) and ``diverse``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import Field, model_validator

from rankers.base import owned
from rankers.llm.templates import TemplateName
from tuna_open.data.jsonl import ResumableJsonlWriter
from tuna_open.generate import SamplerChoice, build_sampler
from tuna_open.generate.base import SamplingParams
from tuna_open.generate.diversity import DiversityResampling, pairwise_rougeL, sample_diverse
from tuna_open.recipe import StageConfig, recipe_data
from tuna_open.stages.context import StageContext, StageResult
from tuna_open.stages.prompts import sampler_prompter
from tuna_open.stages.stage import Stage


class Config(StageConfig):
    kind: Literal["sample"]
    model: str
    """``@stage``, a local model dir or HF id (for ``sampler.backend: openai``, the served model's name)."""
    data: str
    """A recipe ``data`` entry (or ``@stage`` records with instruction/input)."""
    template: TemplateName = "alpaca"
    n: int = Field(default=4, ge=1)
    temperature: float = Field(default=1.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(default=128, ge=1)
    logprobs: bool = False
    """Record each candidate's summed log-probability under this model (Tuna_p's ranking signal)."""
    dedup: bool = True
    min_candidates: int = Field(default=2, ge=1)
    diversity_max_rougeL: float | None = Field(default=None, ge=0.0, le=1.0)
    """Drop prompts whose mean unstemmed pairwise ROUGE-L is above this, after sampling (no resampling)."""
    diversity: DiversityResampling | None = None
    """Resample non-diverse prompts at rising temperature while sampling (LMOps's criterion by default)."""
    chunk_size: int = Field(default=64, ge=1)
    """Prompts per generation call and per resumable flush."""
    sampler: SamplerChoice = SamplerChoice()

    def data_names(self) -> list[str]:
        return recipe_data(self.data)

    @model_validator(mode="after")
    def _template_fits_sampler(self) -> "Config":
        self.sampler.check_template(self.template)
        return self


def _mean_pairwise_rougeL(texts: list[str]) -> float:
    scores = pairwise_rougeL(texts, stemmer=False)
    return sum(scores) / len(scores) if scores else 1.0


def postprocess(record: dict[str, Any], cfg: Config) -> dict[str, Any] | None:
    """Apply dedup / minimum-count / diversity filters to one sampled record; None drops it."""
    if cfg.diversity is not None and cfg.diversity.on_failure == "drop" and not record.get("diverse", True):
        return None
    keep = list(range(len(record["candidates"])))
    if cfg.dedup:
        seen: set[str] = set()
        keep = [i for i in keep if not (record["candidates"][i] in seen or seen.add(record["candidates"][i]))]
    if len(keep) < cfg.min_candidates:
        return None
    out = dict(record)
    for key in ("candidates", "logprobs", "lengths"):
        if key in out:
            out[key] = [record[key][i] for i in keep]
    if cfg.diversity_max_rougeL is not None and _mean_pairwise_rougeL(out["candidates"]) > cfg.diversity_max_rougeL:
        return None
    return out


def run(ctx: StageContext, cfg: Config) -> StageResult:
    instructions = ctx.instructions(cfg.data)
    params = SamplingParams(n=cfg.n, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                            top_p=cfg.top_p, seed=ctx.seed, logprobs=cfg.logprobs)
    with ResumableJsonlWriter(ctx.output) as writer:
        todo = [r for r in instructions if r["id"] not in writer.done]
        resumed = len(instructions) - len(todo)
        truncated = 0
        if todo:
            model = ctx.resolve(cfg.model)
            prompter = sampler_prompter(cfg.template, model, cfg.sampler.chat_api)
            with owned(build_sampler(model, cfg.sampler)) as sampler, \
                    ctx.progress(len(todo), f"sampling {cfg.n}×") as advance:
                for start in range(0, len(todo), cfg.chunk_size):
                    chunk = todo[start:start + cfg.chunk_size]
                    sent, prompts = zip(*map(prompter, chunk))
                    chunk_params = params.model_copy(update={"seed": params.seed + start + resumed})
                    drawn = sample_diverse(sampler.generate, sent, chunk_params, cfg.diversity)
                    for rec, prompt, result in zip(chunk, prompts, drawn):
                        samples = result.samples
                        out: dict[str, Any] = {**rec, "prompt": prompt, "candidates": [s.text for s in samples],
                                               "lengths": [s.num_tokens for s in samples], "source": cfg.model}
                        if cfg.diversity is not None:
                            out.update(resamples=result.resamples, diverse=result.diverse)
                        if cfg.logprobs:
                            out["logprobs"] = [s.logprob for s in samples]
                        writer.write(out)
                    advance(len(chunk))
            truncated = getattr(sampler, "truncated", 0)
            if truncated:
                ctx.console.print(f"[yellow]warning: {cfg.name}: {truncated} prompts longer than the model's "
                                  f"context were truncated to their last tokens[/yellow]")
        by_id = {r["id"]: r for r in writer.records}
        kept = [p for p in (postprocess(by_id[r["id"]], cfg) for r in instructions) if p is not None]
        writer.finalize(kept)
    n_cands = sum(len(r["candidates"]) for r in kept)
    dropped = len(instructions) - len(kept)
    note = f", resumed {resumed}" if resumed else ""
    counts = {"prompts": len(kept), "candidates": n_cands, "dropped": dropped, "resumed": resumed,
              "truncated": truncated}
    if cfg.diversity is not None:
        sampled = [by_id[r["id"]] for r in instructions]
        rounds = Counter(r["resamples"] for r in sampled)
        counts.update({f"prompts_resampled_{k}x": rounds[k] for k in range(cfg.diversity.max_rounds)})
        counts["not_diverse"] = sum(not r["diverse"] for r in sampled)
        note += (", resamples per prompt " + " ".join(f"{k}:{rounds[k]}" for k in sorted(rounds))
                 + f", {counts['not_diverse']} not diverse after {cfg.diversity.max_rounds} rounds")
    return StageResult(summary=f"{n_cands} candidates for {len(kept)} prompts ({dropped} dropped by filters{note})",
                       counts=counts)


STAGE = Stage(kind="sample", config=Config, output="records", run=run)
