"""What a judge does with a hostile or broken server (a real local one, ``helpers.openai_server``): every reply
is read defensively, so whatever comes back is a counted failure, never a traceback, never cached as a success,
and never holds a call or the memory without bound."""

from __future__ import annotations

import gzip
import json
import random
import threading
import time
from pathlib import Path

import pytest
from helpers.openai_server import OpenAIProtocolServer, Raw

from rankers import RankRequest, build_ranker, validate_config
from rankers.backends.openai_judge import OpenAIJudge
from rankers.llm.openai_client import Backoff, OpenAIClient

GOOD = "Response 0: [15]\nResponse 1: [10]\nResponse 2: [5]\nrank: [0, 2, 1]"


def completion(**overrides: object) -> bytes:
    """A chat.completion body with one good choice, its fields overridden (``None`` deletes one)."""
    body = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": GOOD}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def choice(message: object) -> list[dict]:
    return [{"index": 0, "message": message, "finish_reason": "stop"}]


HOSTILE = {
    "not json": Raw(b"this is not json"),
    "html page": Raw(b"<html><body>502 Bad Gateway</body></html>", headers={"Content-Type": "text/html"}),
    "error object": Raw(json.dumps({"error": {"message": "overloaded"}}).encode()),
    "no choices": Raw(completion(choices=[])),
    "choices missing": Raw(completion(choices=None)),
    "content null": Raw(completion(choices=choice({"role": "assistant", "content": None}))),
    "message missing": Raw(completion(choices=[{"index": 0, "finish_reason": "stop"}])),
    "content not a string": Raw(completion(choices=choice({"role": "assistant", "content": {"rank": [0, 1]}}))),
    "choices not a list": Raw(completion(choices="rank: [0, 1, 2]")),
    "json list": Raw(b"[1, 2, 3]"),
    "gzip garbage": Raw(b"\x1f\x8b\x08\x00garbage", headers={"Content-Type": "application/json",
                                                              "Content-Encoding": "gzip"}),
    "not utf-8": Raw(b'{"choices": [{"message": {"content": "\xff\xfe rank"}}]}'),
    "closed mid-body": Raw(completion(), cut_after=20),
}


def request(i: int) -> RankRequest:
    return RankRequest(prompt=f"question {i}", candidates=["a", "b", "c"], id=str(i))


def judge(server: OpenAIProtocolServer, **overrides: object) -> OpenAIJudge:
    cfg = validate_config({"backend": "openai", "model": "m", "base_url": server.base_url, "api_key": "k",
                           "max_repairs": 0, "max_retries": 0, **overrides})
    return OpenAIJudge(cfg, OpenAIClient(cfg, backoff=Backoff(base=0.001, cap=0.01)))


