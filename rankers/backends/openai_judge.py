"""Backend ``openai``: the contextual-ranking judge (Tuna_c) over any OpenAI-protocol chat API.

One chat request per ranking request, ``max_concurrency`` in flight. An answer without a readable ranking is
re-asked with a repair prompt (the parser's complaint plus the exact format wanted) up to ``max_repairs``
times; after that the request becomes a ``Ranking.failure`` carrying the raw answer and the reason. An order is
never invented and a failure never dropped: the rank stage counts failures against its threshold.

``constrain: rank_line`` sends the rank-line regex in the request body as vLLM's OpenAI-compatible server reads
it, ``"structured_outputs": {"regex": ...}`` (vLLM 0.27.1; the older ``guided_regex`` field is gone, and an
unknown field is ignored, not refused). So it needs a vLLM server or one that takes that field: api.openai.com is
refused when the config is validated, and an answer that is not a bare rank line (a server that ignored the
field) stops the ranking with a ``RankerConfigError`` instead of being counted as the judge's failure.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from pydantic import model_validator

from rankers.backends.api import PerRequestRanker
from rankers.base import Ranking, RankRequest
from rankers.config import RankerConfig, RankerConfigError
from rankers.judging.contextual import judge_conversation, ranking_from_exchange, unjudged
from rankers.judging.settings import JudgeSettings
from rankers.llm.client_settings import OPENAI_HOST, ClientSettings, redact_url
from rankers.llm.conversation import Exchange


class Config(JudgeSettings, RankerConfig, ClientSettings):
    model: str
    """The judge model's name as the server knows it (``gpt-4-0613``, a vLLM ``--served-model-name``)."""

    @model_validator(mode="after")
    def _constraint_needs_vllm(self) -> "Config":
        if self.constrain != "none" and any(url is None or urlparse(url).hostname == OPENAI_HOST
                                            for url in self.urls()):
            raise ValueError(f"constrain: {self.constrain} needs a vLLM server (or one that takes vLLM's "
                             f"structured_outputs regex) as base_url; {OPENAI_HOST} does not")
        return self


class OpenAIJudge(PerRequestRanker[Config]):
    """A ``Ranker`` asking a chat model to rank all candidates of a request at once."""

    name = "openai"
    outcomes = ("judged", "failed", "repairs")

    def rank_one(self, request: RankRequest) -> Ranking:
        skipped = unjudged(request)
        if skipped is not None:  # nothing to compare; no call
            return skipped
        cfg = self.config
        n = len(request.candidates)
        regex = cfg.decoding_regex(n)
        constraint = {} if regex is None else {"extra_body": {"structured_outputs": {"regex": regex}}}
        exchange = self.ask(judge_conversation(request, cfg), cfg.completion_tokens(n), **constraint)
        if regex is not None:
            self._check_constrained(exchange, regex)
        ranking = ranking_from_exchange(exchange, n, cfg)
        self._counts.add(**{"failed" if ranking.failed else "judged": 1}, repairs=exchange.repairs)
        return ranking

    def _check_constrained(self, exchange: Exchange, regex: str) -> None:
        """Raise if an answer is not the bare rank line the constraint allows: the server ignored it."""
        for text in exchange.texts:
            if not re.fullmatch(regex, text.strip()):
                raise RankerConfigError(
                    f"constrain: rank_line was not applied by {redact_url(str(self.config.base_url))}: the judge "
                    f"answered {' '.join(text.split())[:80]!r}, not a bare 'rank: [...]' line (it needs a vLLM "
                    f"server, which takes the regex in the request's structured_outputs field)")


def build(config: Config) -> OpenAIJudge:
    return OpenAIJudge(config)
