"""Backend ``openai``: the contextual-ranking judge (Tuna_c) over any OpenAI-protocol chat API.

One chat request per ranking request, ``max_concurrency`` in flight. An answer without a readable ranking is
re-asked with a repair prompt (the parser's complaint plus the exact format wanted) up to ``max_repairs``
times; after that the request becomes a ``Ranking.failure`` carrying the raw answer and the reason. An order is
never invented and a failure never dropped: the rank stage counts failures against its threshold.
"""

from __future__ import annotations

from typing import Any, Sequence

from rankers.base import Ranking, RankRequest, Tally
from rankers.contextual import (
    REPAIR_SEPARATOR,  # noqa: F401  (re-exported: it was defined here)
    JudgeSettings,
    judge_conversation,
    ranking_from_exchange,
    unjudged,
)
from rankers.openai_client import ClientSettings, OpenAIClient
from rankers.registry import RankerConfig


class Config(JudgeSettings, RankerConfig, ClientSettings):
    model: str
    """The judge model's name as the server knows it (``gpt-4-0613``, a vLLM ``--served-model-name``)."""


class OpenAIJudge:
    """A ``Ranker`` asking a chat model to rank all candidates of a request at once."""

    name = "openai"

    def __init__(self, config: Config, client: OpenAIClient | None = None) -> None:
        self.config = config
        self.client = client or OpenAIClient(config)
        self._counts = Tally("judged", "failed", "repairs")

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        return self.client.map(self._judge, list(requests))

    @property
    def stats(self) -> dict[str, Any]:
        """Call/token/cost totals and judging outcomes so far (never the API key)."""
        return {**self.client.meter.as_dict(), **self._counts.as_dict()}

    def close(self) -> None:
        self.client.close()

    def _judge(self, request: RankRequest) -> Ranking:
        skipped = unjudged(request)
        if skipped is not None:  # nothing to compare; no call
            return skipped
        cfg = self.config
        exchange = self.client.converse(cfg.model, judge_conversation(request, cfg), temperature=cfg.temperature,
                                        max_completion_tokens=cfg.max_tokens)
        ranking = ranking_from_exchange(exchange, len(request.candidates), cfg)
        self._counts.add(**{"failed" if ranking.failed else "judged": 1}, repairs=exchange.repairs)
        return ranking


def build(config: Config) -> OpenAIJudge:
    return OpenAIJudge(config)
