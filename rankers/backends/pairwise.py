"""Backend ``pairwise``: a chat judge compares candidates two at a time; a tournament turns verdicts into an order.

Every pair is judged in both presentation orders (A/B then B/A), which cancels the judge's preference for a
position and measures it: ``pair_consistency`` is the fraction of pairs whose two verdicts agree. The win matrix
is aggregated by Copeland (pairs won) or Bradley–Terry (strengths fitted to all verdicts), per ``method``.
N candidates cost N·(N-1) calls, so this backend suits small N or a strong need for robustness; the
contextual ``openai`` judge sees all candidates in one call.

A request fails when some pair got no readable verdict in either order: ranking it would mean guessing.
"""

from __future__ import annotations

import re
from itertools import permutations
from typing import Any, Iterator, Literal, Sequence

from pydantic import Field, model_validator

from rankers.aggregate import bradley_terry, copeland
from rankers.backends.api import APIRanker
from rankers.base import Ranking, RankRequest, in_order
from rankers.config import RankerConfig
from rankers.judging.parsing import MARK
from rankers.judging.settings import JudgeSettings
from rankers.llm.client_settings import ClientSettings
from rankers.llm.conversation import Conversation, Exchange

Verdict = Literal["A", "B", "tie"]
_VERDICT = re.compile(rf"(?im)(?<![\w])verdict{MARK}[:=]{MARK}\[?\s*+(?:response\s++)?(A|B|tie)\b")
_SWAPPED: dict[str, str] = {"A": "B", "B": "A", "tie": "tie"}
"""The same verdict seen from the other presentation order."""


class Config(JudgeSettings, RankerConfig, ClientSettings):
    """The judging keys of the contextual judges (``JudgeSettings``), with a smaller completion budget."""

    max_tokens: int = Field(default=512, ge=1)
    """A verdict on two responses needs a short justification, not the contextual judge's per-response scores."""
    method: Literal["copeland", "bradley_terry"] = "copeland"

    @model_validator(mode="after")
    def _no_rank_line(self) -> "Config":
        if self.constrain != "none":
            raise ValueError(f"constrain: {self.constrain} is for the contextual judges (openai, vllm); the pairwise "
                             f"judge answers 'verdict:' lines")
        return self


def pair_prompt(instruction: str, a: str, b: str, input: str = "", reference: str | None = None) -> str:
    task = instruction if not input else f"{instruction}\n\n{input}"
    reference_block = f"\n\n### Reference answer (may help, not necessarily perfect)\n{reference}" if reference else ""
    return f"""You are a careful, impartial judge. Which response follows the instruction better, A or B? \
Consider helpfulness, relevance, accuracy and level of detail; the order of the responses and their length \
must not influence you.

### Instruction
{task}

### Response A
{a}

### Response B
{b}{reference_block}

Explain your judgement briefly, then finish with one line: "verdict: A", "verdict: B" or "verdict: tie"."""


def parse_verdict(text: str) -> Verdict:
    """The last ``verdict:`` line, or an answer that is only ``A``, ``B`` or ``tie``; ValueError otherwise."""
    matches = _VERDICT.findall(text)
    token = matches[-1] if matches else text.strip().strip("*_`.\"' ")
    if token.upper() in ("A", "B"):
        return token.upper()  # type: ignore[return-value]
    if token.lower() == "tie":
        return "tie"
    raise ValueError("no 'verdict: A', 'verdict: B' or 'verdict: tie' line was found")


def repair_verdict(error: str) -> str:
    return f"I could not read your verdict: {error}. Reply with one line only: verdict: A, verdict: B or verdict: tie."


