"""Backend ``fastchat``: FastChat's Vicuna QA reviewer (the judge behind the paper's Vicuna QA numbers).

lm-sys/FastChat ``fastchat/eval`` (``table/prompt.jsonl``, ``table/reviewer.jsonl``, ``eval_gpt_review.py``):
a question's ``category`` picks the reviewer, ``coding`` and ``math`` their own, every other category the
general one (``gen_prompt`` falls back to reviewer 0); each reviewer's system message and ``[Question]`` /
``[The Start of Assistant 1's Answer]`` template are reproduced word for word, and the reviewer gives each of the
two assistants a score from 1 to 10, at temperature 0.2 with 1024 completion tokens (``reviewer.jsonl``).

A request is one question (``RankRequest.prompt``, its category in ``metadata["category"]``) with exactly two
candidates, Assistant 1 and Assistant 2; the ``Ranking`` puts the higher-scored one first and carries both scores
(equal scores are a tie, which ``tuna_open.eval.vicuna_qa`` reads from them). FastChat reads the scores from the first
line only and writes ``[-1, -1]`` for a review it cannot read ("You must manually fix the score pair"); we read the
first line the same way (two numbers, ``Assistant k`` labels ignored), else the last ``(a, b)`` pair of the review
(the math reviewer is asked for a Python tuple at its end, which FastChat's first-line rule misses), and an unreadable
review is re-asked (``rankers.llm.conversation``) and then recorded as failed, never as a tie.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from rankers.backends.api import PerRequestRanker
from rankers.base import Ranking, RankRequest
from rankers.config import RankerConfig
from rankers.llm.client_settings import ClientSettings
from rankers.llm.conversation import Conversation

SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
TEMPLATE = ("[Question]\n{question}\n\n[The Start of Assistant 1's Answer]\n{answer_1}\n\n"
            "[The End of Assistant 1's Answer]\n\n[The Start of Assistant 2's Answer]\n{answer_2}\n\n"
            "[The End of Assistant 2's Answer]\n\n[System]\n{prompt}\n\n")
REVIEWERS = {
    "general": (
        "We would like to request your feedback on the performance of two AI assistants in response to the user "
        "question displayed above.\nPlease rate the helpfulness, relevance, accuracy, level of details of their "
        "responses. Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates "
        "better overall performance.\nPlease first output a single line containing only two values indicating the "
        "scores for Assistant 1 and 2, respectively. The two scores are separated by a space. In the subsequent "
        "line, please provide a comprehensive explanation of your evaluation, avoiding any potential bias and "
        "ensuring that the order in which the responses were presented does not affect your judgment."),
    "coding": (
        "Your task is to evaluate the coding abilities of the above two assistants. They have been asked to "
        "implement a program to solve a given problem. Please review their code submissions, paying close "
        "attention to their problem-solving approach, code structure, readability, and the inclusion of helpful "
        "comments.\n\nPlease ensure that the assistants' submissions:\n\n1. Correctly implement the given problem "
        "statement.\n2. Contain accurate and efficient code.\n3. Include clear and concise comments that explain "
        "the code's logic and functionality.\n4. Adhere to proper coding standards and best practices.\n\nOnce you "
        "have carefully reviewed both submissions, provide detailed feedback on their strengths and weaknesses, "
        "along with any suggestions for improvement. You should first output a single line containing two scores "
        "on the scale of 1-10 (1: no code/no sense; 10: perfect) for Assistant 1 and 2, respectively. Then give "
        "extra comments starting from the next line."),
    "math": (
        "We would like to request your feedback on the mathematical proficiency of two AI assistants regarding "
        "the given user question displayed above.\nFirst, please solve the problem independently, without "
        "referring to the answers provided by Assistant 1 and Assistant 2.\nAfterward, please examine the "
        "problem-solving process of Assistant 1 and Assistant 2 step-by-step to ensure their correctness, "
        "identifying any incorrect steps if present. Your evaluation should take into account not only the answer "
        "but also the problem-solving steps.\nFinally, please output a Python tuple containing two numerical "
        "scores for Assistant 1 and Assistant 2, ranging from 1 to 10, respectively. If applicable, explain the "
        "reasons for any variations in their scores and determine which assistant performed better."),
}

_NUMBER = r"\d+(?:\.\d+)?"
_LABEL = re.compile(r"assistant\s*[12]\s*[:=]?", re.IGNORECASE)
_PAIR = re.compile(rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)")


def reviewer(category: str | None) -> str:
    """FastChat's reviewer for a question category: ``coding``, ``math``, else ``general``."""
    return category if category in REVIEWERS else "general"


