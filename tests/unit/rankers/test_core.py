"""Ranker plumbing without models: function backend, aggregation math, permutations, cache, ensemble, pairwise
tournaments (against the local OpenAI-protocol server) and the agreement report."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Sequence

import pytest
from helpers.openai_server import OpenAIProtocolServer
from helpers.score_functions import QUALITY

from rankers import RankerConfigError, Ranking, RankRequest, build_ranker
from rankers.aggregate import borda, bradley_terry, copeland, kendall_tau, mean_pairwise_tau, top1_agree
from rankers.agreement import agreement
from rankers.backends.pairwise import parse_verdict
from rankers.wrappers.cache import CachedRanker, cache_key
from rankers.wrappers.permutations import PermutedRanker, presentation_orders


def req(*candidates: str, prompt: str = "p") -> RankRequest:
    return RankRequest(prompt=prompt, candidates=list(candidates))


# ---- function ----

def test_function_backend_orders_by_scores() -> None:
    ranker = build_ranker({"backend": "function", "callable": "helpers.score_functions:by_length"})
    [r] = ranker.rank([req("aa", "a", "aaa")])
    assert r.order == [2, 0, 1] and r.scores == [2.0, 1.0, 3.0] and not r.failed


@pytest.mark.parametrize("spec, message", [
    ("test_rankers_core.by_length", "not of the form 'package.module:function'"),
    ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
    ("helpers.score_functions:missing", "has no attribute 'missing'"),
    ("helpers.score_functions:NOT_CALLABLE", "is not callable"),
])
def test_function_backend_config_errors(spec: str, message: str) -> None:
    with pytest.raises(RankerConfigError, match=message):
        build_ranker({"backend": "function", "callable": spec})


@pytest.mark.parametrize("spec, message", [("wrong_size", "returned 1 scores for 2 candidates"),
                                           ("not_a_number", "non-finite score")])
def test_function_backend_rejects_bad_scores(spec: str, message: str) -> None:
    ranker = build_ranker({"backend": "function", "callable": f"helpers.score_functions:{spec}"})
    with pytest.raises(ValueError, match=message):
        ranker.rank([req("a", "b")])


# ---- aggregate ----

def test_kendall_tau_hand_computed() -> None:
    assert kendall_tau([0, 1, 2, 3], [0, 1, 2, 3]) == 1.0
    assert kendall_tau([0, 1, 2, 3], [3, 2, 1, 0]) == -1.0
    assert kendall_tau([0, 1, 2, 3], [1, 0, 3, 2]) == pytest.approx(1 / 3)  # 2 of 6 pairs swapped
    assert kendall_tau([2, 0, 1], [0, 2, 1]) == pytest.approx(1 / 3)
    assert kendall_tau([0], [0]) == 1.0
    assert mean_pairwise_tau([[0, 1, 2], [0, 1, 2], [2, 1, 0]]) == pytest.approx((1 - 1 - 1) / 3)
    assert mean_pairwise_tau([[0, 1]]) is None
    with pytest.raises(ValueError, match="not an order of 3"):
        kendall_tau([0, 1, 2], [0, 1, 1])


def test_borda_hand_computed() -> None:
    order, points = borda([[0, 1, 2], [1, 0, 2], [1, 2, 0]], weights=[1, 1, 2])
    # points: c0 = 2+1+0*2 = 3, c1 = 1+2+2*2 = 7, c2 = 0+0+1*2 = 2; divided by total weight 4
    assert points == [0.75, 1.75, 0.5] and order == [1, 0, 2]
    assert borda([[0, 1], [1, 0]]) == ([0, 1], [0.5, 0.5])  # tie broken by the first order
    assert borda([[2, 0, 1]])[0] == [2, 0, 1]
    with pytest.raises(ValueError, match="2 weights for 1 orders"):
        borda([[0, 1]], [1, 1])
    assert top1_agree([1, 0], [1, 0]) and not top1_agree([1, 0], [0, 1])


def test_copeland_and_bradley_terry() -> None:
    wins = [[0, 2, 2], [0, 0, 1.5], [0, 0.5, 0]]  # 0 beats all; 1 beats 2 (one win, one tie)
    assert copeland(wins) == [2.0, 1.0, 0.0]
    strengths = bradley_terry(wins)
    assert strengths[0] > strengths[1] > strengths[2] and sum(strengths) == pytest.approx(0.0, abs=1e-9)
    two = bradley_terry([[0, 3], [1, 0]], prior=0.5)  # closed form: log-odds = ln((3 + .5) / (1 + .5))
    assert two[0] - two[1] == pytest.approx(math.log(3.5 / 1.5), abs=1e-6)
    assert copeland([[0, 1], [1, 0]]) == [0.5, 0.5]


# ---- permutations ----

class LengthJudge:
    """Ranks by length (position-independent); fails on presentations listed in ``fail_when_first``."""

    name = "length"

    def __init__(self, fail_when_first: Sequence[str] = ()) -> None:
        self.fail_when_first = set(fail_when_first)
        self.seen: list[list[str]] = []

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        out = []
        for r in requests:
            self.seen.append(list(r.candidates))
            if r.candidates[0] in self.fail_when_first:
                out.append(Ranking.failure("judge refused", raw="no"))
            else:
                out.append(Ranking(order=sorted(range(len(r.candidates)), key=lambda i: -len(r.candidates[i])),
                                   raw="ok"))
        return out


def test_presentation_orders() -> None:
    import random

    orders = presentation_orders(4, 5, random.Random(1))
    assert orders[0] == [0, 1, 2, 3] and len({tuple(o) for o in orders}) == 5
    two = presentation_orders(2, 3, random.Random(0))  # only 2 distinct orders exist: both shown, then repeats
    assert two[:2] == [[0, 1], [1, 0]] and len(two) == 3


def test_permuted_ranker_maps_back_and_is_deterministic() -> None:
    judge = LengthJudge()
    ranker = PermutedRanker(judge, k=3, seed=7)
    request = req("aa", "a", "aaaa", "aaa")
    [r] = ranker.rank([request])
    assert r.order == [2, 3, 0, 1] and r.metadata["self_consistency"] == 1.0
    assert judge.seen[0] == request.candidates  # identity first
    assert r.metadata["position0_expected"] == 0.25 and len(r.metadata["presentations"]) == 3
    again = LengthJudge()
    PermutedRanker(again, k=3, seed=7).rank([request])
    assert again.seen == judge.seen  # same content, same presentations
    assert request.candidates == ["aa", "a", "aaaa", "aaa"]  # the caller's request is untouched


def test_permuted_ranker_permutes_carried_logprobs() -> None:
    captured: list[RankRequest] = []

    class Spy(LengthJudge):
        def rank(self, requests):
            captured.extend(requests)
            return super().rank(requests)

    PermutedRanker(Spy(), k=2).rank([RankRequest(prompt="p", candidates=["a", "bb"], logprobs=[-1.0, -2.0],
                                                 lengths=[1, 2])])
    for r in captured:
        assert r.logprobs == [-float(len(c)) for c in r.candidates] and r.lengths == [len(c) for c in r.candidates]


def test_permuted_ranker_excludes_failed_presentations() -> None:
    request = req("aa", "a", "aaa")
    ranker = PermutedRanker(LengthJudge(fail_when_first={"a", "aaa"}), k=4, seed=3)
    [r] = ranker.rank([request])
    assert not r.failed and r.order == [2, 0, 1]
    assert r.metadata["failed_permutations"] == sum(1 for p in r.metadata["presentations"] if "error" in p) >= 1
    [dead] = PermutedRanker(LengthJudge(fail_when_first={"a", "aa", "aaa"}), k=3).rank([request])
    assert dead.failed and "all 3 presentations failed" in dead.error and dead.order == []


# ---- cache ----

class Counting(LengthJudge):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.calls = 0

    def rank(self, requests):
        self.calls += len(requests)
        return super().rank(requests)


def test_cache_hits_misses_and_key(tmp_path: Path) -> None:
    inner = Counting()
    config = {"backend": "x", "model": "m1", "api_key": "sk-1", "max_concurrency": 4}
    cached = CachedRanker(inner, tmp_path, config)
    first = cached.rank([req("aa", "a"), req("b", "bbb")])
    second = cached.rank([req("aa", "a"), req("b", "bbb"), req("c", "cc")])
    assert inner.calls == 3 and [r.order for r in second[:2]] == [r.order for r in first]
    assert cached.stats["cache_hits"] == 2 and cached.stats["cache_misses"] == 3
    base = req("aa", "a")
    assert cache_key(RankRequest(prompt="p", candidates=["aa", "a"], id="other"), config) == cache_key(base, config)
    assert cache_key(base, {**config, "api_key": "sk-2", "max_concurrency": 1}) == cache_key(base, config)
    assert cache_key(base, {**config, "model": "m2"}) != cache_key(base, config)
    assert cache_key(req("aa", "a", prompt="q"), config) != cache_key(base, config)


def test_an_endpoint_pool_is_not_part_of_the_cache_key() -> None:
    """#20: adding a server to a pool re-paid every judgement; a key without a pool is the one cached before."""
    request = RankRequest(prompt="p", candidates=["a", "bb"], id="1")
    config = {"backend": "openai", "model": "gpt-4", "base_url": "http://h/v1", "max_concurrency": 4,
              "temperature": 0.0}
    assert cache_key(request, config) == "cf289c78d48fdb0c8c362702c8dffed0750d06707ef45a852a0ad1a006cd1d76"
    pool = {"backend": "openai", "model": "gpt-4", "base_url": ["http://h/v1", "http://i/v1"]}
    assert cache_key(request, pool) == cache_key(request, {**pool, "base_url": ["http://i/v1"]})
    assert cache_key(request, config) != cache_key(request, {**config, "base_url": "http://other/v1"})