@pytest.mark.parametrize("reply", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_bad_reply_is_a_counted_failure_not_a_crash(reply: Raw) -> None:
    with OpenAIProtocolServer(chat=lambda body: reply) as server:
        ranker = judge(server)
        [ranking] = ranker.rank([request(0)])
    assert ranking.failed and ranking.error and "\n" not in ranking.error
    assert ranker.stats["failed"] == 1 and ranker.stats["failed_calls"] == 1


def test_one_bad_reply_in_a_batch_keeps_and_caches_the_three_good(tmp_path: Path) -> None:
    def chat(body: dict) -> str | Raw:
        return HOSTILE["no choices"] if "question 2" in body["messages"][-1]["content"] else GOOD

    config = {"backend": "openai", "model": "m", "api_key": "k", "max_repairs": 0, "max_retries": 0,
              "cache_dir": str(tmp_path)}
    with OpenAIProtocolServer(chat=chat) as server:
        rankings = build_ranker({**config, "base_url": server.base_url}).rank([request(i) for i in range(4)])
        assert [r.failed for r in rankings] == [False, False, True, False]
        asked = len(server.requests)
        again = build_ranker({**config, "base_url": server.base_url}).rank([request(i) for i in range(4)])
        assert len(server.requests) - asked == 1  # only the failed one is asked again
    assert [r.order for r in again] == [[0, 2, 1], [0, 2, 1], [], [0, 2, 1]]


def test_a_huge_reply_is_refused_from_the_wire() -> None:
    huge = Raw(completion(choices=choice({"role": "assistant", "content": "x" * 10_000_000})))
    with OpenAIProtocolServer(chat=lambda body: huge) as server:
        cfg = validate_config({"backend": "openai", "model": "m", "base_url": server.base_url, "api_key": "k",
                               "max_repairs": 0, "max_retries": 0})
        ranker = OpenAIJudge(cfg, OpenAIClient(cfg, max_reply_bytes=1_000_000))
        [ranking] = ranker.rank([request(0)])
    assert ranking.failed and "bytes" in ranking.error and ranking.raw is None


@pytest.mark.parametrize("trickle", [
    Raw(completion(), trickle=0.05),  # ~300 body bytes: 15 s in all, each read well within the timeout
    # #20: the deadline started to count only once the headers were in, so a header block dripped a byte at a
    # time (each read well within the timeout) held a call for as long as the server liked: ~80 bytes, 4 s
    Raw(completion(), trickle=0.05, trickle_headers=True),
], ids=["body", "headers"])
def test_a_trickling_server_is_cut_at_the_call_deadline(trickle: Raw) -> None:
    with OpenAIProtocolServer(chat=lambda body: trickle) as server:
        ranker = judge(server, timeout=1.0)
        start = time.monotonic()
        [ranking] = ranker.rank([request(0)])
    assert ranking.failed and "timed out" in ranking.error
    assert time.monotonic() - start < 3


def test_a_long_answer_is_stored_bounded_and_sent_back_as_an_excerpt() -> None:
    long_answer = "blah " * 200_000 + "no ranking here"  # 1 MB: under the wire limit, unreadable
    answers = iter([long_answer, "rank: [0, 2, 1]"])
    lock = threading.Lock()

    def chat(body: dict) -> str:
        with lock:
            return next(answers)

    with OpenAIProtocolServer(chat=chat) as server:
        [ranking] = judge(server, max_repairs=1).rank([request(0)])
        repair = server.requests[1]["messages"]
    assert not ranking.failed and ranking.order == [0, 2, 1]
    assert len(ranking.raw) < 100_000 and ranking.metadata["raw_chars"] > 1_000_000
    assert len(json.dumps(repair)) < 100_000 and repair[-2]["content"].endswith("no ranking here")


def test_retry_after_is_capped_and_500_then_200_succeeds() -> None:
    replies = iter([(500, {"error": {"message": "boom"}}), GOOD])
    waits: list[float] = []
    lock = threading.Lock()

    def chat(body: dict) -> object:
        with lock:
            return next(replies)

    with OpenAIProtocolServer(chat=chat) as server:
        cfg = validate_config({"backend": "openai", "model": "m", "base_url": server.base_url, "api_key": "k"})
        ranker = OpenAIJudge(cfg, OpenAIClient(cfg, sleep=waits.append))
        [ranking] = ranker.rank([request(0)])
    assert not ranking.failed and ranking.metadata["retries"] == 1 and len(waits) == 1
    for header in ("1e9", "inf", "nan", "-5"):  # a server's Retry-After never holds a call past the cap
        assert 0 <= Backoff().delay(0, random.Random(0), float(header)) <= Backoff().cap


def test_gzip_is_not_a_bomb() -> None:
    bomb = Raw(gzip.compress(b" " * 50_000_000), headers={"Content-Type": "application/json",
                                                          "Content-Encoding": "gzip"})
    with OpenAIProtocolServer(chat=lambda body: bomb) as server:
        cfg = validate_config({"backend": "openai", "model": "m", "base_url": server.base_url, "api_key": "k",
                               "max_repairs": 0, "max_retries": 0})
        ranker = OpenAIJudge(cfg, OpenAIClient(cfg, max_reply_bytes=1_000_000))
        [ranking] = ranker.rank([request(0)])
    assert ranking.failed
