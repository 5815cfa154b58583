"""The ``lmops`` judge prompt against the text of microsoft/LMOps ``tuna/src/gpt-eval.py``, its parser, and the
prompt choice in the judges' configs (the request a judge sends, through the local OpenAI-protocol server)."""

from __future__ import annotations

import pytest
from helpers.openai_server import OpenAIProtocolServer

from rankers import RankerConfigError, RankRequest, build_ranker, validate_config
from rankers.judging.parsing import ParseError, parse_lmops_scores, parse_ranking
from rankers.judging.prompts import LMOPS_SYSTEM, lmops_prompt

# Copied from LMOps tuna/src/gpt-eval.py (commit a369885) and train.py PROMPT_DICT["prompt_no_input"], rendered
# for the instruction and responses below: the instruct, "\n\n", the "###Response j:\n{r}\n" blocks joined by
# "\n", then the instructions exactly as LMOps concatenates its string literals.
LMOPS_RENDERED = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\nGive three tips for staying healthy.\n\n### Response:"
    "\n\n"
    "###Response 0:\nEat well.\n\n###Response 1:\nSleep.\n\n###Response 2:\nEat well.\n\n###Response 3:\nMove.\n"
    "\n\nWe would like you to rate Response 0/1/2/3 in reply to the given instruction displayed above.\n"
    "First, identify if the instruction requires open-ended or close-ended responses."
    "Second, you need to generate one high quality '###Response 4' in answer to the instruction. It needs to have the same format as other responses and will be used as a reference later.\n"
    "Third, identify if there are duplicate responses and keep only one of the duplicate responses for the following steps."
    "Fourth, compare Response 4 with Response 0/1/2/3/4 and assign each response an overall score on a scale of 0 to 15 where a higher score indicates better overall quality. For an open-ended instruction, please rate based on the relevance (score 0 to 5), level of details/justification: (score 0 to 5) and accuracy (score 0 to 5) of each response; for a close-ended instruction, please rate based on the accuracy (score 0 to 5), level of details/justification (score 0 to 5) and clarity (score 0 to 5) of each response. The ratings should have the format: 'Response k: [sum of the 3 individual scores you give to response k]'.\n"
    "Last, rank the responses in decreasing order of their overall scores. The ranking should have the format: 'rank: [i, j ,k, l, m]'. If there are duplicate responses, keep only one of them in the rank, that is, the ranking may become: 'rank: [i, j, k, l]', 'rank: [i, j, k]' 'rank: [i, j]' or even 'rank: [i]'.\n"
)
INSTRUCTION = "Give three tips for staying healthy."
RESPONSES = ["Eat well.", "Sleep.", "Eat well.", "Move."]


def test_prompt_is_lmops_word_for_word() -> None:
    assert lmops_prompt(INSTRUCTION, RESPONSES) == LMOPS_RENDERED
    assert LMOPS_SYSTEM == "You are a professional and experienced data annotator."


def test_prompt_with_input_uses_the_alpaca_input_template() -> None:
    prompt = lmops_prompt("Add the numbers.", ["5", "6"], input="2 3")
    assert prompt.startswith(
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd the numbers.\n\n### Input:\n2 3\n\n### Response:\n\n###Response 0:\n5\n\n")


@pytest.mark.parametrize("n", [2, 3, 5])
def test_other_n_changes_only_the_indices(n: int) -> None:
    responses = [f"answer {i}" for i in range(n)]
    expected = (LMOPS_RENDERED.replace("Response 0/1/2/3/4", "<ALL>").replace("Response 0/1/2/3", "<SHOWN>")
                .replace("Response 4", f"Response {n}")
                .replace("<ALL>", "Response " + "/".join(map(str, range(n + 1))))
                .replace("<SHOWN>", "Response " + "/".join(map(str, range(n)))))
    head, _, tail = expected.partition("\n\n###Response 0:")
    body = "\n".join(f"###Response {j}:\n{r}\n" for j, r in enumerate(responses))
    expected = head + "\n\n" + body + tail[tail.index("\n\nWe would like"):]
    assert lmops_prompt(INSTRUCTION, responses) == expected


ANSWER = """The instruction is open-ended.

###Response 4:
Eat a balanced diet, exercise regularly and sleep enough.

Response 2 duplicates Response 0; I keep Response 0.

Response 0: [5 + 3 + 4 = 12]
Response 1: [8]
Response 3: 9/15
Response 4: [15]

rank: [4, 0, 3, 1]"""


def test_parser_reads_rank_and_ratings_and_places_the_duplicate() -> None:
    order, scores = parse_ranking(ANSWER, 4, RESPONSES, parse_lmops_scores)
    assert order == [0, 2, 3, 1]  # own Response 4 dropped; Response 2 right after its twin
    assert scores is None  # the duplicate was never rated: not every candidate has a score
    rated = ANSWER.replace("Response 3: 9/15", "Response 2: [12]\nResponse 3: 9/15")
    assert parse_ranking(rated, 4, RESPONSES, parse_lmops_scores)[1] == [12.0, 8.0, 12.0, 9.0]


@pytest.mark.parametrize("value, total", [("[12]", 12), ("12", 12), ("[4+4+4]", 12), ("4 + 4 + 4 = 11", 11),
                                          ("13/15", 13), ("**14** out of 15", 14), ("[10] (relevance 4)", 10),
                                          ("relevance (5), details (4), accuracy (3), total 12", 12)])
def test_rating_formats(value: str, total: float) -> None:
    assert parse_lmops_scores(f"Response 0: {value}\nResponse 1: 3", 2) == [total, 3.0]


def test_unreadable_answer_is_a_parse_error_not_digits() -> None:
    # LMOps would have taken the digits after "ranking:"; we refuse and let the judge repair its answer.
    with pytest.raises(ParseError):
        parse_ranking("Response 0 is best; ranking: the first, then the second", 2, ["a", "b"], parse_lmops_scores)


def test_judge_sends_system_message_and_lmops_prompt_by_default() -> None:
    def chat(body: dict) -> str:
        return "Response 0: [3]\nResponse 1: [14]\nResponse 2: [15]\nrank: [2, 1, 0]"

    with OpenAIProtocolServer(chat=chat) as server:
        ranker = build_ranker({"backend": "openai", "model": "gpt-4-0314", "base_url": server.base_url,
                               "api_key": "k", "temperature": 1.0})
        [r] = ranker.rank([RankRequest(prompt=INSTRUCTION, candidates=["Eat well.", "Move."])])
    [body] = server.requests
    assert body["messages"] == [{"role": "system", "content": LMOPS_SYSTEM},
                                {"role": "user", "content": lmops_prompt(INSTRUCTION, ["Eat well.", "Move."])}]
    assert body["model"] == "gpt-4-0314" and body["temperature"] == 1.0
    assert r.order == [1, 0] and r.scores == [3.0, 14.0]


def test_prompt_key_selects_strict_and_rejects_unknown_and_reference_with_lmops() -> None:
    assert validate_config({"backend": "openai", "model": "m"}).prompt == "lmops"
    assert validate_config({"backend": "vllm", "model": "m", "prompt": "strict", "show_reference": True}).prompt \
        == "strict"
    with pytest.raises(RankerConfigError, match="prompt"):
        validate_config({"backend": "openai", "model": "m", "prompt": "paraphrase"})
    with pytest.raises(RankerConfigError, match="show_reference needs prompt: strict"):
        validate_config({"backend": "openai", "model": "m", "show_reference": True})
