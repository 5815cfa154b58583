"""Diversity resampling for contextual ranking: sample again, a little hotter, while the N responses look alike.

A judge can only rank responses that differ; four near-copies teach the ranking loss nothing. LMOps
(``tuna/src/non_interactive_generate.py``: ``generate`` and ``check_duplicity``) handles this at sampling time:
a prompt's N samples fail when the *maximum* pairwise ROUGE-L F-measure (``rouge_score`` with the Porter
stemmer) is >= 0.8; failing prompts are sampled again with the temperature raised by 0.1, for at most 3 rounds
in all (its ``max_trials``); of the rounds tried, the set with the lowest *mean* pairwise ROUGE-L is kept, and
no prompt is ever dropped. One deliberate difference: the round that meets the criterion is kept even when an
earlier failing round had a lower mean (LMOps would keep the failing one). Dropping prompts instead would bias the
data away from short close-ended
instructions, whose correct answers are necessarily alike.

``DiversityResampling`` holds that criterion with LMOps's values as defaults; every part of it (statistic,
stemming, threshold, rounds, temperature step, keep or drop at the end) is a setting, so other criteria can be
tried without code. ``sample_diverse`` runs the loop over any sampler's ``generate``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuna_open.generate.base import Sample, SamplingParams

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer

Generate = Callable[[Sequence[str], SamplingParams], "list[list[Sample]]"]

SEED_STRIDE = 1_000_003
"""Added to the sampling seed per round, so a resample never repeats the round before (seeds of neighbouring
chunks are ``seed + prompt offset`` and stay far below this)."""


class DiversityResampling(BaseModel):
    """When a prompt's samples count as diverse, and what to do until they do (defaults: LMOps's)."""

    model_config = ConfigDict(extra="forbid")

    statistic: Literal["max", "mean"] = "max"
    """Which summary of the pairwise ROUGE-L F-measures is compared with ``threshold`` (LMOps: max)."""
    threshold: float = Field(0.8, gt=0.0, le=1.0)
    """Samples are diverse when the statistic is below this (LMOps: ``rouge_threshold`` 0.8)."""
    stemmer: bool = True
    """ROUGE-L with the Porter stemmer, as LMOps's ``RougeScorer(['rougeL'], use_stemmer=True)``."""
    max_rounds: int = Field(3, ge=1)
    """Sampling rounds per prompt in all, the first included (LMOps: ``max_trials`` 3, i.e. up to 2 resamples)."""
    temperature_step: float = Field(0.1, ge=0.0)
    """Added to the temperature for each further round (LMOps: ``temperature_increment`` 0.1)."""
    on_failure: Literal["keep", "drop"] = "keep"
    """A prompt still not diverse after ``max_rounds``: ``keep`` its most diverse round (lowest mean pairwise
    ROUGE-L, as LMOps) or ``drop`` it from the stage's output."""

    def summary(self, texts: Sequence[str]) -> tuple[float, float]:
        """(the criterion's statistic, the mean pairwise ROUGE-L) of one prompt's samples."""
        scores = pairwise_rougeL(texts, self.stemmer)
        if not scores:  # one sample: nothing to compare, nothing to resample for
            return 0.0, 0.0
        mean = sum(scores) / len(scores)
        return (max(scores) if self.statistic == "max" else mean), mean


@lru_cache(maxsize=2)
def _scorer(stemmer: bool) -> RougeScorer:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stemmer)


def pairwise_rougeL(texts: Sequence[str], stemmer: bool) -> list[float]:
    """ROUGE-L F-measure of every unordered pair of ``texts`` (LMOps scores ``score(texts[i], texts[j])``, i < j)."""
    scorer = _scorer(stemmer)
    return [scorer.score(a, b)["rougeL"].fmeasure for a, b in itertools.combinations(texts, 2)]


@dataclass
class DiverseSamples:
    """One prompt's kept samples and how they were obtained."""

    samples: list[Sample]
    resamples: int
    """Rounds after the first that were sampled for this prompt."""
    diverse: bool
    """Whether the kept samples meet the criterion (False: every round failed; the most diverse is kept)."""
    mean_rougeL: float


def without_criterion(samples: list[Sample]) -> DiverseSamples:
    """The samples of a prompt drawn without a diversity criterion: one round, diverse by definition."""
    return DiverseSamples(samples, 0, True, float("nan"))


def sample_diverse(generate: Generate, prompts: Sequence[str], params: SamplingParams,
                   criterion: DiversityResampling | None) -> list[DiverseSamples]:
    """``generate(prompts, params)``, then resample the prompts whose samples fail ``criterion`` (see the module
    docstring); without a criterion, one round and every prompt counts as diverse."""
    first = generate(prompts, params)
    if criterion is None:
        return [without_criterion(s) for s in first]
    results: list[DiverseSamples] = []
    for samples in first:
        stat, mean = criterion.summary([s.text for s in samples])
        results.append(DiverseSamples(samples, 0, stat < criterion.threshold, mean))
    for round_ in range(1, criterion.max_rounds):
        todo = [i for i, r in enumerate(results) if not r.diverse]
        if not todo:
            break
        hotter = params.model_copy(update={"temperature": params.temperature + round_ * criterion.temperature_step,
                                           "seed": params.seed + round_ * SEED_STRIDE})
        for i, samples in zip(todo, generate([prompts[i] for i in todo], hotter)):
            stat, mean = criterion.summary([s.text for s in samples])
            best = results[i]
            best.resamples = round_
            if mean < best.mean_rougeL:  # LMOps keeps the round with the lowest mean pairwise ROUGE-L
                best.samples, best.mean_rougeL = samples, mean
            if stat < criterion.threshold:
                # Deviation from LMOps, deliberately: LMOps keeps the lowest-mean round even when it is an earlier,
                # failing one; here the round that meets the criterion is what is kept.
                best.samples, best.mean_rougeL, best.diverse = samples, mean, True
    return results
