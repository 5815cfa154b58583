"""The OpenAI-protocol client shared by every backend and sampler that calls an API (OpenAI, vLLM server, any clone).

Why our own retry loop: judging thousands of prompts meets rate limits and flaky servers, and the policy
(which errors are retried, how long to back off, how many retries a run used) must be visible in the report
and testable. So the SDK's own retries are switched off (``max_retries=0``) and ``OpenAIClient.call`` retries
429, 408/409, 5xx, timeouts and connection errors with exponential backoff and full jitter, honouring a
server's ``Retry-After``. Configuration errors (401/403/404: bad key, unknown model or URL) are raised at once
as ``EngineError``: retrying them only burns time. Any other error, or retries exhausted, is a
``CallFailed`` for that one item, so a batch carries on and the caller records a failure. The client's keys and
its API key are ``rankers.llm.client_settings``'.

A server is not trusted to answer well (a proxy's HTML page, ``{"error": ...}`` with status 200, no choices, a
null content, garbage bytes, a 10 MB answer, a reply trickled byte by byte): whatever comes back, the caller
gets its reply or a ``CallFailed``, never a traceback. The reply is read inside the call (``call(request,
read)``), so a reply that does not read as asked is an "unreadable reply",
not retried within the call (it was answered, maybe paid) but counted towards ``max_consecutive_failures``;
the caller records a failure, which the next run asks again. Bodies over ``max_reply_bytes`` are refused while
they arrive, compressed bodies are refused (identity is asked for: a gzip bomb cannot be bounded by its wire
size), and ``timeout`` is a deadline for the whole attempt (body included), not for each read
(``rankers.llm.replies.bounded_transport``).
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

from rankers.base import in_order
from rankers.llm.client_settings import ClientSettings, Prices, resolve_api_key
from rankers.llm.conversation import Conversation, Exchange
from rankers.llm.endpoints import Endpoint, EndpointPool
from rankers.llm.errors import EngineError
from rankers.llm.replies import (
    MAX_REPLY_BYTES,
    BadReply,
    ChatResult,
    bounded_transport,
    one_line,
    read_chat,
    reply_tokens,
)

if TYPE_CHECKING:
    import openai

T = TypeVar("T")
R = TypeVar("R")

RETRY_STATUSES = frozenset({408, 409, 429})
FATAL_STATUSES = frozenset({401, 403, 404})


class CallFailed(Exception):
    """One API call that could not be completed (retries exhausted or a non-retryable error); one-line message.

    ``retries`` is how many retries it used, so the failure's metadata agrees with its message."""

    def __init__(self, message: str, retries: int = 0) -> None:
        super().__init__(message)
        self.retries = retries


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt ``a`` waits uniform(0, min(cap, base * 2**a)) seconds."""

    base: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        wait = rng.uniform(0, min(self.cap, self.base * 2 ** attempt))
        return max(wait, min(retry_after, self.cap)) if retry_after else wait


class UsageMeter:
    """Thread-safe totals of one client's traffic; ``as_dict`` goes into the run report."""

    def __init__(self, prices: Prices | None = None, pool: EndpointPool | None = None) -> None:
        self.prices = prices
        self.pool = pool
        self._lock = threading.Lock()
        self.calls = 0
        self.retries = 0
        self.failed_calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def record(self, retries: int, tokens: tuple[int, int] = (0, 0), failed: bool = False) -> None:
        """One call: its retries, its (prompt, completion) tokens, whether it failed."""
        with self._lock:
            self.calls += 1
            self.retries += retries
            self.failed_calls += int(failed)
            self.prompt_tokens += tokens[0]
            self.completion_tokens += tokens[1]

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {"calls": self.calls, "retries": self.retries, "failed_calls": self.failed_calls,
                                   "prompt_tokens": self.prompt_tokens,
                                   "completion_tokens": self.completion_tokens}
        if self.pool is not None and len(self.pool.endpoints) > 1:
            out["endpoints"] = self.pool.stats  # how the load spread, and which server failed
        if self.prices is not None:
            out["cost_usd"] = round((self.prompt_tokens * self.prices.prompt
                                     + self.completion_tokens * self.prices.completion) / 1000, 6)
        return out


