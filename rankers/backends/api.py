"""What every ranker asking a chat model over an OpenAI-protocol API shares, so each backend states only its judging.

The ``openai`` contextual judge, the ``pairwise`` judge and the ``fastchat`` reviewer all hold one
``OpenAIClient`` (built from their config's ``ClientSettings`` unless a test passes one), ask their configured
``model`` at its ``temperature`` through it (``ask``: the conversation re-asked per ``rankers.llm.conversation``),
count what became of their requests in a ``Tally``, report those counts next to the client's call, token and cost
totals (``stats``), and close the client when closed. Each backend's ``rank`` says what it sends through the
client's pool (``OpenAIClient.map``): one conversation per request, or (pairwise) every pair of every request.
"""

from __future__ import annotations

from typing import Any, Generic, Iterator, Sequence, TypeVar

from rankers.base import Ranking, RankRequest, Tally, in_order
from rankers.llm.client_settings import ClientSettings
from rankers.llm.conversation import Conversation, Exchange
from rankers.llm.openai_client import OpenAIClient

C = TypeVar("C", bound=ClientSettings)
"""A backend's ``Config``: its ``ClientSettings`` plus at least ``model`` and ``temperature``."""
T = TypeVar("T")


class APIRanker(Generic[C]):
    """The plumbing of a ``Ranker`` over one ``OpenAIClient``; a subclass names it, lists its ``outcomes`` and
    defines ``rank``."""

    name: str
    outcomes: tuple[str, ...]
    """The counts ``stats`` reports besides the client's totals (e.g. requests judged, failed, repairs made)."""

    def __init__(self, config: C, client: OpenAIClient | None = None) -> None:
        self.config = config
        self.client = client or OpenAIClient(config)
        self._counts = Tally(*self.outcomes)

    def ask(self, conversation: Conversation[T], max_tokens: int, **params: Any) -> Exchange[T]:
        """The exchange of ``conversation`` with the configured model at its temperature, each answer at most
        ``max_tokens`` tokens (``params``: further API fields, e.g. a decoding constraint)."""
        return self.client.converse(self.config.model, conversation,  # type: ignore[attr-defined]
                                    temperature=self.config.temperature,  # type: ignore[attr-defined]
                                    max_completion_tokens=max_tokens, **params)

    @property
    def stats(self) -> dict[str, Any]:
        """Call/token/cost totals and judging outcomes so far (never the API key)."""
        return {**self.client.meter.as_dict(), **self._counts.as_dict()}

    def close(self) -> None:
        self.client.close()


class PerRequestRanker(APIRanker[C]):
    """An API ranker that judges each request by itself (``rank_one``: one conversation), so its rankings can be
    handed over as each is answered (``rank_as_completed``) for the caller to save at once."""

    def rank_one(self, request: RankRequest) -> Ranking:
        raise NotImplementedError

    def rank_as_completed(self, requests: Sequence[RankRequest]) -> Iterator[tuple[int, Ranking]]:
        return self.client.map_as_completed(self.rank_one, list(requests))

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        return in_order(self.rank_as_completed(requests), len(requests))
