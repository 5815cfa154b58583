"""``constrain: rank_line``: the regex admits exactly the rankings the parser accepts, the ``openai`` judge sends it
as vLLM's ``structured_outputs`` and refuses a server that ignores it, and the key leaves old cache entries valid.

The ``vllm`` backend's side is in test_vllm_judge.py (a scripted engine) and test_vllm_integration.py /
test_vllm_real_judge.py (real vLLM)."""

from __future__ import annotations

import itertools
import re

import pytest
from helpers.openai_server import OpenAIProtocolServer

from rankers import RankerConfigError, RankRequest, build_ranker, validate_config
from rankers.judging.constraints import RANK_LINE_PERMUTATIONS_UP_TO, rank_line_regex, rank_line_tokens
from rankers.judging.parsing import ParseError, parse_ranking
from rankers.wrappers.cache import cache_key


def line(indices: tuple[int, ...] | list[int]) -> str:
    return "rank: [" + ", ".join(map(str, indices)) + "]"


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_the_regex_admits_exactly_the_permutations(n: int) -> None:
    regex = re.compile(rank_line_regex(n))
    permutations = set(itertools.permutations(range(n)))
    # Every sequence of n-1, n or n+1 indices from 0 to n (n: out of range, the judge's own answer).
    for length in (n - 1, n, n + 1):
        for indices in itertools.product(range(n + 1), repeat=length):
            assert bool(regex.fullmatch(line(indices))) == (indices in permutations), line(indices)
    for p in permutations:  # and the parser reads each one as that order
        assert parse_ranking(line(p), n) == (list(p), None)


@pytest.mark.parametrize("text", ["rank: [0,1,2]", "rank: [0, 1, 2] ", " rank: [0, 1, 2]", "Rank: [0, 1, 2]",
                                  "rank: 0, 1, 2", "rank: [0, 1, 2]\n", "rank: [0, 1, 2]\nrank: [2, 1, 0]",
                                  "Response 0 is best.\nrank: [0, 1, 2]", "rank: [00, 1, 2]", "rank: [0, 1, 2,]"])
def test_the_regex_fixes_the_format(text: str) -> None:
    assert re.fullmatch(rank_line_regex(3), text) is None


def test_past_the_enumeration_the_regex_is_looser_and_the_parser_rejects_repeats() -> None:
    n = RANK_LINE_PERMUTATIONS_UP_TO + 4  # 10: two-digit indices do not occur yet, 9 is the last
    regex = re.compile(rank_line_regex(n))
    assert len(rank_line_regex(n)) < 200  # not n! alternatives
    assert regex.fullmatch(line(list(reversed(range(n)))))
    repeated = [0, 0, *range(2, n)]
    assert regex.fullmatch(line(repeated))
    with pytest.raises(ParseError, match="appears more than once"):
        parse_ranking(line(repeated), n)
    for bad in ([*range(n - 1), n], list(range(n - 1)), [*range(n), 0], [10, *range(1, n)]):
        assert regex.fullmatch(line(bad)) is None, line(bad)
    twelve = re.compile(rank_line_regex(12))
    assert twelve.fullmatch(line([11, 10, *range(10)])) and twelve.fullmatch(line([12, *range(11)])) is None


def test_the_budget_fits_the_longest_line_and_no_more() -> None:
    for n in (2, 4, 10, 12):
        longest = line(list(range(n)))
        assert len(longest) < rank_line_tokens(n) <= len(longest) + 8


def test_max_tokens_caps_the_budget() -> None:
    cfg = validate_config({"backend": "vllm", "model": "m", "constrain": "rank_line"})
    assert cfg.completion_tokens(4) == rank_line_tokens(4) and cfg.decoding_regex(4) == rank_line_regex(4)
    assert validate_config({"backend": "vllm", "model": "m", "constrain": "rank_line",
                            "max_tokens": 5}).completion_tokens(4) == 5
    free = validate_config({"backend": "vllm", "model": "m"})
    assert free.constrain == "none" and free.completion_tokens(4) == 2048 and free.decoding_regex(4) is None


def requests() -> list[RankRequest]:
    return [RankRequest(prompt="q", candidates=["a", "b", "c", "d"], id="four"),
            RankRequest(prompt="q", candidates=["a", "b"], id="two"),
            RankRequest(prompt="q", candidates=["only"], id="one")]


def constrained_judge(server: OpenAIProtocolServer, **overrides: object):
    return build_ranker({"backend": "openai", "model": "judge", "base_url": server.base_url, "api_key": "x",
                         "constrain": "rank_line", "max_retries": 0, **overrides})


