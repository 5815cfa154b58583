"""Asking a chat model until its answer parses: one re-ask policy for every judge, whatever carries the chat.

A judge's answer may hold no readable verdict. The policy is the same for every judge and every transport
(an HTTP API answering one conversation at a time, an in-process engine answering a batch of them): keep each
answer, parse it, and while ``parse`` raises ValueError and re-asks remain, continue the conversation with the
unreadable answer and ``repair(the parser's complaint)``; when none remain, the exchange ends with "no readable
answer after N answer(s)". ``Conversation.take`` applies it to one answer, so the transport only decides when
and how the next question is sent (``OpenAIClient.converse`` loops one conversation; ``VLLMJudge`` batches the
conversations still waiting). An answer that never came (a failed call, a prompt too long for the engine)
ends the conversation through ``fail``: it is not unreadable, so it is not re-asked.

An answer can be as long as a server cares to make it, and every answer is stored (``Ranking.raw``, so the
records and the viewer) and an unreadable one sent back in the re-ask: both keep at most ``KEPT_CHARS`` of it
(``excerpt``: its start and its end, where the verdict is), ``raw_chars`` in the metadata records the full length,
and a parser's complaint is kept to ``ERROR_CHARS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

Messages = list[dict[str, str]]

REPAIR_SEPARATOR = "\n\n--- repair ---\n\n"
"""Joins a judge's answers in ``Ranking.raw`` when a repair was needed, so the audit trail keeps them all."""
KEPT_CHARS = 32_000
"""Of one answer, the most stored or sent back: several times what a judge writes within its token budget."""
ERROR_CHARS = 500


def excerpt(text: str, limit: int = KEPT_CHARS) -> str:
    """``text`` if it is at most ``limit`` characters, else its first quarter and last three quarters of ``limit``
    around a note of how much was left out (the verdict is at the end of an answer)."""
    if len(text) <= limit:
        return text
    head = limit // 4
    return f"{text[:head]}\n[... {len(text) - limit} characters left out ...]\n{text[len(text) - (limit - head):]}"


@dataclass
class Exchange(Generic[T]):
    """A chat re-asked until its answer parsed: the parsed ``value``, or ``None`` and the ``error``."""

    value: T | None = None
    error: str | None = None
    texts: list[str] = field(default_factory=list)
    """Every answer, first to last."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    repairs: int = 0
    """Re-asks made after unreadable answers."""

    def raw(self) -> str | None:
        """Every answer for ``Ranking.raw`` (``REPAIR_SEPARATOR`` between them, each an ``excerpt``); None when
        none came."""
        return REPAIR_SEPARATOR.join(map(excerpt, self.texts)) or None

    def raw_length(self) -> dict[str, int]:
        """``{"raw_chars": the full length of the answers}`` when ``raw`` had to cut them, else nothing."""
        cut = any(len(text) > KEPT_CHARS for text in self.texts)
        return {"raw_chars": len(REPAIR_SEPARATOR.join(self.texts))} if cut else {}

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "retries": self.retries, "repairs": self.repairs}


@dataclass
class Conversation(Generic[T]):
    """One judging conversation: what to send next (``messages``) and what its answers gave (``exchange``)."""

    messages: Messages
    parse: Callable[[str], T]
    """Reads the verdict from an answer; raises ValueError (in words the model can act on) when it cannot."""
    repair: Callable[[str], str]
    """The re-ask message for a parser complaint."""
    max_repairs: int
    exchange: Exchange[T] = field(default_factory=Exchange)

    def take(self, text: str, prompt_tokens: int = 0, completion_tokens: int = 0, retries: int = 0) -> bool:
        """Record one answer; True when it was unreadable and ``messages`` now hold the re-ask to send."""
        exchange = self.exchange
        exchange.texts.append(text)
        exchange.prompt_tokens += prompt_tokens
        exchange.completion_tokens += completion_tokens
        exchange.retries += retries
        try:
            exchange.value = self.parse(text)
            return False
        except ValueError as err:
            exchange.error = excerpt(str(err), ERROR_CHARS)
        if exchange.repairs < self.max_repairs:
            exchange.repairs += 1
            self.messages = [*self.messages, {"role": "assistant", "content": excerpt(text)},
                             {"role": "user", "content": self.repair(exchange.error)}]
            return True
        exchange.error = f"no readable answer after {len(exchange.texts)} answer(s): {exchange.error}"
        return False

    def fail(self, error: str, retries: int = 0) -> None:
        """End the conversation without an answer (the question could not be asked or the call failed after
        ``retries`` retries)."""
        self.exchange.error = error
        self.exchange.retries += retries
