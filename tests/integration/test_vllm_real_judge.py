"""The contextual judge on a real model: SmolLM2-135M-Instruct (shipped weights) served by vLLM on CPU.

Why: the other vLLM tests judge with a random-init model, whose garbage always ends on the failure path. A real
instruct model writes plausible text that sometimes holds a ``rank:`` line and sometimes does not, which is where
an invented or half-parsed order would slip in. Whatever it writes, each ranking must be a valid permutation
that the judge's own final answer states, or a counted failure carrying the answers: never invented.

The same model under ``constrain: rank_line`` (decoding constrained to the rank line by the server's structured
outputs) must rank every request: the regex admits only permutations, so nothing can fail to parse.

The server is the cheaper of the two vLLM paths here (no ``__main__``-guarded subprocess of our own); the
in-process ``vllm`` judge shares the prompt, parser and repair with it (``rankers.judging.contextual``). One server
serves both tests. Skipped when no interpreter has vllm (``$VLLM_PYTHON``, see ``.ci/install_vllm.sh``).
"""

from __future__ import annotations

import re
from typing import Iterator

import pytest
from helpers.vllm_server import VLLMServer, vllm_python

from rankers import RankRequest, build_ranker
from rankers.judging.constraints import RANK_LINE_PERMUTATIONS_UP_TO, rank_line_regex
from rankers.judging.parsing import ParseError, parse_ranking
from rankers.llm.conversation import REPAIR_SEPARATOR
from tuna_open.models import resolve_model

pytestmark = pytest.mark.vllm

REQUESTS = [
    RankRequest(prompt="Add the two numbers.", input="12 30",
                candidates=["42", "The answer is 41.", "I do not know.", "12 30"], id="add"),
    RankRequest(prompt="What is the capital of France?",
                candidates=["Berlin.", "The capital of France is Paris.", "Paris", "France"], id="capital"),
]


@pytest.fixture(scope="module")
def server() -> Iterator[VLLMServer]:
    python = vllm_python()
    if python is None:
        pytest.skip("vllm is not importable here and VLLM_PYTHON is not set (see .ci/install_vllm.sh)")
    model = resolve_model("smollm2-135m-instruct")
    # Its own chat template (chat_template=None), as a user serves it; chunked prefill off for seeded CPU runs.
    with VLLMServer(model, python=python, chat_template=None, extra_args=["--no-enable-chunked-prefill"]) as server:
        yield server


def judge(server: VLLMServer, **keys: object):
    return build_ranker({"backend": "openai", "model": server.model, "base_url": server.base_url, "api_key": "EMPTY",
                         "max_repairs": 1, "max_retries": 0, "timeout": 600, **keys})


def test_smollm2_judge_rankings_are_permutations_or_counted_failures(server: VLLMServer) -> None:
    ranker = judge(server, max_tokens=96)
    rankings = ranker.rank(REQUESTS)
    stats = ranker.stats

    assert len(rankings) == len(REQUESTS)
    assert stats["failed_calls"] == 0 and stats["completion_tokens"] > 0  # the real model answered every call
    assert stats["judged"] + stats["failed"] == len(REQUESTS)
    assert stats["failed"] == sum(r.failed for r in rankings)
    for request, ranking in zip(REQUESTS, rankings):
        n = len(request.candidates)
        assert ranking.raw, "every answer is kept for the audit trail"
        final = ranking.raw.split(REPAIR_SEPARATOR)[-1]
        if ranking.failed:
            assert ranking.order == [] and ranking.scores is None
            assert ranking.error.startswith("no readable answer after")
            with pytest.raises(ParseError):  # the last answer really was unreadable
                parse_ranking(final, n, request.candidates)
        else:
            assert sorted(ranking.order) == list(range(n))
            assert parse_ranking(final, n, request.candidates)[0] == ranking.order  # what the judge wrote


def test_smollm2_judge_constrained_to_the_rank_line_ranks_every_request(server: VLLMServer) -> None:
    three = RankRequest(prompt="Name a primary colour.", candidates=["Red", "Blue", "Green."], id="three")
    seven = RankRequest(prompt="Say hi.", candidates=[f"hi {i}" for i in range(7)], id="seven")
    ranker = judge(server, constrain="rank_line")
    rankings = ranker.rank([*REQUESTS, three, seven])
    stats = ranker.stats

    assert stats["failed_calls"] == 0
    for request, ranking in zip([*REQUESTS, three, seven], rankings):
        n = len(request.candidates)
        answers = ranking.raw.split(REPAIR_SEPARATOR)
        # Every answer is exactly a rank line, so the server applied the regex: free-running, this model never
        # writes one (the test above; benchmarks/results/open_judge_cpu.json: 0 of 96).
        assert all(re.fullmatch(rank_line_regex(n), a) for a in answers), answers
        if n <= RANK_LINE_PERMUTATIONS_UP_TO:  # only permutations can be written: each request ranked at once
            assert not ranking.failed and len(answers) == 1 and ranking.scores is None
            assert sorted(ranking.order) == list(range(n))
        else:  # any 7 indices in range: a repeat is re-asked and may fail, never invented
            assert sorted(ranking.order) == list(range(n)) or "appears more than once" in ranking.error
