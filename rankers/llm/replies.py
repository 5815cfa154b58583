"""What a server sends back, read as untrusted: the texts and token counts of a chat reply, and the HTTP transport
that bounds a reply's size and an attempt's wall-clock time (``rankers.llm.openai_client`` explains the policy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from importlib import import_module
from typing import Any, Iterator

MAX_REPLY_BYTES = 8 * 2 ** 20
"""The largest reply body read from the wire. A judge's answer is kilobytes; a sampler's ``n`` samples with
log-probs a few megabytes; anything larger is a broken or hostile server, not worth the memory or the disk."""


class BadReply(Exception):
    """A reply that is not the one asked for (no choices, no content, not JSON, too large); one-line message."""


@dataclass
class ChatResult:
    texts: list[str]
    prompt_tokens: int
    completion_tokens: int
    retries: int = 0


def _count(value: Any) -> int:
    """A token count as the server wrote it, or 0 when it is not a count (a hostile server's usage block)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def reply_tokens(response: Any) -> tuple[int, int]:
    """(prompt, completion) tokens of a reply's ``usage`` block; 0 where it has none."""
    usage = getattr(response, "usage", None)
    return _count(getattr(usage, "prompt_tokens", 0)), _count(getattr(usage, "completion_tokens", 0))


def read_chat(response: Any) -> ChatResult:
    """The texts of a chat completion's choices, checked: a reply without choices, or a choice without a string
    content (``{"error": ...}`` with status 200, ``choices: []``, a null content) is a ``BadReply``."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        error = getattr(response, "error", None)
        detail = f": {one_line(str(error.get('message') if isinstance(error, dict) else error))}" if error else ""
        raise BadReply(f"the reply holds no choices{detail}")
    texts = [getattr(getattr(choice, "message", None), "content", None) for choice in choices]
    if not all(isinstance(text, str) for text in texts):
        raise BadReply("a choice of the reply has no text content")
    return ChatResult(texts, *reply_tokens(response))


@lru_cache(maxsize=None)
def bounded_transport() -> type:
    """``BoundedTransport(limit, seconds)``: the SDK's HTTP transport with the bounds a per-read timeout lacks.

    A reply body is refused once it is over ``limit`` bytes (or announces it), and an attempt is abandoned
    ``seconds`` after it started even if bytes keep trickling in. It asks for uncompressed replies and refuses
    compressed ones, whose decoded size the wire size does not bound. (Response headers are still bounded only by
    the per-read timeout and the HTTP parser's size limit.) Built on the HTTP library the installed SDK is built
    on (``httpx``, ``httpx2`` in newer SDKs), hence a class made on first use.
    """
    import openai

    http = import_module(openai.DefaultHttpxClient.__mro__[1].__module__.split(".")[0])

    class BoundedStream(http.SyncByteStream):  # type: ignore[misc, name-defined]
        """A reply body read under the size limit and the attempt's deadline, checked at every chunk."""

        def __init__(self, inner: Any, limit: int, deadline: float, request: Any) -> None:
            self._inner = inner
            self._limit = limit
            self._deadline = deadline
            self._request = request

        def __iter__(self) -> Iterator[bytes]:
            size = 0
            for chunk in self._inner:
                size += len(chunk)
                if size > self._limit:
                    raise BadReply(f"the reply is over {self._limit} bytes")
                if time.monotonic() > self._deadline:
                    raise http.ReadTimeout("the reply did not arrive within the deadline", request=self._request)
                yield chunk

        def close(self) -> None:
            self._inner.close()

    class BoundedTransport(http.BaseTransport):  # type: ignore[misc, name-defined]
        def __init__(self, limit: int, seconds: float) -> None:
            self._inner = http.HTTPTransport()
            self._limit = limit
            self._seconds = seconds

        def handle_request(self, request: Any) -> Any:
            deadline = time.monotonic() + self._seconds
            request.headers["Accept-Encoding"] = "identity"
            response = self._inner.handle_request(request)
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            length = response.headers.get("content-length", "")
            problem = (f"the reply is compressed ({encoding}) although an uncompressed one was asked for"
                       if encoding != "identity" else
                       f"the reply announces {length} bytes, over {self._limit}"
                       if length.isdigit() and int(length) > self._limit else None)
            if problem:
                response.close()
                raise BadReply(problem)
            return http.Response(response.status_code, headers=response.headers, extensions=response.extensions,
                                 stream=BoundedStream(response.stream, self._limit, deadline, request))

        def close(self) -> None:
            self._inner.close()

    return BoundedTransport


def one_line(text: str) -> str:
    """``text`` on one line, bounded: a server's words go into error strings, records and the viewer."""
    return " ".join(text.split())[:300]
