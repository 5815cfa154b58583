"""The OpenAI-protocol client shared by every backend and sampler that calls an API (OpenAI, vLLM server, any clone).

Why our own retry loop: judging thousands of prompts meets rate limits and flaky servers, and the policy
(which errors are retried, how long to back off, how many retries a run used) must be visible in the report
and testable. So the SDK's own retries are switched off (``max_retries=0``) and ``OpenAIClient.call`` retries
429, 408/409, 5xx, timeouts and connection errors with exponential backoff and full jitter, honouring a
server's ``Retry-After``. Configuration errors (401/403/404: bad key, unknown model or URL) are raised at once
as ``EngineError``: retrying them only burns time. Any other error, or retries exhausted, is a
``CallFailed`` for that one item, so a batch carries on and the caller records a failure. The client's keys and
its API key are ``rankers.llm.client_settings``'.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from rankers.judging.repair import Conversation, Exchange
from rankers.llm.client_settings import ClientSettings, Prices, resolve_api_key
from rankers.llm.endpoints import Endpoint, EndpointPool
from rankers.llm.errors import EngineError

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

    def record(self, retries: int, usage: Any = None, failed: bool = False) -> None:
        with self._lock:
            self.calls += 1
            self.retries += retries
            self.failed_calls += int(failed)
            if usage is not None:
                self.prompt_tokens += getattr(usage, "prompt_tokens", 0) or 0
                self.completion_tokens += getattr(usage, "completion_tokens", 0) or 0

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


@dataclass
class ChatResult:
    texts: list[str]
    prompt_tokens: int
    completion_tokens: int
    retries: int


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
                 sleep: Callable[[float], None] = time.sleep) -> None:
        import openai

        self.settings = settings
        self.backoff = backoff
        self.sleep = sleep
        self._rng = random.Random()
        self._rng_lock = threading.Lock()
        self._failures_in_a_row = 0
        key = resolve_api_key(settings)
        self.pool = EndpointPool([Endpoint(url, openai.OpenAI(api_key=key, base_url=url, timeout=settings.timeout,
                                                              max_retries=0)) for url in settings.urls()])
        self.meter = UsageMeter(settings.prices, self.pool)

    def call(self, fn: Callable[["openai.OpenAI"], R]) -> tuple[R, int]:
        """Run ``fn(sdk_client)`` under the retry policy; return (result, retries used).

        Each attempt goes to the endpoint ``pool`` picks; a retry goes to an endpoint this call has not tried
        yet without waiting, and backs off only once it has tried them all. The call and the tokens of a result
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
                result = fn(endpoint.sdk)
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
            except BaseException:
                self.pool.release(index, ok=True)
                raise
            else:
                self.pool.release(index, ok=True)
                self.meter.record(attempt, getattr(result, "usage", None))
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
                with self._rng_lock:
                    self._failures_in_a_row += 1
            suffix = f" after {attempt} retries" if retryable else ""
            raise CallFailed(f"{message}{suffix}", retries=attempt) from None
        if wait:
            with self._rng_lock:
                delay = self.backoff.delay(attempt, self._rng, _retry_after(err))
            self.sleep(delay)

    def chat(self, model: str, messages: list[dict[str, str]], **params: Any) -> ChatResult:
        """One chat completion (``n`` choices if asked); ``params`` go to the API as is."""
        response, retries = self.call(lambda sdk: sdk.chat.completions.create(model=model, messages=messages,
                                                                             **params))
        usage = response.usage
        return ChatResult(texts=[c.message.content or "" for c in response.choices],
                          prompt_tokens=usage.prompt_tokens if usage else 0,
                          completion_tokens=usage.completion_tokens if usage else 0, retries=retries)

    def converse(self, model: str, conversation: Conversation[T], **params: Any) -> Exchange[T]:
        """Ask ``conversation`` until its answer parses or its re-asks run out (``rankers.judging.repair``).

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
        """``fn`` over ``items`` with at most ``max_concurrency`` in flight; results in input order.

        ``fn`` decides what a per-item failure becomes (it should catch ``CallFailed``); any other exception
        propagates, after the calls already in flight have finished.
        """
        if len(items) <= 1 or self.settings.max_concurrency == 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.settings.max_concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    def close(self) -> None:
        self.pool.close()


def _short(err: Exception) -> str:
    """The server's error message on one line, bounded (never the request, which may be long)."""
    body = getattr(err, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    text = " ".join(str(message or err).split())
    return text[:300]
