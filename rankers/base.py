"""The Ranker protocol: the one contract every judge, reward model, likelihood scorer or verifier meets.

Why a protocol and plain dataclasses: the pipeline, the TRL baselines and the evaluation only ever need
"given a prompt and N candidates, give me an order (and maybe scores)". Keeping that contract tiny is what
lets a GPT-4 judge, a vLLM-served open judge and a Python verifier be swapped by one config key.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Protocol, Sequence, TypeVar, runtime_checkable

T = TypeVar("T")


@dataclass
class RankRequest:
    """One ranking job: a natural-language prompt and the candidate responses to order.

    ``input`` is the optional task input (Alpaca's second field), kept separate so likelihood-based rankers can
    rebuild the exact prompt template the candidates were sampled with. ``reference`` is an optional gold answer
    (verifiers use it; LLM judges may show it). ``logprobs``/``lengths`` carry per-candidate summed token
    log-probabilities and token counts when the sampler already computed them, so the Tuna_p ranker need not
    score the candidates a second time. ``messages`` is the conversation before the response when the prompt
    has context (multi-turn, a system turn): ``template: chat`` renders it; ``prompt`` is then the conversation
    as text for judges that read one.
    """

    prompt: str
    candidates: list[str]
    id: str | None = None
    input: str = ""
    reference: str | None = None
    logprobs: list[float] | None = None
    lengths: list[int] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] | None = None


@dataclass
class Ranking:
    """The result for one request.

    ``order`` is a permutation of *all* candidate indices, best first (empty when ``failed``). ``scores`` are
    per-candidate (indexed like the request's candidates, higher is better) when the backend has them. A failed
    request never carries an invented order: ``failed`` is set and ``error`` says why, so stages can count it.
    """

    order: list[int]
    scores: list[float] | None = None
    raw: str | None = None
    failed: bool = False
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Ranking":
        return cls(**{k: data[k] for k in ("order", "scores", "raw", "failed", "error", "metadata") if k in data})

    @classmethod
    def failure(cls, error: str, raw: str | None = None, **metadata: Any) -> "Ranking":
        return cls(order=[], failed=True, error=error, raw=raw, metadata=dict(metadata))


@runtime_checkable
class Ranker(Protocol):
    """Anything with a batched ``rank``. Implementations may hold models or HTTP clients; ``close`` frees them."""

    name: str

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]: ...


def rank_as_completed(ranker: Ranker, requests: Sequence[RankRequest]) -> Iterator[tuple[int, Ranking]]:
    """(index into ``requests``, its ranking) as each is ready: one by one from a ranker that has
    ``rank_as_completed`` (the API judges, and a cache over them), all at the end from any other.

    Why: a caller saves each judgement as it arrives, so a crash or a Ctrl-C keeps what was already paid for."""
    streaming = getattr(ranker, "rank_as_completed", None)
    return streaming(requests) if streaming is not None else enumerate(ranker.rank(requests))


def in_order(results: Iterable[tuple[int, T]], n: int) -> list[T]:
    """The results of ``rank_as_completed`` (indices 0..n-1, any order) as a list in index order."""
    by_index = dict(results)
    return [by_index[i] for i in range(n)]


def close_if_closable(obj: object) -> None:
    """``obj.close()`` where it has one: a ranker or scorer may hold nothing to free."""
    close = getattr(obj, "close", None)
    if close is not None:
        close()


def is_permutation(order: object, n: int) -> bool:
    """Whether ``order`` lists each of the indices ``0..n-1`` exactly once: the only valid ``Ranking.order`` for
    n candidates. Checked wherever a ranking comes back from storage (a cache, a resumed file, an artifact)."""
    return (isinstance(order, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in order)
            and sorted(order) == list(range(n)))


def valid_ranking(ranking: Ranking, n: int) -> bool:
    """A stored non-failed ranking fit for ``n`` candidates: its order a permutation, its scores (if any) n."""
    return (not ranking.failed and is_permutation(ranking.order, n)
            and (ranking.scores is None or len(ranking.scores) == n))


@contextmanager
def owned(obj: T) -> Iterator[T]:
    """``with owned(build_ranker(cfg)) as ranker:``: the block's owner closes what it built, however it ends.

    Why: an in-process engine (vLLM, a transformers model on the GPU) holds its memory until closed; a pipeline
    that left that to the garbage collector would load the next stage's model next to the last one's.
    """
    try:
        yield obj
    finally:
        close_if_closable(obj)


def order_from_scores(scores: Sequence[float]) -> list[int]:
    """Best-first order from per-candidate scores; ties keep the lower index first (stable, deterministic)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


class Tally:
    """Named counts for a ranker's ``stats``, safe to add to from the worker threads of a concurrent ranker."""

    def __init__(self, *names: str) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(names, 0)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, value in deltas.items():
                self._counts[name] += value

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
