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
from typing import Any, Iterable, Literal, Sequence

from pydantic import Field, model_validator

from rankers.base import owned
from rankers.llm.openai_client import CallFailed
from rankers.llm.templates import TemplateName
from tuna_open.data.jsonl import ResumableJsonlWriter
from tuna_open.errors import UserError
from tuna_open.generate import SamplerChoice, build_sampler
from tuna_open.generate.base import SamplingParams
from tuna_open.generate.diversity import (
    DiverseSamples,
    DiversityResampling,
    pairwise_rougeL,
    sample_diverse,
    without_criterion,
)
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
    n: int = Field(default=4, ge=1, le=1024)
    """Candidates per prompt. Bounded so a typo (``n: 40000``) is one line at ``validate``, not memory exhausted
    mid-sampling; the paper uses 4, and a judge ranks all of a prompt's candidates in one prompt."""
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


def _consecutive(records: list[dict[str, Any]], position: dict[Any, int], size: int) -> list[list[dict[str, Any]]]:
    """``records`` in chunks of at most ``size`` whose positions in the data are consecutive.

    Why: a chunk is sampled with the seed of its first position (each prompt then gets the seed of its own
    position, ``seed + i``), so a prompt's samples do not depend on what an interrupted run had already saved, which
    need not be a prefix (samples are saved as they are answered)."""
    chunks: list[list[dict[str, Any]]] = []
    for rec in records:
        last = chunks[-1] if chunks else None
        if last is not None and len(last) < size and position[rec["id"]] == position[last[-1]["id"]] + 1:
            last.append(rec)
        else:
            chunks.append([rec])
    return chunks


def _draw(sampler: Any, prompts: Sequence[Any], params: SamplingParams,
          criterion: DiversityResampling | None) -> Iterable[tuple[int, DiverseSamples]]:
    """(index, samples) of a chunk: each as it is answered from a sampler that hands them over so
    (``generate_as_completed``, an API) when no diversity criterion needs the chunk whole, else all at the end.

    Why: samples from an API are paid for; the stage saves each at once, so a crash or a Ctrl-C keeps them."""
    streaming = getattr(sampler, "generate_as_completed", None)
    if criterion is None and streaming is not None:
        return ((i, without_criterion(samples)) for i, samples in streaming(prompts, params))
    return enumerate(sample_diverse(sampler.generate, prompts, params, criterion))


def run(ctx: StageContext, cfg: Config) -> StageResult:
    instructions = ctx.instructions(cfg.data)
    params = SamplingParams(n=cfg.n, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                            top_p=cfg.top_p, seed=ctx.seed, logprobs=cfg.logprobs)
    position = {r["id"]: p for p, r in enumerate(instructions)}
    with ResumableJsonlWriter(ctx.output) as writer:
        todo = [r for r in instructions if r["id"] not in writer.done]
        resumed = len(instructions) - len(todo)
        truncated = 0
        if todo:
            model = ctx.resolve(cfg.model)
            prompter = sampler_prompter(cfg.template, model, cfg.sampler.chat_api)
            try:
                with owned(build_sampler(model, cfg.sampler)) as sampler, \
                        ctx.progress(len(todo), f"sampling {cfg.n}×") as advance:
                    for run_ in _consecutive(todo, position, cfg.chunk_size):
                        sent, prompts = zip(*map(prompter, run_))
                        run_params = params.model_copy(update={"seed": params.seed + position[run_[0]["id"]]})
                        for i, result in _draw(sampler, sent, run_params, cfg.diversity):
                            rec, prompt, samples = run_[i], prompts[i], result.samples
                            out: dict[str, Any] = {**rec, "prompt": prompt, "candidates": [s.text for s in samples],
                                                   "lengths": [s.num_tokens for s in samples], "source": cfg.model}
                            if cfg.diversity is not None:
                                out.update(resamples=result.resamples, diverse=result.diverse)
                            if cfg.logprobs:
                                out["logprobs"] = [s.logprob for s in samples]
                            writer.write(out)
                            advance(1)
            except CallFailed as err:  # the samples answered so far are saved: the next run goes on from them
                raise UserError(f"stage {cfg.name}: sampling stopped: {err}; the {len(writer.records)} prompts sampled "
                                f"so far are kept, run the same command again to go on") from None
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
