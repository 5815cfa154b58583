"""Many OpenAI-protocol endpoints behind one client: load spread, fail-over, cool-down (rankers.llm.endpoints)."""

from __future__ import annotations

import socket

import pytest
from helpers.openai_server import OpenAIProtocolServer
from pydantic import ValidationError

from rankers import RankRequest
from rankers.backends.openai_judge import Config, OpenAIJudge
from rankers.llm.client_settings import ClientSettings
from rankers.llm.endpoints import Endpoint, EndpointPool
from rankers.llm.openai_client import Backoff, CallFailed, OpenAIClient
from tuna_open.generate import SamplerChoice, build_sampler
from tuna_open.generate.base import SamplingParams

REQUESTS = [RankRequest(prompt=f"Add {i} and 1.", candidates=[str(i + 1), "no idea"], id=str(i)) for i in range(40)]


def dead_url() -> str:
    """A local URL nobody listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def judge(urls: list[str], sleeps: list[float], **keys: object) -> OpenAIJudge:
    cfg = Config(backend="openai", model="test-model", base_url=urls, api_key="test", max_concurrency=4, **keys)
    return OpenAIJudge(cfg, OpenAIClient(cfg, backoff=Backoff(base=0.01, cap=0.02), sleep=sleeps.append))


def test_pool_picks_the_least_busy_endpoint_round_robin_and_skips_one_cooling_down() -> None:
    now = [0.0]
    pool = EndpointPool([Endpoint(f"http://e{i}/v1", sdk=None) for i in range(3)], cooldown=10,
                        clock=lambda: now[0])
    assert [pool.acquire(set()) for _ in range(3)] == [0, 1, 2]  # equal load: round robin
    pool.release(1, ok=True)
    assert pool.acquire(set()) == 1  # the only one with nothing in flight
    for i in range(3):
        pool.release(i, ok=i != 0)  # endpoint 0 failed: cooling down for 10 s
    assert [pool.acquire(set()) for _ in range(2)] == [2, 1]  # round robin continues after 1
    pool.release(1, ok=True)
    pool.release(2, ok=True)
    assert pool.acquire({1, 2}) == 0  # a request that tried the healthy ones gets the cooling one
    pool.release(0, ok=False)
    now[0] = 5.0
    assert {pool.acquire(set()) for _ in range(2)} == {1, 2}  # e0 still cooling down, though idle
    now[0] = 20.0
    assert pool.acquire(set()) == 0  # cooled down, and the least busy
    assert pool.stats["http://e0/v1"] == {"calls": 3, "failures": 2}


def test_requests_spread_evenly_over_two_servers() -> None:
    with OpenAIProtocolServer(chat=lambda body: "rank: [0, 1]", delay=0.02) as a, \
            OpenAIProtocolServer(chat=lambda body: "rank: [0, 1]", delay=0.02) as b:
        urls = [a.base_url, b.base_url]
        sleeps: list[float] = []
        ranker = judge(urls, sleeps)
        rankings = ranker.rank(REQUESTS)
        ranker.close()
    assert all(r.order == [0, 1] for r in rankings)
    spread = (len(a.requests), len(b.requests))
    print(f"40 requests over two live servers: {spread}")
    assert sum(spread) == 40 and abs(spread[0] - spread[1]) <= 4
    assert ranker.stats["endpoints"] == {urls[0]: {"calls": spread[0], "failures": 0},
                                         urls[1]: {"calls": spread[1], "failures": 0}}


def test_a_dead_endpoint_is_routed_around_without_waiting() -> None:
    down = dead_url()
    with OpenAIProtocolServer(chat=lambda body: "rank: [1, 0]") as live:
        sleeps: list[float] = []
        ranker = judge([down, live.base_url], sleeps, max_retries=2)
        rankings = ranker.rank(REQUESTS)
        ranker.close()
    stats = ranker.stats
    print(f"40 requests, one server down: endpoints={stats['endpoints']} retries={stats['retries']}")
    assert all(not r.failed and r.order == [1, 0] for r in rankings)
    assert len(live.requests) == 40 and sleeps == []  # fail-over to the live server is immediate
    dead = stats["endpoints"][down]
    # Cool-down: only the requests already on their way when it first failed tried it (at most max_concurrency).
    assert 1 <= dead["failures"] == dead["calls"] <= 4 and stats["retries"] == dead["failures"]


def test_all_endpoints_down_backs_off_then_fails_the_call() -> None:
    sleeps: list[float] = []
    ranker = judge([dead_url(), dead_url()], sleeps, max_retries=3)
    ranking = ranker.rank(REQUESTS[:1])[0]
    ranker.close()
    assert ranking.failed and "connection failed" in ranking.error and "after 3 retries" in ranking.error
    assert len(sleeps) == 1  # attempts: e0, e1 (fail-over), back off, e0, e1


def test_base_url_list_is_validated_and_reaches_the_sampler() -> None:
    with pytest.raises(ValidationError, match="each server once"):
        ClientSettings(base_url=["http://a/v1", "http://a/v1"])
    with pytest.raises(ValidationError, match="each server once"):
        ClientSettings(base_url=[])

    def completions(body: dict) -> dict:
        return {"choices": [{"index": 0, "text": " 2", "finish_reason": "stop", "logprobs": None}]}

    with OpenAIProtocolServer(completions=completions) as a, OpenAIProtocolServer(completions=completions) as b:
        choice = SamplerChoice(backend="openai", openai={"base_url": [a.base_url, b.base_url, dead_url()],
                                                         "api_key": "test", "max_concurrency": 1})
        sampler = build_sampler("test-model", choice)
        samples = sampler.generate([f"Add {i} and 1." for i in range(6)], SamplingParams(max_new_tokens=2))
        sampler.close()
    assert [s[0].text for s in samples] == ["2"] * 6
    assert len(a.requests) + len(b.requests) == 6 and min(len(a.requests), len(b.requests)) >= 2


def test_a_request_error_is_not_the_servers_fault() -> None:
    """A 400 (the request's fault) fails that call at once and does not put the endpoint on cool-down."""
    with OpenAIProtocolServer(chat=lambda body: (400, {"error": {"message": "bad", "type": "invalid_request"}})) as a:
        client = OpenAIClient(ClientSettings(base_url=[a.base_url, dead_url()], api_key="test"))
        with pytest.raises(CallFailed, match="HTTP 400"):
            client.chat("test-model", [{"role": "user", "content": "hi"}])
        assert client.pool.endpoints[0].down_until == 0.0
        client.close()
