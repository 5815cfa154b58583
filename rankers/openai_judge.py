"""Backend ``openai``: the contextual-ranking judge (Tuna_c) over any OpenAI-protocol chat API.

One chat request per ranking request, ``max_concurrency`` in flight. An answer without a readable ranking is
re-asked with a repair prompt (the parser's complaint plus the exact format wanted) up to ``max_repairs``
times; after that the request becomes a ``Ranking.failure`` carrying the raw answer and the reason. An order is
never invented and a failure never dropped: the rank stage counts failures against its threshold.
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

from pydantic import Field

from rankers.base import Ranking, RankRequest
from rankers.contextual import build_prompt, parse_ranking, parse_scores, repair_prompt
from rankers.openai_client import ClientSettings, OpenAIClient
from rankers.registry import RankerConfig

REPAIR_SEPARATOR = "\n\n--- repair ---\n\n"
"""Joins a judge's answers in ``Ranking.raw`` when a repair was needed, so the audit trail keeps them all."""


class Config(RankerConfig, ClientSettings):
    model: str
    """The judge model's name as the server knows it (``gpt-4-0613``, a vLLM ``--served-model-name``)."""
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=2048, ge=1)
    """Completion budget: the judge writes its own answer and a justification per response before ranking."""
    max_repairs: int = Field(default=1, ge=0)
    """Re-asks after an unreadable answer before the request is recorded as failed."""
    show_reference: bool = False
    """Show the request's reference answer (the dataset's output) to the judge."""


class OpenAIJudge:
    """A ``Ranker`` asking a chat model to rank all candidates of a request at once."""

    name = "openai"

    def __init__(self, config: Config, client: OpenAIClient | None = None) -> None:
        self.config = config
        self.client = client or OpenAIClient(config)
        self._lock = threading.Lock()
        self._counts = {"judged": 0, "failed": 0, "repairs": 0}

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        return self.client.map(self._judge, list(requests))

    @property
    def stats(self) -> dict[str, Any]:
        """Call/token/cost totals and judging outcomes so far (never the API key)."""
        with self._lock:
            return {**self.client.meter.as_dict(), **self._counts}

    def close(self) -> None:
        self.client.close()

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for key, value in deltas.items():
                self._counts[key] += value

    def _judge(self, request: RankRequest) -> Ranking:
        n = len(request.candidates)
        if n <= 1:  # nothing to compare; no call
            return Ranking(order=list(range(n)), metadata={"judged": False})
        cfg = self.config
        reference = request.reference if cfg.show_reference else None
        prompt = build_prompt(request.prompt, request.candidates, request.input, reference)
        exchange = self.client.chat_parsed(
            cfg.model, [{"role": "user", "content": prompt}],
            parse=lambda text: parse_ranking(text, n, request.candidates),
            repair=lambda error: repair_prompt(error, n), max_repairs=cfg.max_repairs,
            temperature=cfg.temperature, max_completion_tokens=cfg.max_tokens)
        raw = REPAIR_SEPARATOR.join(exchange.texts) or None
        metadata = {"model": cfg.model, **exchange.usage()}
        if exchange.value is None:
            self._count(failed=1, repairs=exchange.repairs)
            return Ranking.failure(exchange.error or "no answer", raw=raw, **metadata)
        self._count(judged=1, repairs=exchange.repairs)
        order, scores = exchange.value
        # A repaired answer is often the rank line alone; the first answer's scores line still holds.
        return Ranking(order=order, scores=scores or parse_scores(exchange.texts[0], n), raw=raw, metadata=metadata)


def build(config: Config) -> OpenAIJudge:
    return OpenAIJudge(config)