def reversed_line(body: dict) -> str:
    """A rank line a constrained judge may write: the candidates shown (``###Response i:``), last first."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return line(list(reversed(range(len(re.findall(r"^###Response \d+:$", user, flags=re.MULTILINE))))))


def test_the_openai_judge_sends_the_regex_and_a_small_budget() -> None:
    with OpenAIProtocolServer(chat=reversed_line) as server:
        judge = constrained_judge(server)
        rankings = judge.rank(requests())
    assert [r.order for r in rankings] == [[3, 2, 1, 0], [1, 0], [0]]
    assert all(r.scores is None for r in rankings)  # the constrained judge writes no scores
    assert rankings[0].raw == "rank: [3, 2, 1, 0]" and rankings[0].metadata["repairs"] == 0
    bodies = sorted(server.requests, key=lambda b: -len(b["structured_outputs"]["regex"]))
    assert len(bodies) == 2  # a single candidate needs no judge
    assert [b["structured_outputs"] for b in bodies] == [{"regex": rank_line_regex(4)}, {"regex": rank_line_regex(2)}]
    assert [b["max_completion_tokens"] for b in bodies] == [rank_line_tokens(4), rank_line_tokens(2)]
    assert "guided_regex" not in bodies[0]


def test_the_free_judge_sends_no_constraint() -> None:
    with OpenAIProtocolServer(chat=lambda body: "rank: [0, 1]") as server:
        build_ranker({"backend": "openai", "model": "judge", "base_url": server.base_url, "api_key": "x"}).rank(
            requests()[1:2])
    assert "structured_outputs" not in server.requests[0] and server.requests[0]["max_completion_tokens"] == 2048


def test_a_repeat_past_the_enumeration_is_re_asked_under_the_same_constraint() -> None:
    n = RANK_LINE_PERMUTATIONS_UP_TO + 1
    answers = [line([0, 0, *range(2, n)]), line(list(range(n)))]
    with OpenAIProtocolServer(chat=lambda body: answers.pop(0)) as server:
        [ranking] = constrained_judge(server).rank([RankRequest(prompt="q", candidates=[str(i) for i in range(n)])])
    assert ranking.order == list(range(n)) and ranking.metadata["repairs"] == 1
    assert [b["structured_outputs"]["regex"] for b in server.requests] == [rank_line_regex(n)] * 2
    assert "appears more than once" in server.requests[1]["messages"][-1]["content"]


def test_a_server_that_ignores_the_constraint_stops_the_ranking() -> None:
    free_text = "Response 0 is the best answer because it is correct.\nrank: [0, 1]"
    with OpenAIProtocolServer(chat=lambda body: free_text) as server:
        judge = constrained_judge(server)
        with pytest.raises(RankerConfigError, match=r"constrain: rank_line was not applied by http://127\.0\.0\.1.*"
                                                    r"'Response 0 is the best.*needs a vLLM server"):
            judge.rank(requests()[1:2])


def test_openai_itself_is_refused_at_validation() -> None:
    for base_url in (None, "https://api.openai.com/v1", ["http://localhost:8000/v1", "https://api.openai.com/v1"]):
        with pytest.raises(RankerConfigError, match="constrain: rank_line needs a vLLM server"):
            validate_config({"backend": "openai", "model": "gpt-4", "constrain": "rank_line", "base_url": base_url})
    with pytest.raises(RankerConfigError, match="constrain: rank_line is for the contextual judges"):
        validate_config({"backend": "pairwise", "model": "m", "base_url": "http://localhost:8000/v1",
                         "constrain": "rank_line"})
    with pytest.raises(RankerConfigError, match="constrain"):
        validate_config({"backend": "vllm", "model": "m", "constrain": "json"})


def test_the_new_key_keeps_old_cache_entries_and_the_constraint_gets_its_own() -> None:
    request = requests()[0]
    before = {"backend": "openai", "model": "m", "prompt": "lmops", "ensemble": [{"backend": "openai"}]}
    now = validate_config({"backend": "openai", "model": "m", "base_url": "http://h/v1"}).model_dump()
    assert now["constrain"] == "none"
    assert cache_key(request, {**before, "constrain": "none",
                               "ensemble": [{"backend": "openai", "constrain": "none"}]}) == cache_key(request, before)
    assert cache_key(request, {**before, "constrain": "rank_line"}) != cache_key(request, before)
