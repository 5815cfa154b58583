"""The ``vllm`` judge's batching and repair rounds, fast: a scripted stand-in for ``vllm.LLM`` (the real engine
runs in test_vllm_integration.py). Checks that each round batches exactly the still-unreadable requests, that
a prompt too long for the engine fails alone, and that failures are counted, never turned into orders."""

from __future__ import annotations

import re
import sys
import types
from types import SimpleNamespace

import pytest

from rankers import RankRequest, validate_config
from rankers.backends.vllm_judge import VLLMJudge
from rankers.judging.constraints import rank_line_regex, rank_line_tokens
from rankers.judging.prompts import LMOPS_SYSTEM, lmops_prompt

REPAIR_MARK = "I could not read a ranking"


class CharTokenizer:
    """One token per character, so the stand-in engine can read its prompts back."""

    def __init__(self, chat_template: str | None = None) -> None:
        self.chat_template = chat_template

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [ord(c) for c in text]}

    def apply_chat_template(self, messages: list[dict], tokenize: bool, add_generation_prompt: bool) -> str:
        assert not tokenize and add_generation_prompt
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


class ScriptedLLM:
    """Answers by the instruction in the prompt: ``good`` ranks at once, ``repairable`` after the re-ask,
    anything else never."""

    def __init__(self, tokenizer: CharTokenizer, max_model_len: int = 100_000) -> None:
        self.tokenizer = tokenizer
        self.model_config = SimpleNamespace(max_model_len=max_model_len)
        self.batches: list[list[str]] = []

    def get_tokenizer(self) -> CharTokenizer:
        return self.tokenizer

    def generate(self, inputs: list[dict], params: object, use_tqdm: bool) -> list:
        prompts = ["".join(map(chr, i["prompt_token_ids"])) for i in inputs]
        self.batches.append(prompts)
        return [SimpleNamespace(outputs=[SimpleNamespace(text=self.answer(p), token_ids=[0, 0, 0])])
                for p in prompts]

    @staticmethod
    def answer(prompt: str) -> str:
        if "### Instruction:\ngood" in prompt:
            return "Response 0: [3]\nResponse 1: [9]\nResponse 2: [15]\nrank: [1, 2, 0]"
        if "### Instruction:\nrepairable" in prompt and REPAIR_MARK in prompt:
            return "rank: [0, 1, 2]"
        return "I like all of them."


@pytest.fixture(autouse=True)
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    """``SamplingParams`` is all the judge imports from vllm at ranking time (with ``StructuredOutputsParams``
    when constrained)."""
    module = types.ModuleType("vllm")
    module.SamplingParams = lambda **kwargs: SimpleNamespace(**kwargs)
    params = types.ModuleType("vllm.sampling_params")  # ... and, under constrain: rank_line, this
    params.StructuredOutputsParams = lambda **kwargs: SimpleNamespace(**kwargs)
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", params)


def judge(llm: ScriptedLLM, **overrides: object) -> VLLMJudge:
    return VLLMJudge(validate_config({"backend": "vllm", "model": "local-judge", **overrides}), llm=llm)


def request(instruction: str, n: int = 2) -> RankRequest:
    return RankRequest(prompt=instruction, candidates=[f"answer {i}" for i in range(n)])


def test_repair_rounds_batch_only_the_unreadable() -> None:
    llm = ScriptedLLM(CharTokenizer())
    ranker = judge(llm, max_repairs=2)
    good, repairable, hopeless, single = (request("good"), request("repairable"), request("hopeless"),
                                          request("single", n=1))
    rankings = ranker.rank([good, repairable, hopeless, single])

    assert [len(b) for b in llm.batches] == [3, 2, 1]  # all judged; then the two unreadable; then the hopeless
    assert rankings[0].order == [1, 0] and rankings[0].scores == [3.0, 9.0]
    assert rankings[1].order == [0, 1] and rankings[1].metadata["repairs"] == 1
    assert rankings[1].scores is None  # neither answer had a usable scores line
    assert rankings[2].failed and rankings[2].order == [] and rankings[2].metadata["repairs"] == 2
    assert rankings[2].error.startswith("no readable answer after 3 answer(s)")
    assert rankings[2].raw.count("I like all of them.") == 3
    assert rankings[3].order == [0] and rankings[3].metadata == {"judged": False}
    assert ranker.stats == {"judged": 2, "failed": 1, "repairs": 3,
                            "prompt_tokens": sum(len(p) for b in llm.batches for p in b), "completion_tokens": 18}


def test_a_re_ask_continues_the_conversation_in_plain_text() -> None:
    llm = ScriptedLLM(CharTokenizer())
    judge(llm, max_repairs=1).rank([request("repairable")])
    first, second = llm.batches[0][0], llm.batches[1][0]
    assert second.startswith(first + "I like all of them.\n\n" + REPAIR_MARK)


def test_chat_template_is_used_when_the_tokenizer_has_one() -> None:
    llm = ScriptedLLM(CharTokenizer(chat_template="{{ messages }}"))
    judge(llm).rank([request("good")])
    assert llm.batches[0][0].startswith(f"<system>{LMOPS_SYSTEM}<user>") and llm.batches[0][0].endswith("<assistant>")


def test_a_prompt_too_long_fails_alone() -> None:
    fits = len(f"{LMOPS_SYSTEM}\n\n{lmops_prompt('good', ['answer 0', 'answer 1'])}\n\n") + 1  # a token a character
    llm = ScriptedLLM(CharTokenizer(), max_model_len=fits)
    long = RankRequest(prompt="good, at length", candidates=["answer 0", "answer 1"])
    rankings = judge(llm).rank([request("good"), long])
    assert not rankings[0].failed
    assert rankings[1].failed and "over the engine's max_model_len" in rankings[1].error
    assert rankings[1].raw is None and [len(b) for b in llm.batches] == [1]


def test_sampling_follows_the_config() -> None:
    captured = {}

    class Capturing(ScriptedLLM):
        def generate(self, inputs, params, use_tqdm):
            [one] = params  # one SamplingParams per prompt
            captured.update(vars(one))
            return super().generate(inputs, params, use_tqdm)

    judge(Capturing(CharTokenizer()), temperature=0.7, max_tokens=99, seed=5).rank([request("good")])
    assert captured == {"temperature": 0.7, "max_tokens": 99, "seed": 5}


def test_rank_line_constrains_each_request_by_its_own_candidate_count() -> None:
    captured: list = []

    class Constrained(ScriptedLLM):
        def generate(self, inputs, params, use_tqdm):
            captured.append(params)
            prompts = ["".join(map(chr, i["prompt_token_ids"])) for i in inputs]
            counts = [len(re.findall(r"###Response \d+:\n", p)) for p in prompts]
            return [SimpleNamespace(outputs=[SimpleNamespace(text=f"rank: {list(reversed(range(n)))}",
                                                             token_ids=[0])]) for n in counts]

    four, two = request("good", n=4), request("good", n=2)
    rankings = judge(Constrained(CharTokenizer()), constrain="rank_line", temperature=0.5, seed=3).rank(
        [four, two, four])
    assert [r.order for r in rankings] == [[3, 2, 1, 0], [1, 0], [3, 2, 1, 0]]
    assert all(r.scores is None for r in rankings)
    [params] = captured  # one batch: every answer was readable
    assert [p.structured_outputs.regex for p in params] == [rank_line_regex(4), rank_line_regex(2), rank_line_regex(4)]
    assert [p.max_tokens for p in params] == [rank_line_tokens(4), rank_line_tokens(2), rank_line_tokens(4)]
    assert all(p.temperature == 0.5 and p.seed == 3 for p in params)
