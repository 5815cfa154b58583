"""Several OpenAI-protocol servers behind one client: requests spread across them, failures routed around.

Why: judging or sampling at scale runs one vLLM server per node (or per GPU group); one client then keeps them
all busy. The policy, kept simple enough to predict:

- **least busy first**: a request goes to the healthy endpoint with the fewest requests in flight from this
  client, ties broken round robin, so equal servers get equal shares and a slow one gets fewer;
- **fail over**: a request that failed on one endpoint (connection refused, timeout, 5xx, 429) is retried on
  another it has not tried yet, at once; only when it has tried them all does the client back off;
- **cool down**: an endpoint that failed is skipped by new requests for ``cooldown`` seconds (unless every
  endpoint is cooling down), so a dead server costs one failed attempt per cooldown, not one per request.

Thread-safe: ``OpenAIClient.map`` calls from a thread pool.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rankers.llm.client_settings import redact_url


@dataclass
class Endpoint:
    url: str | None
    """``None``: the SDK's default (api.openai.com)."""
    sdk: Any
    in_flight: int = 0
    calls: int = 0
    failures: int = 0
    down_until: float = 0.0

    @property
    def where(self) -> str:
        """The endpoint as error messages and the report name it (credentials masked)."""
        return redact_url(self.url or "https://api.openai.com")


class EndpointPool:
    """Picks the endpoint for each attempt and keeps per-endpoint counts (``stats``)."""

    def __init__(self, endpoints: Sequence[Endpoint], cooldown: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self.endpoints = list(endpoints)
        self.cooldown = cooldown
        self.clock = clock
        self._lock = threading.Lock()
        self._next = 0

    def acquire(self, tried: set[int]) -> int:
        """The index of the endpoint for the next attempt of a request that already tried ``tried``."""
        n = len(self.endpoints)
        with self._lock:
            now = self.clock()
            fresh = [i for i in range(n) if i not in tried] or list(range(n))
            healthy = [i for i in fresh if self.endpoints[i].down_until <= now] or fresh
            index = min(healthy, key=lambda i: (self.endpoints[i].in_flight, (i - self._next) % n))
            self._next = (index + 1) % n
            endpoint = self.endpoints[index]
            endpoint.in_flight += 1
            endpoint.calls += 1
            return index

    def release(self, index: int, ok: bool) -> None:
        """Record how an attempt on ``endpoints[index]`` ended; a failure starts its cooldown."""
        with self._lock:
            endpoint = self.endpoints[index]
            endpoint.in_flight -= 1
            if ok:
                endpoint.down_until = 0.0
            else:
                endpoint.failures += 1
                endpoint.down_until = self.clock() + self.cooldown

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """Attempts and failed attempts per endpoint (for the run report: how the load spread)."""
        with self._lock:
            return {e.where: {"calls": e.calls, "failures": e.failures} for e in self.endpoints}

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.sdk.close()
