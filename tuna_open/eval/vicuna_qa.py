"""Vicuna QA: 80 open questions; two models' answers compared by a judge, reported as win / tie / loss.

The judge is any ``rankers.Ranker``; each comparison is one request ranking the two answers, the question's
category in its metadata. Two kinds of judge are meant here, chosen by the eval stage's ``ranker`` block:

- FastChat's reviewer (``backend: fastchat``, the paper's Vicuna QA setup): the general, coding or math
  reviewer prompt by category, a 1-10 score for each of the two assistants; the higher score wins that order,
  equal scores tie. The mean scores are reported too (FastChat's tables compare score totals).
- a ranking judge (``openai`` / ``vllm`` contextual judges, or any other backend): its order, ties from equal
  scores.
 LLM judges favour a position, so
every question is judged in both presentation orders, ``[a, b]`` and ``[b, a]``: ``a`` wins only if it is
preferred in both, loses only if ``b`` is preferred in both, and anything else is a tie, as is a judgement
whose scores for the two answers are equal. Identical answers tie without a call. A failed judgement (no
readable ranking after the judge's own repairs) is counted as ``failed`` for that question, never turned into
a verdict, and rates are taken over the judged questions only.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field

from rankers.base import Ranker, Ranking, RankRequest
from rankers.duplicates import duplicate_key
from rankers.llm.templates import TemplateName, format_prompt
from tuna_open.data.jsonl import read_jsonl

OUTCOMES = ("win", "tie", "loss")


class VicunaQAConfig(BaseModel):
    """The questions, optional reference answers shown to the judge, and who is compared with whom."""

    model_config = ConfigDict(extra="forbid")

    questions: str
    """FastChat's ``question.jsonl``: ``question_id``, ``category`` and ``turns`` (``llm_judge``'s vicuna_bench) or
    ``text`` (``fastchat/eval/table``, the file the paper's reviews used)."""
    references: str | None = None
    """FastChat reference answers (``question_id``, ``choices[0].turns``), shown to a judge that shows references."""
    baseline: str | None = None
    """Compare every model with this one; default: every pair of models."""
    limit: int | None = Field(default=None, ge=1)
    """Only the first questions (default: all 80)."""
    template: TemplateName = "alpaca"
    """How a question reaches the answering models (a ``rankers.llm.templates`` name)."""


@dataclass(frozen=True)
class Question:
    id: str
    category: str
    text: str
    reference: str | None = None


def load_questions(path: str | Path, references: str | Path | None = None, limit: int | None = None) -> list[Question]:
    """The questions (first turn), with the reference answer of each question that has one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: Vicuna QA question file not found")
    refs: dict[str, str] = {}
    if references is not None:
        ref_path = Path(references)
        if not ref_path.is_file():
            raise ValueError(f"{ref_path}: reference answer file not found")
        try:
            refs = {str(r["question_id"]): r["choices"][0]["turns"][0] for r in read_jsonl(ref_path)}
        except (KeyError, IndexError, TypeError) as err:
            raise ValueError(f"{ref_path}: not a FastChat reference answer file (missing or malformed {err})") from None
    try:
        questions = [Question(str(q["question_id"]), str(q["category"]), q["turns"][0] if "turns" in q else q["text"],
                              refs.get(str(q["question_id"]))) for q in read_jsonl(path)]
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(f"{path}: not a Vicuna QA question file (missing or malformed {err})") from None
    return questions[:limit]


def question_prompts(questions: Sequence[Question], template: str = "alpaca") -> list[str]:
    """The prompts each model answers (greedily) before the comparison."""
    return [format_prompt(q.text, "", template) for q in questions]


@dataclass
class PairResult:
    """``model`` against ``opponent``: counts, rates over judged questions (0-100), per category, and every verdict."""

    model: str
    opponent: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*OUTCOMES, "failed"), 0))
    by_category: dict[str, dict[str, int]] = field(default_factory=dict)
    judgements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def judged(self) -> int:
        return sum(self.counts[o] for o in OUTCOMES)

    def rate(self, outcome: str) -> float | None:
        return 100.0 * self.counts[outcome] / self.judged if self.judged else None

    def mean_scores(self) -> tuple[float, float] | None:
        """(model, opponent) mean judge score over every scored presentation; None for a judge without scores."""
        pairs = [s for j in self.judgements for s in j.get("scores", [])]
        if not pairs:
            return None
        return sum(p[0] for p in pairs) / len(pairs), sum(p[1] for p in pairs) / len(pairs)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "judged": self.judged, **{f"{o}_rate": self.rate(o) for o in OUTCOMES},
                "mean_scores": self.mean_scores()}


def _pairs(models: Sequence[str], baseline: str | None) -> list[tuple[str, str]]:
    if baseline is None:
        return list(itertools.combinations(models, 2))
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} has no answers (models: {', '.join(models)})")
    return [(m, baseline) for m in models if m != baseline]


def _preferred(ranking: Ranking) -> int | str | None:
    """Index (0/1) of the answer the judge put first, ``"tie"`` on equal scores, None if it gave no verdict."""
    if ranking.failed or sorted(ranking.order) != [0, 1]:
        return None
    if ranking.scores is not None and len(ranking.scores) == 2 and ranking.scores[0] == ranking.scores[1]:
        return "tie"
    return ranking.order[0]


def _outcome(forward: Ranking, backward: Ranking) -> str:
    """Combine the verdicts on ``[a, b]`` and ``[b, a]`` into a's win, tie, loss, or failed."""
    first, second = _preferred(forward), _preferred(backward)
    if first is None or second is None:
        return "failed"
    if first == 0 and second == 1:
        return "win"
    if first == 1 and second == 0:
        return "loss"
    return "tie"


def _error(ranking: Ranking) -> str | None:
    if ranking.failed:
        return ranking.error or "failed"
    if sorted(ranking.order) != [0, 1]:
        return f"judge returned order {ranking.order} for two answers"
    return None


def _scores(forward: Ranking, backward: Ranking) -> list[list[float]]:
    """The judge's (a, b) scores in each presentation that has them: ``[b, a]``'s turned back to (a, b)."""
    out = []
    for ranking, flip in ((forward, False), (backward, True)):
        if not ranking.failed and ranking.scores is not None and len(ranking.scores) == 2:
            out.append(list(reversed(ranking.scores)) if flip else list(ranking.scores))
    return out


def compare(questions: Sequence[Question], answers: dict[str, list[str]], judge: Ranker,
            baseline: str | None = None) -> list[PairResult]:
    """Judge every model pair (or every model against ``baseline``) on every question, in both orders.

    All requests go to the judge in one ``rank`` call, so a concurrent backend keeps its connections busy.
    """
    for name, texts in answers.items():
        if len(texts) != len(questions):
            raise ValueError(f"model {name!r} has {len(texts)} answers for {len(questions)} questions")
    pairs = _pairs(list(answers), baseline)
    requests: list[RankRequest] = []
    slots: dict[tuple[int, int], tuple[int, int]] = {}  # (pair, question) -> indices of its two requests
    for p, (a, b) in enumerate(pairs):
        for q, question in enumerate(questions):
            ans_a, ans_b = answers[a][q], answers[b][q]
            if duplicate_key(ans_a) == duplicate_key(ans_b):
                continue
            meta = {"question_id": question.id, "category": question.category, "pair": [a, b]}
            slots[p, q] = (len(requests), len(requests) + 1)
            requests.append(RankRequest(question.text, [ans_a, ans_b], id=f"{question.id}:{a}|{b}:ab",
                                        reference=question.reference, metadata={**meta, "order": [a, b]}))
            requests.append(RankRequest(question.text, [ans_b, ans_a], id=f"{question.id}:{a}|{b}:ba",
                                        reference=question.reference, metadata={**meta, "order": [b, a]}))
    rankings = judge.rank(requests) if requests else []
    if len(rankings) != len(requests):
        raise ValueError(f"judge {judge.name!r} returned {len(rankings)} rankings for {len(requests)} requests")
    results = []
    for p, (a, b) in enumerate(pairs):
        result = PairResult(a, b)
        per_category: dict[str, Counter[str]] = defaultdict(Counter)
        for q, question in enumerate(questions):
            if (p, q) in slots:
                forward, backward = (rankings[i] for i in slots[p, q])
                outcome = _outcome(forward, backward)
                record = {"question_id": question.id, "category": question.category, "outcome": outcome,
                          "verdicts": [_preferred(forward), _preferred(backward)],
                          "errors": [e for e in (_error(forward), _error(backward)) if e],
                          "scores": _scores(forward, backward)}
            else:
                outcome = "tie"
                record = {"question_id": question.id, "category": question.category, "outcome": outcome,
                          "verdicts": [], "errors": [], "note": "identical answers"}
            result.counts[outcome] += 1
            per_category[question.category][outcome] += 1
            result.judgements.append(record)
        result.by_category = {c: {o: n[o] for o in (*OUTCOMES, "failed")} for c, n in sorted(per_category.items())}
        results.append(result)
    return results


def summarize(results: Sequence[PairResult]) -> dict[str, dict[str, float]]:
    """Per model, its win/tie/loss rates (0-100) and failed count against each opponent, for a run report."""
    flat: dict[str, dict[str, float]] = defaultdict(dict)
    for r in results:
        for model, opponent, win, loss in ((r.model, r.opponent, "win", "loss"), (r.opponent, r.model, "loss", "win")):
            for name, outcome in (("win", win), ("tie", "tie"), ("loss", loss)):
                rate = r.rate(outcome)
                if rate is not None:
                    flat[model][f"vicuna_{name}_rate_vs_{opponent}"] = rate
            flat[model][f"vicuna_failed_vs_{opponent}"] = float(r.counts["failed"])
        means = r.mean_scores()
        if means is not None:
            flat[r.model][f"vicuna_score_vs_{r.opponent}"], flat[r.opponent][f"vicuna_score_vs_{r.model}"] = means
    return dict(flat)


def plot_win_tie_loss(results: Sequence[PairResult], path: str | Path) -> Path:
    """Stacked horizontal bars, one per pair: win / tie / loss shares of the judged questions, with counts."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg and touches no global pyplot state

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(8, 0.6 * len(results) + 1.4))
    ax = fig.add_subplot()
    colors = {"win": "#4c9a2a", "tie": "#b0b0b0", "loss": "#c0392b"}
    labels = [f"{r.model} vs {r.opponent}" + (f" ({r.counts['failed']} failed)" if r.counts["failed"] else "")
              for r in results]
    left = [0.0] * len(results)
    for outcome in OUTCOMES:
        widths = [r.rate(outcome) or 0.0 for r in results]
        bars = ax.barh(labels, widths, left=left, color=colors[outcome], label=outcome)
        ax.bar_label(bars, labels=[str(r.counts[outcome]) if w else "" for r, w in zip(results, widths)],
                     label_type="center")
        left = [x + w for x, w in zip(left, widths)]
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of judged questions")
    ax.invert_yaxis()
    ax.legend(ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    return path