def review_prompt(question: str, answer_1: str, answer_2: str, category: str | None = None) -> str:
    """The reviewer's user message (``prompt_template.format(question, answer_1, answer_2, prompt)``)."""
    return TEMPLATE.format(question=question, answer_1=answer_1, answer_2=answer_2,
                           prompt=REVIEWERS[reviewer(category)])


def parse_review(text: str) -> tuple[float, float]:
    """The two scores of a review; ValueError (words the reviewer can act on) when there are none."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    numbers = re.findall(_NUMBER, _LABEL.sub(" ", first))
    pairs = _PAIR.findall(text)
    if len(numbers) == 2:
        scores = (float(numbers[0]), float(numbers[1]))
    elif pairs:
        scores = (float(pairs[-1][0]), float(pairs[-1][1]))
    else:
        raise ValueError("the first line does not hold exactly two scores and there is no (score 1, score 2) pair")
    if not all(0 <= s <= 10 for s in scores):
        raise ValueError(f"scores {scores} are outside the scale of 1 to 10")
    return scores


def repair_prompt(error: str) -> str:
    return (f"I could not read your scores: {error}. Reply with only one line containing the two scores for "
            f"Assistant 1 and Assistant 2, on the scale of 1 to 10, separated by a space.")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    """The reviewer (FastChat used ``gpt-4``, in March-April 2023)."""
    temperature: float = Field(default=0.2, ge=0.0)
    """FastChat's ``reviewer.jsonl``."""
    max_tokens: int = Field(default=1024, ge=1)
    max_repairs: int = Field(default=1, ge=0)
    """Re-asks after an unreadable review before the request is recorded as failed."""


class Config(Settings, RankerConfig, ClientSettings):
    model: str


class FastChatReviewer(PerRequestRanker[Config]):
    """A ``Ranker`` for two-candidate requests, scored by FastChat's category reviewer."""

    name = "fastchat"
    outcomes = ("reviewed", "failed", "repairs")

    def rank_one(self, request: RankRequest) -> Ranking:
        cfg = self.config
        if len(request.candidates) != 2:
            self._counts.add(failed=1)
            return Ranking.failure(f"the FastChat reviewer compares two answers, not {len(request.candidates)}")
        category = request.metadata.get("category")
        question = request.prompt if not request.input else f"{request.prompt}\n\n{request.input}"
        conversation = Conversation(
            [{"role": "system", "content": SYSTEM},
             {"role": "user", "content": review_prompt(question, *request.candidates, category=category)}],
            parse=parse_review, repair=repair_prompt, max_repairs=cfg.max_repairs)
        exchange = self.ask(conversation, cfg.max_tokens)
        raw = exchange.raw()
        metadata = {"model": cfg.model, "reviewer": reviewer(category), **exchange.usage(), **exchange.raw_length()}
        self._counts.add(**{"failed" if exchange.value is None else "reviewed": 1}, repairs=exchange.repairs)
        if exchange.value is None:
            return Ranking.failure(exchange.error or "no answer", raw=raw, **metadata)
        scores = list(exchange.value)
        return Ranking(order=[0, 1] if scores[0] >= scores[1] else [1, 0], scores=scores, raw=raw, metadata=metadata)


def build(config: Config) -> FastChatReviewer:
    return FastChatReviewer(config)