def _retry_after(err: Exception) -> float | None:
    response = getattr(err, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value else None
    except ValueError:  # an HTTP date; the exponential backoff is good enough
        return None


class OpenAIClient:
    """``openai.OpenAI`` clients (one per endpoint) with our retry policy, bounded concurrency, load spreading
    and usage accounting."""

    def __init__(self, settings: ClientSettings, backoff: Backoff = Backoff(),
                 sleep: Callable[[float], None] = time.sleep, max_reply_bytes: int = MAX_REPLY_BYTES) -> None:
        import openai

        self.settings = settings
        self.backoff = backoff
        self.sleep = sleep
        self._rng = random.Random()
        self._rng_lock = threading.Lock()
        self._failures_in_a_row = 0
        key = resolve_api_key(settings)
        self.pool = EndpointPool([Endpoint(url, openai.OpenAI(
            api_key=key, base_url=url, timeout=settings.timeout, max_retries=0,
            http_client=openai.DefaultHttpxClient(transport=bounded_transport()(max_reply_bytes, settings.timeout))))
            for url in settings.urls()])
        self.meter = UsageMeter(settings.prices, self.pool)

    def call(self, fn: Callable[["openai.OpenAI"], Any],
             read: Callable[[Any], R] = lambda response: response) -> tuple[R, int]:
        """Run ``fn(sdk_client)`` (the request) under the retry policy and ``read`` its reply; return (what was
        read, retries used). A reply that cannot be read (the SDK cannot decode it, or ``read`` raises
        ``BadReply``, or the ValueError, TypeError, AttributeError, KeyError or IndexError of reading a reply not
        shaped as asked) is a ``CallFailed``.

        Each attempt goes to the endpoint ``pool`` picks; a retry goes to an endpoint this call has not tried
        yet without waiting, and backs off only once it has tried them all. The call and the tokens of a reply
        carrying ``.usage`` are recorded in ``meter``.
        """
        import openai

        if self._failures_in_a_row >= self.settings.max_consecutive_failures:
            self.meter.record(0, failed=True)
            raise CallFailed(f"not called: the last {self._failures_in_a_row} calls failed, every endpoint taken as "
                             f"dead (max_consecutive_failures)")
        attempt = 0
        tried: set[int] = set()
        while True:
            index = self.pool.acquire(tried)
            endpoint = self.pool.endpoints[index]
            try:
                response = fn(endpoint.sdk)
                result = read(response)
            except openai.APIStatusError as err:
                retryable = err.status_code in RETRY_STATUSES or err.status_code >= 500
                self.pool.release(index, ok=not retryable)  # other errors are the request's fault, not the server's
                if err.status_code in FATAL_STATUSES:
                    raise EngineError(f"{endpoint.where} answered {err.status_code}: {_short(err)}") from None
                failure = (err, retryable, f"HTTP {err.status_code}: {_short(err)}")
            except openai.APIConnectionError as err:  # includes APITimeoutError
                self.pool.release(index, ok=False)
                kind = "timed out" if isinstance(err, openai.APITimeoutError) else "connection failed"
                failure = (err, True, f"{kind} ({endpoint.where})")
            except (BadReply, ValueError, TypeError, AttributeError, KeyError, IndexError) as err:
                self.pool.release(index, ok=False)
                self._count_failure()  # a server answering garbage is as dead as one not answering
                failure = (err, False, f"unreadable reply from {endpoint.where}: {_short(err)}")
            except BaseException:
                self.pool.release(index, ok=True)
                raise
            else:
                self.pool.release(index, ok=True)
                self.meter.record(attempt, reply_tokens(response))
                self._failures_in_a_row = 0
                return result, attempt
            tried.add(index)
            failover = len(tried) < len(self.pool.endpoints)
            if not failover:
                tried.clear()  # every endpoint failed this request: back off, then start over
            self._retry_or_fail(attempt, *failure, wait=not failover)
            attempt += 1

    def _retry_or_fail(self, attempt: int, err: Exception, retryable: bool, message: str, wait: bool) -> None:
        if not retryable or attempt >= self.settings.max_retries:
            self.meter.record(attempt, failed=True)
            if retryable:
                self._count_failure()
            suffix = f" after {attempt} retries" if retryable else ""
            raise CallFailed(f"{message}{suffix}", retries=attempt) from None
        if wait:
            with self._rng_lock:
                delay = self.backoff.delay(attempt, self._rng, _retry_after(err))
            self.sleep(delay)

    def _count_failure(self) -> None:
        with self._rng_lock:
            self._failures_in_a_row += 1

    def chat(self, model: str, messages: list[dict[str, str]], **params: Any) -> ChatResult:
        """One chat completion (``n`` choices if asked, each a text: see ``read_chat``); ``params`` go to the API
        as is."""
        result, retries = self.call(lambda sdk: sdk.chat.completions.create(model=model, messages=messages, **params),
                                    read_chat)
        result.retries = retries
        return result

    def converse(self, model: str, conversation: Conversation[T], **params: Any) -> Exchange[T]:
        """Ask ``conversation`` until its answer parses or its re-asks run out (``rankers.llm.conversation``).

        A re-ask continues the conversation: the unreadable answer, then the repair prompt. A failed call ends
        the exchange. Never raises for a per-item problem: the caller turns ``error`` into a failure.
        """
        while True:
            try:
                result = self.chat(model, conversation.messages, **params)
            except CallFailed as err:
                conversation.fail(f"call failed: {err}", retries=err.retries)
                return conversation.exchange
            if not conversation.take(result.texts[0], result.prompt_tokens, result.completion_tokens,
                                     result.retries):
                return conversation.exchange

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` over ``items`` (``map_as_completed``); results in input order."""
        return in_order(self.map_as_completed(fn, items), len(items))

    def map_as_completed(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        """(index, ``fn(items[index])``) as each finishes, with at most ``max_concurrency`` in flight.

        Why as they finish: each result is a paid answer, and the caller saves it at once (a cache, a partial
        file) instead of at the end of a batch that a crash or a Ctrl-C may never reach. A Ctrl-C (in the main
        thread) starts no further item; the calls in flight finish and their results are yielded, then
        ``KeyboardInterrupt`` is raised here, between two results, never in the middle of the caller saving one
        (``deferred_interrupt``); a second Ctrl-C stops at once. ``fn`` decides what a per-item failure becomes
        (it should catch ``CallFailed``); any other exception cancels the items not started and propagates once
        the calls in flight have finished, whose results are yielded first: they were answered.
        """
        if len(items) <= 1 or self.settings.max_concurrency == 1:
            with deferred_interrupt(lambda: None) as interrupted:
                for i, item in enumerate(items):
                    if interrupted.is_set():
                        raise KeyboardInterrupt
                    yield i, fn(item)
            return
        pool = ThreadPoolExecutor(max_workers=min(self.settings.max_concurrency, len(items)))
        futures: dict[Future[R], int] = {pool.submit(fn, item): i for i, item in enumerate(items)}
        handed: set[Future[R]] = set()

        def cancel_pending() -> None:
            for future in futures:
                future.cancel()

        try:
            with deferred_interrupt(cancel_pending) as interrupted:
                for future in as_completed(futures):
                    handed.add(future)
                    if not future.cancelled():
                        yield futures[future], future.result()
            if interrupted.is_set():
                raise KeyboardInterrupt
        except (GeneratorExit, KeyboardInterrupt):  # the caller stopped reading, or the work is stopped
            raise
        except BaseException:
            cancel_pending()
            for future in as_completed([f for f in futures if f not in handed and not f.cancelled()]):
                if future.exception() is None:
                    yield futures[future], future.result()
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.pool.close()


@contextmanager
def deferred_interrupt(on_interrupt: Callable[[], None]) -> Iterator[threading.Event]:
    """Within the block, a first Ctrl-C only sets the yielded event and calls ``on_interrupt`` (in the main
    thread); the block checks the event at a point where stopping loses nothing. A second Ctrl-C raises at once.

    A no-op outside the main thread, or where someone else handles SIGINT: their handler stays in charge."""
    interrupted = threading.Event()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield interrupted
        return

    def first_ctrl_c(signum: int, frame: Any) -> None:
        interrupted.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        on_interrupt()
        sys.stderr.write("\ninterrupted: finishing the calls in flight to keep their answers (Ctrl-C again to stop "
                         "at once)\n")

    signal.signal(signal.SIGINT, first_ctrl_c)
    try:
        yield interrupted
    finally:
        if threading.current_thread() is threading.main_thread():  # a generator may be closed from elsewhere
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _short(err: Exception) -> str:
    """The server's error message on one line, bounded (never the request, which may be long)."""
    body = getattr(err, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    return one_line(str(message or err) or type(err).__name__)