@pytest.mark.parametrize("backend, before", [
    ("teacher_logprob", "c3f0e80c2987307355956b366098c59744e1b2bb7294fd9af75b2af53dba074c"),
    ("reward_model", "6fcd6309fa285fe0a0d91b47a5b556d02f3e02856f630cc5224dec7618471774")])
def test_shared_prefix_keeps_the_rankings_cached_before_it(backend: str, before: str) -> None:
    """#22: running each prompt once is throughput (same scores), so either value hits the entries cached before the
    key existed (``before``: the key of the validated default config then)."""
    from rankers.registry import validate_config

    request = RankRequest(prompt="p", candidates=["a", "bb"], id="1")
    for value in (True, False):
        config = validate_config({"backend": backend, "model": "m", "shared_prefix": value})
        assert cache_key(request, config.model_dump(exclude={"cache_dir"})) == before


def test_cache_skips_failures_and_survives_corrupt_entries(tmp_path: Path) -> None:
    inner = Counting(fail_when_first={"x"})
    cached = CachedRanker(inner, tmp_path, {})
    assert cached.rank([req("x", "y")])[0].failed
    cached.rank([req("x", "y")])
    assert inner.calls == 2 and not list(tmp_path.rglob("*.json"))
    cached.rank([req("ok", "fine")])
    [entry] = list(tmp_path.rglob("*.json"))
    entry.write_text("{not json")
    assert cached.rank([req("ok", "fine")])[0].order == [1, 0] and inner.calls == 4
    assert json.loads(entry.read_text())["order"] == [1, 0]


