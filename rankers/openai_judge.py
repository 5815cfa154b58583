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
from rankers.contextual import ParseError, build_prompt, parse_ranking, parse_scores, repair_prompt
from rankers.openai_client import CallFailed, ClientSettings, OpenAIClient
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
        messages = [{"role": "user", "content": build_prompt(request.prompt, request.candidates, request.input,
                                                              reference)}]
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "retries": 0}
        texts: list[str] = []
        error = ""
        for attempt in range(cfg.max_repairs + 1):
            try:
                result = self.client.chat(cfg.model, messages, temperature=cfg.temperature,
                                          max_completion_tokens=cfg.max_tokens)
            except CallFailed as err:
                self._count(failed=1)
                return Ranking.failure(f"judge call failed: {err}", raw=texts[-1] if texts else None,
                                       model=cfg.model, repairs=attempt, **usage)
            usage["prompt_tokens"] += result.prompt_tokens
            usage["completion_tokens"] += result.completion_tokens
            usage["retries"] += result.retries
            text = result.texts[0]
            texts.append(text)
            try:
                order, scores = parse_ranking(text, n, request.candidates)
            except ParseError as err:
                error = str(err)
                messages = [*messages, {"role": "assistant", "content": text},
                            {"role": "user", "content": repair_prompt(error, n)}]
                continue
            self._count(judged=1, repairs=attempt)
            return Ranking(order=order, scores=scores or parse_scores(texts[0], n), raw=REPAIR_SEPARATOR.join(texts),
                           metadata={"model": cfg.model, "repairs": attempt, **usage})
        self._count(failed=1, repairs=cfg.max_repairs)
        return Ranking.failure(f"no readable ranking after {len(texts)} answer(s): {error}",
                               raw=REPAIR_SEPARATOR.join(texts),
                               model=cfg.model, repairs=cfg.max_repairs, **usage)


def build(config: Config) -> OpenAIJudge:
    return OpenAIJudge(config)
