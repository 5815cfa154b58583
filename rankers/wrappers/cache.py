"""Content-addressed on-disk cache of rankings: a judgement is paid for once, whatever run asks again.

The key is the sha256 of the canonical JSON of the request's content (prompt, input, reference, candidates,
precomputed logprobs/lengths, metadata; not its id: the same question gets the same answer) and of the ranker
config minus keys that cannot change a result (secrets, connection and throughput settings, see
``NON_SEMANTIC_KEYS``). So a rotated API key or a higher concurrency reuses the cache, while another model,
temperature or prompt option misses it. A key added later is left out while it has the value that was the
behaviour before it existed (``LATER_DEFAULTS``), so adding it does not orphan the cache. Each entry is one JSON
file written to a temporary file and moved into place with ``os.replace``, so concurrent writers never leave a
torn entry, and each ranking is written as soon as the inner ranker hands it over (``rank_as_completed``), not
at the end of the batch, so a crash or a Ctrl-C keeps what was paid for. A cache that cannot be written (disk
full, read-only) loses nothing else: the ranking is still returned, the failure is logged once and counted
(``cache_write_failed``). Failures are not cached: a retry later may succeed. An unreadable entry, or one that
is not a valid ranking of the request's candidates (its order not a permutation of their indices, its scores not
one per candidate: a corrupted or hand-edited file), counts as a miss (``cache_invalid``) and is overwritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from rankers.atomic import atomic_write_text
from rankers.base import Ranker, Ranking, RankRequest, close_if_closable, in_order, rank_as_completed, valid_ranking

log = logging.getLogger(__name__)

NON_SEMANTIC_KEYS = frozenset({
    "api_key", "api_key_env", "timeout", "max_retries", "max_consecutive_failures", "max_concurrency", "prices",
    "cache_dir",
    "batch_size", "device", "shared_prefix",
})
"""Config keys left out of cache keys at any depth (ensembles nest configs): they never change a ranking."""


def result_neutral(key: str, value: Any) -> bool:
    """Whether config ``key`` holding ``value`` cannot change a result: a ``NON_SEMANTIC_KEYS`` key, or a pool
    (list) of ``base_url``, whose servers serve the same model by contract, so which of them answers is
    throughput. A single ``base_url`` stays: it names the server, and another server may hold another model.
    Shared with tuna-open's stage fingerprints, so a cached judgement and a cached stage agree on what matters."""
    return key in NON_SEMANTIC_KEYS or (key == "base_url" and isinstance(value, list))

LATER_DEFAULTS: Mapping[str, Any] = {"constrain": "none"}
"""Keys added after rankings were first cached, left out of cache keys (at any depth) while they hold this value:
the entries cached before the key existed were made with that behaviour, so they must still hit."""


def public_config(config: Any) -> Any:
    """``config`` without result-neutral keys (recursively) and with every value JSON-serialisable."""
    if isinstance(config, Mapping):
        return {str(k): public_config(v) for k, v in config.items()
                if not result_neutral(k, v) and not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}
    if isinstance(config, (list, tuple)):
        return [public_config(v) for v in config]
    if config is None or isinstance(config, (str, int, float, bool)):
        return config
    return str(config)


def cache_key(request: RankRequest, key_config: Mapping[str, Any]) -> str:
    content = {k: v for k, v in dataclasses.asdict(request).items() if k != "id"}
    payload = json.dumps({"request": content, "ranker": public_config(key_config)}, sort_keys=True,
                         ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class CachedRanker:
    """Serves cached rankings and sends only the misses, as one batch, to the inner ranker."""

    def __init__(self, inner: Ranker, cache_dir: str | os.PathLike[str], key_config: Mapping[str, Any]) -> None:
        self.inner = inner
        self.name = inner.name
        self.dir = Path(cache_dir)
        self.key_config = dict(key_config)
        self.hits = 0
        self.misses = 0
        self.invalid = 0
        self.write_failed = 0

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def _read(self, key: str, request: RankRequest) -> Ranking | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            ranking = Ranking.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            ranking = None
        if ranking is None or not valid_ranking(ranking, len(request.candidates)):
            self.invalid += 1
            return None
        return ranking

    def _write(self, key: str, ranking: Ranking) -> None:
        try:
            atomic_write_text(self._path(key), json.dumps(ranking.to_dict(), ensure_ascii=False))
        except OSError as err:
            if not self.write_failed:
                log.warning("cannot write the ranking cache %s (%s): rankings are kept in the results but not "
                            "cached", self.dir, err)
            self.write_failed += 1

    def rank_as_completed(self, requests: Sequence[RankRequest]) -> Iterator[tuple[int, Ranking]]:
        """Cached rankings first, then the misses as the inner ranker hands them over, each cached on arrival."""
        keys = [cache_key(r, self.key_config) for r in requests]
        todo = []
        for i, (key, request) in enumerate(zip(keys, requests)):
            cached = self._read(key, request)
            if cached is None:
                todo.append(i)
            else:
                self.hits += 1
                yield i, cached
        self.misses += len(todo)
        if todo:
            for j, ranking in rank_as_completed(self.inner, [requests[i] for i in todo]):
                if not ranking.failed:
                    self._write(keys[todo[j]], ranking)
                yield todo[j], ranking

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        return in_order(self.rank_as_completed(requests), len(requests))

    @property
    def stats(self) -> dict[str, Any]:
        return {**getattr(self.inner, "stats", {}), "cache_hits": self.hits, "cache_misses": self.misses,
                "cache_invalid": self.invalid, "cache_write_failed": self.write_failed}

    def close(self) -> None:
        close_if_closable(self.inner)
