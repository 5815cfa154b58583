"""What a server sends back, read as untrusted: the texts and token counts of a chat reply, and the HTTP transport
that bounds a reply's size and an attempt's wall-clock time (``rankers.llm.openai_client`` explains the policy).
"""

from __future__ import annotations

import threading
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
    ``seconds`` after it started even if bytes keep trickling in, headers included: every socket read and write
    of the attempt waits at most the time left (``DeadlineBackend``). It asks for uncompressed replies and
    refuses compressed ones, whose decoded size the wire size does not bound. Built on the HTTP library the
    installed SDK is built on (``httpx``/``httpcore``, ``httpx2``/``httpcore2`` in newer SDKs), hence classes
    made on first use.
    """
    import openai

    http = import_module(openai.DefaultHttpxClient.__mro__[1].__module__.split(".")[0])
    core = import_module(http.__name__.replace("httpx", "httpcore"))
    attempt = threading.local()
    """The running attempt's deadline, per thread: httpcore does a synchronous request's I/O in its caller's thread,
    and the client pool runs one attempt at a time per thread."""

    def time_left(timeout: float | None) -> float:
        """The per-read timeout, cut to what is left of the attempt's deadline (raising once nothing is)."""
        deadline = getattr(attempt, "deadline", None)
        if deadline is None:
            return timeout  # type: ignore[return-value]
        left = deadline - time.monotonic()
        if left <= 0:
            raise core.ReadTimeout("the reply did not arrive within the deadline")
        return left if timeout is None else min(timeout, left)

    class DeadlineStream(core.NetworkStream):  # type: ignore[misc, name-defined]
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._inner.read(max_bytes, time_left(timeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._inner.write(buffer, time_left(timeout))

        def close(self) -> None:
            self._inner.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                      timeout: float | None = None) -> "DeadlineStream":
            return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, time_left(timeout)))

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class DeadlineBackend(core.NetworkBackend):  # type: ignore[misc, name-defined]
        """httpcore's socket backend with every wait cut to the attempt's deadline: a per-read timeout alone lets
        a server that drips its status line and headers a byte at a time hold a call for as long as it likes."""

        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                        socket_options: Any = None) -> DeadlineStream:
            return DeadlineStream(self._inner.connect_tcp(host, port, time_left(timeout), local_address,
                                                          socket_options))

        def connect_unix_socket(self, path: str, timeout: float | None = None,
                                socket_options: Any = None) -> DeadlineStream:
            return DeadlineStream(self._inner.connect_unix_socket(path, time_left(timeout), socket_options))

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    class BoundedStream(http.SyncByteStream):  # type: ignore[misc, name-defined]
        """A reply body read under the size limit, checked at every chunk (its waits are cut by the backend)."""

        def __init__(self, inner: Any, limit: int) -> None:
            self._inner = inner
            self._limit = limit

        def __iter__(self) -> Iterator[bytes]:
            size = 0
            for chunk in self._inner:
                size += len(chunk)
                if size > self._limit:
                    raise BadReply(f"the reply is over {self._limit} bytes")
                yield chunk

        def close(self) -> None:
            self._inner.close()

    class BoundedTransport(http.BaseTransport):  # type: ignore[misc, name-defined]
        def __init__(self, limit: int, seconds: float) -> None:
            self._inner = http.HTTPTransport()
            # httpx takes no network backend, so the pool it made gets ours; a test fails if the name moves.
            pool = self._inner._pool
            pool._network_backend = DeadlineBackend(pool._network_backend)
            self._limit = limit
            self._seconds = seconds

        def handle_request(self, request: Any) -> Any:
            attempt.deadline = time.monotonic() + self._seconds
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
                                 stream=BoundedStream(response.stream, self._limit))

        def close(self) -> None:
            self._inner.close()

    return BoundedTransport


def one_line(text: str) -> str:
    """``text`` on one line, bounded: a server's words go into error strings, records and the viewer."""
    return " ".join(text.split())[:300]