class PairwiseJudge(APIRanker[Config]):
    """A ``Ranker`` running a round-robin of both-order pairwise comparisons per request."""

    name = "pairwise"
    outcomes = ("comparisons", "failed_comparisons", "consistent_pairs", "pairs_judged_twice")

    def _compare(self, job: tuple[RankRequest, int, int]) -> Exchange[Verdict]:
        request, i, j = job
        cfg = self.config
        prompt = pair_prompt(request.prompt, request.candidates[i], request.candidates[j], request.input,
                             request.reference if cfg.show_reference else None)
        return self.ask(Conversation([{"role": "user", "content": prompt}], parse=parse_verdict, repair=repair_verdict,
                                     max_repairs=cfg.max_repairs), cfg.max_tokens)

    def rank_as_completed(self, requests: Sequence[RankRequest]) -> Iterator[tuple[int, Ranking]]:
        """Each request's ranking as soon as its last comparison is answered, for the caller to save at once.
        Comparisons go out request by request, so a Ctrl-C or a crash re-asks only the pairs of the few requests
        whose comparisons were in flight, never those of a batch's finished requests."""
        pairs = [list(permutations(range(len(r.candidates)), 2)) for r in requests]
        jobs = [(k, i, j) for k, request_pairs in enumerate(pairs) for i, j in request_pairs]
        verdicts: list[dict[tuple[int, int], Exchange[Verdict]]] = [{} for _ in requests]
        for k, request_pairs in enumerate(pairs):
            if not request_pairs:  # one candidate: nothing to ask
                yield k, self._tournament(requests[k], {})
        for index, exchange in self.client.map_as_completed(self._compare, [(requests[k], i, j) for k, i, j in jobs]):
            k, i, j = jobs[index]
            verdicts[k][(i, j)] = exchange
            if len(verdicts[k]) == len(pairs[k]):
                yield k, self._tournament(requests[k], {pair: verdicts[k][pair] for pair in pairs[k]})

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        return in_order(self.rank_as_completed(requests), len(requests))

    def _tournament(self, request: RankRequest, verdicts: dict[tuple[int, int], Exchange[Verdict]]) -> Ranking:
        n = len(request.candidates)
        wins = [[0.0] * n for _ in range(n)]
        outcome: dict[tuple[int, int], Verdict] = {}
        for (i, j), ex in verdicts.items():  # i was shown as A, j as B
            if ex.value is None:
                continue
            outcome[(i, j)] = ex.value
            if ex.value == "tie":
                wins[i][j] += 0.5
                wins[j][i] += 0.5
            else:
                winner, loser = (i, j) if ex.value == "A" else (j, i)
                wins[winner][loser] += 1.0
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        both = [(i, j) for i, j in pairs if (i, j) in outcome and (j, i) in outcome]
        consistent = sum(1 for i, j in both if _SWAPPED[outcome[(i, j)]] == outcome[(j, i)])
        failed = len(verdicts) - len(outcome)
        self._counts.add(comparisons=len(verdicts), failed_comparisons=failed, consistent_pairs=consistent,
                         pairs_judged_twice=len(both))
        usage = {k: sum(ex.usage()[k] for ex in verdicts.values())
                 for k in ("prompt_tokens", "completion_tokens", "retries", "repairs")}
        metadata: dict[str, Any] = {"model": self.config.model, "comparisons": len(verdicts), "failed_comparisons":
                                    failed, "pair_consistency": consistent / len(both) if both else None,
                                    "wins": wins, **usage}
        unjudged = [p for p in pairs if p not in outcome and p[::-1] not in outcome]
        if unjudged:
            i, j = unjudged[0]
            return Ranking.failure(f"{len(unjudged)} pair(s) got no readable verdict, e.g. ({i}, {j}): "
                                   f"{verdicts[(i, j)].error}", raw=verdicts[(i, j)].raw(),
                                   **metadata)
        scores = copeland(wins) if self.config.method == "copeland" else bradley_terry(wins)
        # Copeland ties are common; total wins break them, then the candidate index.
        order = sorted(range(n), key=lambda c: (-scores[c], -sum(wins[c]), c))
        return Ranking(order=order, scores=scores, metadata=metadata)

    @property
    def stats(self) -> dict[str, Any]:
        """The API rankers' stats, with the pairs' agreement across presentation orders as one fraction."""
        stats = super().stats
        pairs = stats.pop("pairs_judged_twice")
        consistent = stats.pop("consistent_pairs")
        return {**stats, "pair_consistency": consistent / pairs if pairs else None}


def build(config: Config) -> PairwiseJudge:
    return PairwiseJudge(config)
