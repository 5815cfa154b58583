"""The OpenAI-protocol sampler against a real local server: request parameters, per-prompt seeds, summed
log-probs, output order under concurrency, and errors that stop sampling instead of inventing samples."""

from __future__ import annotations

import time

import pytest
from helpers.openai_server import OpenAIProtocolServer

from rankers.llm.openai_client import CallFailed
from tuna_open.generate import SamplerChoice, build_sampler
from tuna_open.generate.base import SamplingParams


def sampled(body: dict) -> dict:
    """``n`` choices naming the prompt, seed and choice; token log-probs -0.5 each, one token per word."""
    time.sleep(0.05 if body["prompt"].endswith("0") else 0.0)  # the first prompt answers last
    choices = []
    for i in range(body["n"]):
        words = [f"{body['prompt']}/seed{body['seed']}/{i}", "end"]
        logprobs = None
        if body.get("logprobs") is not None:
            logprobs = {"tokens": words, "token_logprobs": [-0.5] * len(words),
                        "text_offset": [0, len(words[0])], "top_logprobs": None}
        choices.append({"index": i, "text": " " + " ".join(words), "finish_reason": "stop", "logprobs": logprobs})
    return {"choices": choices[::-1]}  # choice order is the index, not the list order


def sampler(server: OpenAIProtocolServer, **options: object):
    choice = SamplerChoice(backend="openai", openai={"base_url": server.base_url, "api_key": "test", **options})
    return build_sampler("served-model", choice)


def test_samples_carry_logprobs_and_follow_prompt_order() -> None:
    params = SamplingParams(n=3, max_new_tokens=7, temperature=0.8, top_p=0.9, seed=10, logprobs=True)
    prompts = [f"p{i}" for i in range(4)]
    with OpenAIProtocolServer(completions=sampled) as server:
        out = sampler(server, max_concurrency=4).generate(prompts, params)
    assert [[s.text for s in samples] for samples in out] == [
        [f"p{i}/seed{10 + i}/{j} end" for j in range(3)] for i in range(4)]
    assert all(s.logprob == pytest.approx(-1.0) and s.num_tokens == 2 for samples in out for s in samples)
    body = server.requests[0]
    assert (body["model"], body["n"], body["max_tokens"], body["temperature"], body["top_p"], body["logprobs"]) == \
        ("served-model", 3, 7, 0.8, 0.9, 1)
    assert server.max_in_flight > 1


def test_without_logprobs_none_are_asked_or_reported() -> None:
    with OpenAIProtocolServer(completions=sampled) as server:
        out = sampler(server).generate(["p"], SamplingParams(n=2))
    assert "logprobs" not in server.requests[0]
    assert [(s.logprob, s.num_tokens) for s in out[0]] == [(None, None), (None, None)]


def test_a_short_answer_is_an_error() -> None:
    with OpenAIProtocolServer(completions=lambda body: {"choices": []}) as server:
        with pytest.raises(CallFailed, match="unreadable reply .*0 choices, 2 were asked"):
            sampler(server).generate(["p"], SamplingParams(n=2))


def test_unknown_option_is_rejected() -> None:
    with pytest.raises(ValueError, match="extra"):
        SamplerChoice(backend="openai", openai={"base_url": "http://127.0.0.1:1/v1", "batch_size": 4})
