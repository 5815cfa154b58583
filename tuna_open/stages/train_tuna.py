"""Stage ``train_tuna``: learn a ranking with the paper's objective (margin ranking + λ·MLE) or another ranking
term (``train.objective``, ``tuna_open.train.objectives``).

The same stage trains Tuna_p (teacher-likelihood rankings, lr 1e-5 in the paper), Tuna_c (judge rankings,
lr 1e-6) and sequential Tuna (Tuna_c's data, starting from the Tuna_p model): which one is only a matter of
the ``model`` and ``rankings`` it is given.
"""

from __future__ import annotations

from typing import Any, Literal

from tuna_open.errors import UserError
from tuna_open.recipe import recipe_data
from tuna_open.stages.context import StageContext, StageResult
from tuna_open.stages.prompts import prompt_builder
from tuna_open.stages.ranked import RankedInputs, load_ranked
from tuna_open.stages.stage import Stage
from tuna_open.train.preferences import join_rankings
from tuna_open.train.tuna_data import TunaExample
from tuna_open.train.tuna_trainer import TunaTrainConfig, train_tuna


class Config(RankedInputs):
    kind: Literal["train_tuna"]
    sft_data: str | None = None
    """Optional recipe data mixed in as MLE-only examples (the paper regularises with the SFT data)."""
    ties: Literal["mask", "strict"] = "mask"
    """``mask``: pairs the ranker scored equally are left out of the ranking term (they state no preference: a
    verifier's order among equally wrong answers is arbitrary). ``strict``: the order is used as a total order, as
    the paper uses GPT-4's rank list. Rankings without scores are strict either way."""
    mle: Literal["all", "best", "accepted"] = "all"
    """Which candidates the MLE term imitates: ``all`` (the paper's code), ``best`` (the top-ranked, as RRHF does)
    or ``accepted`` (those scored at least ``accept_score``; needs a ranker that gives scores, e.g. a verifier)."""
    accept_score: float = 1.0
    train: TunaTrainConfig = TunaTrainConfig()

    def data_names(self) -> list[str]:
        return recipe_data(self.sft_data)


def ranked_examples(candidates: list[dict[str, Any]], rankings: list[dict[str, Any]], ties: str = "strict",
                    mle: str = "all", accept_score: float = 1.0) -> list[TunaExample]:
    """Join rankings with their candidates (``join_rankings``: each id exactly once) into
    ``{"prompt", "candidates" best→worst, "tiers", "mle"}``, plus ``"scores"`` (best→worst) where the ranker gave
    them.

    Failed rankings are skipped: training on an invented order would teach noise.
    """
    out: list[TunaExample] = []
    for rec, r in join_rankings(candidates, rankings):
        order = r["order"]
        scores = [r["scores"][i] for i in order] if r.get("scores") is not None else None
        if scores is None and mle == "accepted":
            raise UserError(f"ranking {r['id']!r} has no scores: mle: accepted needs a ranker that scores candidates")
        example: TunaExample = {
            "prompt": rec["prompt"], "candidates": [rec["candidates"][i] for i in order],
            "tiers": score_tiers(scores) if scores is not None and ties == "mask" else list(range(len(order))),
            "mle": [mle == "all" or (mle == "best" and rank == 0)
                    or (mle == "accepted" and scores is not None and scores[rank] >= accept_score)
                    for rank in range(len(order))]}
        if scores is not None:
            example["scores"] = [float(x) for x in scores]
        out.append(example)
    return out


def require_scores(cfg: Config, examples: list[TunaExample]) -> None:
    """One UserError line naming the stage when its objective reads scores the rankings do not carry."""
    if cfg.train.ranking_objective().needs_scores and not all("scores" in e for e in examples):
        objective = "margin_scale: score" if cfg.train.objective == "margin" else f"objective {cfg.train.objective}"
        raise UserError(f"stage {cfg.name}: {objective} needs the ranker's scores, but rankings in {cfg.rankings} "
                        "carry only an order; rank with a ranker that scores candidates or an order-only objective")


def score_tiers(scores: list[float]) -> list[int]:
    """Tier ids for best→worst scores: equal scores share a tier, so their pair carries no ranking signal."""
    tiers: list[int] = []
    for i, score in enumerate(scores):
        tiers.append(tiers[-1] if i and score == scores[i - 1] else i)
    return tiers


def run(ctx: StageContext, cfg: Config) -> StageResult:
    model = ctx.resolve(cfg.model)
    examples = ranked_examples(*load_ranked(ctx, cfg, model), ties=cfg.ties, mle=cfg.mle, accept_score=cfg.accept_score)
    if not examples:
        raise UserError(f"stage {cfg.name}: no usable rankings in {cfg.rankings}")
    require_scores(cfg, examples)
    sft = None
    if cfg.sft_data:
        prompt = prompt_builder(cfg.template, model)
        sft = [{"prompt": prompt(r), "response": r["output"]}
               for r in ctx.instructions(cfg.sft_data) if r.get("output")]
    settings = cfg.train.model_copy(update={"seed": ctx.seed})
    result = train_tuna(model, examples, settings, str(ctx.output), sft_examples=sft)
    hist = result["history"]
    last = f", final loss {hist[-1]['loss']:.3f}" if hist else ""
    ranked = sum(_count_ranked_pairs(e["tiers"]) for e in examples)
    counts = {"examples": len(examples), "ranked_pairs": ranked,
              "tied_pairs": sum(len(e["tiers"]) * (len(e["tiers"]) - 1) // 2 for e in examples) - ranked,
              "imitated_candidates": sum(sum(e["mle"]) for e in examples),
              "prompts_with_imitated": sum(any(e["mle"]) for e in examples),
              "resumed_from_step": result["resumed_from_step"]}
    resumed = f", resumed from step {result['resumed_from_step']}" if result["resumed_from_step"] else ""
    return StageResult(summary=f"{len(examples)} ranked prompts, {counts['ranked_pairs']} ranked pairs "
                               f"({counts['tied_pairs']} tied, masked), {counts['imitated_candidates']} imitated "
                               f"candidates{last}{resumed}", counts=counts, history=hist)


def _count_ranked_pairs(tiers: list[int]) -> int:
    """Pairs of candidates in different tiers: the pairs the ranking term learns from."""
    return sum(a != b for i, a in enumerate(tiers) for b in tiers[i + 1:])


# Training: every process of an `accelerate launch` takes part.
STAGE = Stage(kind="train_tuna", config=Config, output="model", run=run, all_processes=True)
