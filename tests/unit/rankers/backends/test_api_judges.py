"""The ``openai`` judge end to end against a real local OpenAI-protocol server: retries, timeouts, repairs,
concurrency, caching, permutations, and the API key never leaking."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from helpers.openai_server import OpenAIProtocolServer

from rankers import EngineError, RankerConfigError, RankRequest, build_ranker, validate_config
from rankers.backends.openai_judge import OpenAIJudge
from rankers.llm.client_settings import resolve_api_key
from rankers.llm.openai_client import Backoff, OpenAIClient

SECRET = "sk-test-DO-NOT-LEAK-1234567890"
QUALITY = {"best": 3, "good": 2, "ok": 1, "bad": 0}
RATE_LIMIT = (429, {"error": {"message": "rate limited", "type": "rate_limit_error"}})
SERVER_ERROR = (500, {"error": {"message": "boom", "type": "server_error"}})


def question(body: dict) -> str:
    """The judge prompt: the first user message (the ``lmops`` prompt comes after a system message)."""
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def shown(body: dict) -> list[str]:
    """The candidates in the order the judge was shown them (``###Response i:`` headers of the lmops prompt)."""
    return re.findall(r"^###Response \d+:\n(.*)$", question(body), flags=re.MULTILINE)


def fair_judge(body: dict) -> str:
    """Ranks by the candidates' words, whatever order they are shown in (and puts its own answer second)."""
    texts = shown(body)
    order = sorted(range(len(texts)), key=lambda i: -QUALITY[texts[i]])
    ratings = "\n".join(f"Response {k}: [{s}]" for k, s in enumerate([QUALITY[t] * 5 for t in texts] + [14]))
    return (f"Close-ended.\n###Response {len(texts)}:\nmine.\n\n{ratings}\n"
            f"rank: {[order[0], len(texts), *order[1:]]}")


def requests(n: int = 4) -> list[RankRequest]:
    return [RankRequest(prompt=f"question {i}", candidates=["ok", "best", "bad", "good"], id=str(i))
            for i in range(n)]


def judge(server: OpenAIProtocolServer, **overrides: object) -> OpenAIJudge:
    """A judge whose backoff is milliseconds, so retry tests stay fast."""
    cfg = validate_config({"backend": "openai", "model": "judge-model", "base_url": server.base_url,
                           "api_key": SECRET, **overrides})
    return OpenAIJudge(cfg, OpenAIClient(cfg, backoff=Backoff(base=0.01, cap=0.05)))


def scripted(*answers: object, then: object = None):
    """A chat handler returning ``answers`` in turn (thread-safe), then ``then`` (default: the fair judge)."""
    queue = list(answers)
    lock = threading.Lock()

    def chat(body: dict):
        with lock:
            answer = queue.pop(0) if queue else then
        if callable(answer):
            return answer(body)
        return fair_judge(body) if answer is None else answer

    return chat


def test_good_answers_give_orders_scores_and_usage() -> None:
    with OpenAIProtocolServer(chat=fair_judge) as server:
        ranker = judge(server)
        rankings = ranker.rank(requests(3))
    for r in rankings:
        assert not r.failed and r.order == [1, 3, 0, 2]
        assert r.scores == [5.0, 15.0, 0.0, 10.0]
        assert r.metadata["prompt_tokens"] > 0 and r.metadata["completion_tokens"] > 0
        assert r.metadata["repairs"] == 0 and "rank:" in r.raw
    body = server.requests[0]
    assert body["model"] == "judge-model" and body["temperature"] == 0.0 and body["max_completion_tokens"] == 2048
    stats = ranker.stats
    assert stats["calls"] == 3 and stats["judged"] == 3 and stats["failed"] == 0 and stats["retries"] == 0
    assert stats["prompt_tokens"] == sum(r.metadata["prompt_tokens"] for r in rankings)


def test_single_candidate_needs_no_call() -> None:
    with OpenAIProtocolServer(chat=fair_judge) as server:
        rankings = judge(server).rank([RankRequest(prompt="p", candidates=["only"])])
    assert rankings[0].order == [0] and not server.requests


@pytest.mark.parametrize("errors", [[RATE_LIMIT], [SERVER_ERROR, SERVER_ERROR]], ids=["429", "500x2"])
def test_transient_errors_are_retried(errors: list) -> None:
    with OpenAIProtocolServer(chat=scripted(*errors)) as server:
        ranker = judge(server)
        [r] = ranker.rank(requests(1))
    assert not r.failed and r.order == [1, 3, 0, 2]
    assert r.metadata["retries"] == len(errors) and len(server.requests) == len(errors) + 1
    assert ranker.stats["retries"] == len(errors)


def test_slow_answer_times_out_and_is_retried() -> None:
    def slow_then_fair(body: dict) -> str:
        threading.Event().wait(1.5)
        return fair_judge(body)

    with OpenAIProtocolServer(chat=scripted(slow_then_fair)) as server:
        [r] = judge(server, timeout=0.4).rank(requests(1))
    assert not r.failed and r.metadata["retries"] == 1 and len(server.requests) == 2


def test_retries_exhausted_is_a_recorded_failure() -> None:
    with OpenAIProtocolServer(chat=scripted(then=SERVER_ERROR)) as server:
        ranker = judge(server, max_retries=2)
        [r] = ranker.rank(requests(1))
    assert r.failed and r.order == [] and "HTTP 500" in r.error and "after 2 retries" in r.error
    assert len(server.requests) == 3 and ranker.stats["failed"] == 1 and ranker.stats["failed_calls"] == 1


def test_rejected_key_stops_the_run_with_a_config_error() -> None:
    with OpenAIProtocolServer(chat=scripted(then=(401, {"error": {"message": "bad key"}}))) as server:
        with pytest.raises(EngineError, match="401: bad key"):
            judge(server).rank(requests(1))
        assert len(server.requests) == 1  # not retried


def test_garbage_is_repaired() -> None:
    with OpenAIProtocolServer(chat=scripted("I like the second one.", "rank: [1, 4, 3, 0, 2]")) as server:
        [r] = judge(server).rank(requests(1))
    assert not r.failed and r.order == [1, 3, 0, 2] and r.metadata["repairs"] == 1
    repair = server.requests[1]["messages"]
    assert [m["role"] for m in repair] == ["system", "user", "assistant", "user"]
    assert repair[2]["content"] == "I like the second one." and "no 'rank: [...]' line" in repair[3]["content"]
    assert "I like the second one." in r.raw and "rank: [1, 4, 3, 0, 2]" in r.raw


def test_persistent_garbage_fails_with_raw_text_and_reason() -> None:
    with OpenAIProtocolServer(chat=scripted(then="rank: [0, 0, 1]")) as server:
        ranker = judge(server, max_repairs=2)
        [r] = ranker.rank(requests(1))
    assert r.failed and r.order == [] and "after 3 answer(s)" in r.error and "more than once" in r.error
    assert "rank: [0, 0, 1]" in r.raw and len(server.requests) == 3
    assert ranker.stats["failed"] == 1 and ranker.stats["repairs"] == 2


@pytest.mark.parametrize("limit", [1, 2])
def test_concurrency_is_bounded(limit: int) -> None:
    with OpenAIProtocolServer(chat=fair_judge, delay=0.15) as server:
        rankings = judge(server, max_concurrency=limit).rank(requests(6))
    assert all(not r.failed for r in rankings)
    assert server.max_in_flight == limit


def test_cache_second_run_makes_no_requests_and_holds_no_key(tmp_path: Path) -> None:
    with OpenAIProtocolServer(chat=fair_judge) as server:
        cfg = {"backend": "openai", "model": "judge-model", "base_url": server.base_url, "api_key": SECRET,
               "cache_dir": str(tmp_path / "cache")}
        first = build_ranker(cfg).rank(requests(3))
        assert len(server.requests) == 3
        again = build_ranker({**cfg, "max_concurrency": 1, "api_key": "sk-rotated"})
        second = again.rank(requests(3))
        assert len(server.requests) == 3
        assert [r.order for r in second] == [r.order for r in first]
        assert again.stats["cache_hits"] == 3 and again.stats["cache_misses"] == 0
        build_ranker({**cfg, "temperature": 0.7}).rank(requests(1))  # another setting is another judgement
        assert len(server.requests) == 4
    files = list((tmp_path / "cache").rglob("*.json"))
    assert len(files) == 4
    assert all(SECRET not in f.read_text() for f in files)


def test_failures_are_not_cached(tmp_path: Path) -> None:
    with OpenAIProtocolServer(chat=scripted("nope", "nope")) as server:
        cfg = {"backend": "openai", "model": "m", "base_url": server.base_url, "api_key": SECRET,
               "cache_dir": str(tmp_path)}
        assert build_ranker(cfg).rank(requests(1))[0].failed
        assert not build_ranker(cfg).rank(requests(1))[0].failed  # asked again, now answered
    assert len(server.requests) == 3


def test_permutations_aggregate_and_report_consistency() -> None:
    with OpenAIProtocolServer(chat=fair_judge) as server:
        ranker = build_ranker({"backend": "openai", "model": "m", "base_url": server.base_url, "api_key": SECRET,
                               "permutations": 3})
        rankings = ranker.rank(requests(2))
    assert len(server.requests) == 6
    for i in range(2):
        presented = {tuple(shown(b)) for b in server.requests if f"question {i}\n" in question(b)}
        assert len(presented) == 3 and ("ok", "best", "bad", "good") in presented  # identity is one of them
    for r in rankings:
        assert r.order == [1, 3, 0, 2]
        assert r.metadata["self_consistency"] == 1.0 and r.metadata["failed_permutations"] == 0
        assert r.metadata["position0_expected"] == 0.25
        assert [p["order"] for p in r.metadata["presentations"]] == [[1, 3, 0, 2]] * 3
    stats = ranker.stats
    assert stats["self_consistency_mean"] == 1.0 and stats["calls"] == 6 and stats["permutations"] == 3


def test_position_biased_judge_is_measured() -> None:
    with OpenAIProtocolServer(chat=lambda body: "rank: [0, 1, 2, 3]") as server:  # always "first shown wins"
        ranker = build_ranker({"backend": "openai", "model": "m", "base_url": server.base_url, "api_key": SECRET,
                               "permutations": 4})
        [r] = ranker.rank(requests(1))
    assert r.metadata["position0_first"] == 1.0 and r.metadata["self_consistency"] < 1.0
    assert ranker.stats["position0_first_rate"] == 1.0 and ranker.stats["position0_expected_rate"] == 0.25


def test_api_key_never_in_metadata_stats_or_raw() -> None:
    with OpenAIProtocolServer(chat=scripted("garbage", then=fair_judge)) as server:
        ranker = build_ranker({"backend": "openai", "model": "m", "base_url": server.base_url, "api_key": SECRET,
                               "permutations": 2})
        rankings = ranker.rank(requests(2))
        text = json.dumps([r.to_dict() for r in rankings]) + json.dumps(ranker.stats, default=str)
    assert SECRET not in text and SECRET not in repr(validate_config({"backend": "openai", "model": "m",
                                                                      "api_key": SECRET}))


def test_api_key_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_JUDGE_KEY", raising=False)
    cfg = validate_config({"backend": "openai", "model": "m", "api_key_env": "MY_JUDGE_KEY"})
    with pytest.raises(EngineError, match="environment variable MY_JUDGE_KEY is not set"):
        resolve_api_key(cfg)
    local = validate_config({"backend": "openai", "model": "m", "api_key_env": "MY_JUDGE_KEY",
                             "base_url": "http://localhost:8000/v1"})
    assert resolve_api_key(local) == "EMPTY"  # local servers accept any key
    monkeypatch.setenv("MY_JUDGE_KEY", "from-env")
    assert resolve_api_key(cfg) == "from-env" and resolve_api_key(local) == "from-env"


def test_cost_from_prices() -> None:
    with OpenAIProtocolServer(chat=fair_judge) as server:
        ranker = judge(server, prices={"prompt": 0.03, "completion": 0.06})
        ranker.rank(requests(1))
    stats = ranker.stats
    expected = (stats["prompt_tokens"] * 0.03 + stats["completion_tokens"] * 0.06) / 1000
    assert stats["cost_usd"] == pytest.approx(expected)


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(RankerConfigError, match="temprature"):
        validate_config({"backend": "openai", "model": "m", "temprature": 0.5})
