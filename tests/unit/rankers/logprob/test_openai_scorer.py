"""``teacher_logprob`` with ``engine: openai`` against a real local OpenAI-protocol server whose completions
endpoint echoes log-probs the test computes itself: with the tiny model (token-id mode, must equal the ``hf``
engine) or with a hand-made character tokenizer (text-offset mode)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.openai_server import OpenAIProtocolServer

from rankers import EngineError, RankRequest, build_ranker
from rankers.llm.client_settings import ClientSettings
from rankers.llm.openai_client import Backoff, CallFailed, OpenAIClient
from rankers.logprob.openai_scorer import OpenAILogprobScorer

REQUESTS = [
    RankRequest(prompt="Add 12 and 30.", candidates=["42", "The answer is 41.", "3 2 1 0"], id="a"),
    RankRequest(prompt="Reverse the list.", input="1 2 3", candidates=["3 2 1", "x"], id="b"),
]


def choice(index: int, token_logprobs: list, tokens: list[str], text_offset: list[int]) -> dict:
    return {"index": index, "text": "".join(tokens), "finish_reason": "length",
            "logprobs": {"tokens": tokens, "token_logprobs": token_logprobs, "text_offset": text_offset,
                         "top_logprobs": None}}


class ModelEcho:
    """Completions handler: echoes token-id prompts with the tiny model's log-probs, as vLLM does."""

    def __init__(self, model_dir: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.tok = AutoTokenizer.from_pretrained(model_dir)

    def __call__(self, body: dict) -> dict:
        assert body["echo"] is True and body["max_tokens"] == 0 and body["logprobs"] == 1
        choices = []
        for index, ids in enumerate(body["prompt"]):
            with torch.no_grad():
                logp = self.model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
            token_logprobs = [None] + [float(logp[k - 1, t]) for k, t in enumerate(ids) if k > 0]
            tokens = [self.tok.decode([t]) for t in ids]
            offsets = [sum(len(t) for t in tokens[:k]) for k in range(len(tokens))]
            choices.append(choice(index, token_logprobs, tokens, offsets))
        return {"choices": choices, "usage": {"prompt_tokens": sum(len(p) for p in body["prompt"]),
                                              "completion_tokens": 0, "total_tokens": 0}}


def char_echo(body: dict) -> dict:
    """Completions handler for text prompts: one token per character, log-prob -0.1 * (1 + position)."""
    choices = []
    for index, text in enumerate(body["prompt"]):
        logprobs = [None] + [-0.1 * (1 + k) for k in range(1, len(text))]
        choices.append(choice(index, logprobs, list(text), list(range(len(text)))))
    return {"choices": choices}


def openai_ranker(server: OpenAIProtocolServer, model: str, **overrides: object):
    return build_ranker({"backend": "teacher_logprob", "engine": "openai", "model": model,
                         "base_url": server.base_url, "api_key": "test", **overrides})


def test_token_mode_equals_the_hf_engine(tiny_model_dir: Path) -> None:
    hf = build_ranker({"backend": "teacher_logprob", "model": str(tiny_model_dir)}).rank(REQUESTS)
    with OpenAIProtocolServer(completions=ModelEcho(tiny_model_dir)) as server:
        ranker = openai_ranker(server, str(tiny_model_dir), max_concurrency=2)
        rankings = ranker.rank(REQUESTS)
    for got, want in zip(rankings, hf):
        assert got.metadata["lengths"] == want.metadata["lengths"]
        assert got.metadata["logprobs"] == pytest.approx(want.metadata["logprobs"], abs=1e-4)
        assert got.order == want.order and got.metadata["source"] == "openai"
    # One request per ranking request, all its candidates as token-id prompts ending in EOS.
    assert len(server.requests) == len(REQUESTS)
    eos = ModelEcho(tiny_model_dir).tok.eos_token_id
    assert all(ids[-1] == eos for body in server.requests for ids in body["prompt"])
    assert ranker.stats["calls"] == 2 and ranker.stats["prompt_tokens"] > 0


def test_text_mode_sums_the_candidate_span_by_text_offset() -> None:
    request = RankRequest(prompt="Q?", candidates=["ab", "abcd"])
    with OpenAIProtocolServer(completions=char_echo) as server:
        ranking = openai_ranker(server, "hosted-model", template="raw", lenpen=0.0).rank([request])[0]
    assert server.requests[0]["prompt"] == ["Q?ab", "Q?abcd"]
    # Characters 2.. are the candidate's; character k has log-prob -0.1 * (1 + k). No EOS in text mode.
    assert ranking.metadata["lengths"] == [2, 4]
    assert ranking.metadata["logprobs"] == pytest.approx([-0.1 * (3 + 4), -0.1 * (3 + 4 + 5 + 6)])
    assert ranking.order == [0, 1]


@pytest.mark.parametrize("broken, message", [
    (lambda body: {"choices": [choice(0, [None, -1.0], ["Q", "a"], [0, 1])]}, "1 choices for 2 prompts"),
    (lambda body: {"choices": [{"index": i, "text": p, "finish_reason": "length", "logprobs": None}
                               for i, p in enumerate(body["prompt"])]}, "no echoed logprobs"),
    (lambda body: {"choices": [choice(i, [None, None, None], list(p[:3]), [0, 1, 2])
                               for i, p in enumerate(body["prompt"])]}, "no logprob for a candidate token"),
])
def test_unusable_answers_are_errors_not_scores(broken, message: str) -> None:
    """An answer that does not read as scores is that request's counted failure (an unreadable reply), never a
    score and never a crash of the batch."""
    with OpenAIProtocolServer(completions=broken) as server:
        ranker = openai_ranker(server, "hosted-model", template="raw")
        [ranking] = ranker.rank([RankRequest(prompt="Q", candidates=["a", "b"])])
    assert ranking.failed and "unreadable reply" in ranking.error and message in ranking.error


def test_a_request_whose_scoring_keeps_failing_is_a_counted_failure() -> None:
    """One request's server error, after the client's retries, fails that request alone; the others are ranked."""
    def one_fails(body: dict) -> dict | tuple[int, dict]:
        if body["prompt"][0].startswith("broken"):
            return 500, {"error": {"message": "boom", "type": "server_error"}}
        return char_echo(body)

    requests = [RankRequest(prompt="Q?", candidates=["ab", "abcd"]),
                RankRequest(prompt="broken", candidates=["x", "y"], id="b"),
                RankRequest(prompt="R?", candidates=["abc", "a"])]
    with OpenAIProtocolServer(completions=one_fails) as server:
        ranker = openai_ranker(server, "hosted-model", template="raw", lenpen=0.0, max_retries=1)
        ranker.scorer.client.backoff = Backoff(base=0.01, cap=0.05)
        rankings = ranker.rank(requests)
        sent = [body["prompt"][0] for body in server.requests]
    assert sent.count("brokenx") == 2  # the first try and its one retry
    failed = rankings[1]
    assert failed.failed and failed.order == [] and failed.scores is None
    assert failed.error == "call failed: HTTP 500: boom after 1 retries" and failed.metadata == {"source": "openai"}
    assert [r.order for r in (rankings[0], rankings[2])] == [[0, 1], [1, 0]] and not rankings[0].failed
    assert ranker.stats["failed_requests"] == 1 and ranker.stats["scored_requests"] == 2
    assert ranker.stats["failed_calls"] == 1 and ranker.stats["calls"] == 3


def test_a_server_that_keeps_failing_fails_every_request() -> None:
    with OpenAIProtocolServer(completions=lambda body: (503, {"error": {"message": "down"}})) as server:
        ranker = openai_ranker(server, "hosted-model", max_retries=0)
        rankings = ranker.rank(REQUESTS)
    assert all(r.failed and r.order == [] and "HTTP 503: down" in r.error for r in rankings)
    assert ranker.stats["failed_requests"] == len(REQUESTS) and ranker.stats["scored_requests"] == 0


def test_the_scorer_alone_still_raises_a_failed_call() -> None:
    with OpenAIProtocolServer(completions=lambda body: (503, {"error": {"message": "down"}})) as server:
        scorer = OpenAILogprobScorer(OpenAIClient(ClientSettings(base_url=server.base_url, max_retries=0)), "m")
        with pytest.raises(CallFailed, match="HTTP 503"):
            scorer.score(["Q"], [["a", "b"]])


def test_a_rejected_key_still_stops_the_run() -> None:
    with OpenAIProtocolServer(completions=lambda body: (401, {"error": {"message": "bad key"}})) as server:
        ranker = openai_ranker(server, "hosted-model")
        with pytest.raises(EngineError, match="401: bad key"):
            ranker.rank(REQUESTS)
        # Never retried: at most one try per request (how many were in flight when the 401 stopped the run varies).
        assert 1 <= len(server.requests) <= len(REQUESTS)