def test_concurrent_writers_leave_whole_entries(tmp_path: Path) -> None:
    requests = [req("a" * i, "b") for i in range(1, 30)]
    rankers = [CachedRanker(LengthJudge(), tmp_path, {}) for _ in range(4)]
    threads = [threading.Thread(target=r.rank, args=(requests,)) for r in rankers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    files = list(tmp_path.rglob("*"))
    entries = [f for f in files if f.suffix == ".json"]
    assert len(entries) == len(requests) and not [f for f in files if f.name.endswith(".tmp")]
    assert all(json.loads(f.read_text())["order"] for f in entries)


# ---- ensemble ----

def test_ensemble_weighted_borda() -> None:
    members = [{"backend": "function", "callable": "helpers.score_functions:by_length"},
               {"backend": "function", "callable": "helpers.score_functions:by_quality"}]
    request = req("ok", "best", "good")  # both members order it [1, 2, 0]
    [equal] = build_ranker({"backend": "ensemble", "rankers": members}).rank([request])
    assert equal.order == [1, 2, 0] and [m["order"] for m in equal.metadata["members"]] == [[1, 2, 0], [1, 2, 0]]
    skewed = req("bad", "good", "ok")  # length order [1, 0, 2]; quality order [1, 2, 0]
    [r] = build_ranker({"backend": "ensemble", "rankers": members, "weights": [1, 3]}).rank([skewed])
    # points: c0 = (1 + 0*3)/4, c1 = (2 + 2*3)/4, c2 = (0 + 1*3)/4
    assert r.scores == [0.25, 2.0, 0.75] and r.order == [1, 2, 0]


def test_ensemble_validates_members() -> None:
    with pytest.raises(RankerConfigError, match=r"rankers\[1\]: ranker 'function': callable"):
        build_ranker({"backend": "ensemble", "rankers": [
            {"backend": "function", "callable": "helpers.score_functions:by_length"},
            {"backend": "function", "callable": "nope_module:f"}]})
    with pytest.raises(RankerConfigError, match="2 weights for 1 rankers"):
        build_ranker({"backend": "ensemble", "rankers": [{"backend": "function",
                                                           "callable": "helpers.score_functions:by_length"}],
                      "weights": [1, 2]})


def test_ensemble_member_failure_is_outvoted_not_fatal() -> None:
    from rankers.backends.ensemble import EnsembleRanker

    ensemble = EnsembleRanker([LengthJudge(fail_when_first={"x"}), LengthJudge()])
    [r] = ensemble.rank([req("x", "yy")])
    assert r.order == [1, 0] and "error" in r.metadata["members"][0]
    [dead] = EnsembleRanker([LengthJudge(fail_when_first={"x"})]).rank([req("x", "y")])
    assert dead.failed and "every member failed" in dead.error


# ---- pairwise ----

def shown_pair(body: dict) -> tuple[str, str]:
    text = body["messages"][0]["content"]
    return (text.split("### Response A\n")[1].split("\n")[0], text.split("### Response B\n")[1].split("\n")[0])


def fair_pair_judge(body: dict) -> str:
    a, b = shown_pair(body)
    verdict = "tie" if QUALITY[a] == QUALITY[b] else "A" if QUALITY[a] > QUALITY[b] else "B"
    return f"Comparing the two.\n**Verdict:** {verdict}"


@pytest.mark.parametrize("method", ["copeland", "bradley_terry"])
def test_pairwise_tournament(method: str) -> None:
    with OpenAIProtocolServer(chat=fair_pair_judge) as server:
        ranker = build_ranker({"backend": "pairwise", "model": "m", "base_url": server.base_url, "api_key": "k",
                               "method": method})
        [r] = ranker.rank([req("ok", "best", "bad", "good")])
    assert len(server.requests) == 12  # 4 * 3 ordered pairs
    assert r.order == [1, 3, 0, 2] and r.metadata["pair_consistency"] == 1.0
    assert len({shown_pair(b) for b in server.requests}) == 12  # both orders of every pair
    assert ranker.stats["comparisons"] == 12 and ranker.stats["calls"] == 12
    assert ranker.stats["pair_consistency"] == 1.0 and ranker.stats["failed_comparisons"] == 0
    assert not {"consistent_pairs", "pairs_judged_twice"} & set(ranker.stats)  # folded into pair_consistency


def test_pairwise_measures_position_bias_and_fails_unjudged_pairs() -> None:
    with OpenAIProtocolServer(chat=lambda body: "verdict: A") as server:
        [r] = build_ranker({"backend": "pairwise", "model": "m", "base_url": server.base_url,
                            "api_key": "k"}).rank([req("ok", "best", "bad")])
    assert r.metadata["pair_consistency"] == 0.0 and r.order == [0, 1, 2]  # every pair a draw
    with OpenAIProtocolServer(chat=lambda body: "no idea") as server:
        [dead] = build_ranker({"backend": "pairwise", "model": "m", "base_url": server.base_url, "api_key": "k",
                               "max_repairs": 1}).rank([req("ok", "best")])
    assert dead.failed and "no readable verdict" in dead.error and len(server.requests) == 4


@pytest.mark.parametrize("text, verdict", [("verdict: A", "A"), ("Verdict: **B**", "B"), ("VERDICT = tie", "tie"),
                                           ("B", "B"), ("verdict: Response A", "A"), ("verdict: A\nverdict: B", "B")])
def test_parse_verdict(text: str, verdict: str) -> None:
    assert parse_verdict(text) == verdict


def test_parse_verdict_rejects_prose() -> None:
    with pytest.raises(ValueError, match="no 'verdict: A'"):
        parse_verdict("A is better")


# ---- agreement ----

def test_agreement_by_id_and_category() -> None:
    a = [{"id": "1", "order": [0, 1, 2], "metadata": {"task": "add"}},
         {"id": "2", "order": [2, 1, 0], "task": "sort"},
         {"id": "3", "order": [0, 1], "failed": False},
         {"id": "4", "order": [], "failed": True},
         {"id": "only-a", "order": [0]}]
    b = [{"id": "2", "order": [2, 0, 1]}, {"id": "1", "order": [0, 1, 2]}, {"id": "3", "order": [1, 0]},
         {"id": "4", "order": [0, 1]}]
    result = agreement(a, b, category_key="task")
    # taus: id1 = 1, id2: [2,1,0] vs [2,0,1] = 1/3, id3 = -1
    assert result["count"] == 3 and result["kendall_tau"] == pytest.approx((1 + 1 / 3 - 1) / 3)
    assert result["top1_agreement"] == pytest.approx(2 / 3)
    assert result["failed"] == 1 and result["only_in_a"] == 1 and result["only_in_b"] == 0
    assert result["by_category"] == {"(none)": {"count": 1, "kendall_tau": -1.0, "top1_agreement": 0.0},
                                     "add": {"count": 1, "kendall_tau": 1.0, "top1_agreement": 1.0},
                                     "sort": {"count": 1, "kendall_tau": pytest.approx(1 / 3),
                                              "top1_agreement": 1.0}}
    with pytest.raises(ValueError, match="id '2' appears twice"):
        agreement(a, b + [{"id": "2", "order": [0, 1, 2]}])
