"""Vicuna QA: loading, both-order pairwise judging into win/tie/loss, failures, the summary and the plot; end to
end against a local OpenAI-protocol judge."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

import pytest
from helpers.openai_server import OpenAIProtocolServer
from pydantic import ValidationError

from rankers import build_ranker
from rankers.backends.fastchat_review import parse_review
from rankers.base import Ranking, RankRequest, order_from_scores
from tuna_open.eval.vicuna_qa import (
    PairResult,
    VicunaQAConfig,
    compare,
    load_questions,
    plot_win_tie_loss,
    question_prompts,
    summarize,
)

QUALITY = {"great": 3, "good": 2, "ok": 1, "bad": 0}


def quality(answer: str) -> int:
    return QUALITY[answer.split()[0]]


class ScriptedJudge:
    """A Ranker deciding each request with ``decide`` and recording what it was asked."""

    name = "scripted"

    def __init__(self, decide: Callable[[RankRequest], Ranking]) -> None:
        self.decide = decide
        self.requests: list[RankRequest] = []

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        self.requests.extend(requests)
        return [self.decide(r) for r in requests]


@pytest.fixture(scope="module")
def questions(shared_data: Path) -> list:
    root = shared_data / "vicuna_qa"
    everything = load_questions(root / "question.jsonl", root / "reference_answer_gpt-4.jsonl")
    return [everything[i] for i in (0, 1, 4, 60, 79)]  # generic x3, coding (has a reference), writing


def test_loading(shared_data: Path) -> None:
    root = shared_data / "vicuna_qa"
    qs = load_questions(root / "question.jsonl", root / "reference_answer_gpt-4.jsonl")
    assert len(qs) == 80 and qs[0].id == "1" and qs[0].category == "generic"
    assert qs[0].text == "How can I improve my time management skills?" and qs[0].reference is None
    assert sum(q.reference is not None for q in qs) == 10 and qs[60].reference.startswith("Here's a simple C++")
    assert len(load_questions(root / "question.jsonl", limit=3)) == 3
    assert question_prompts(qs[:1], "raw") == ["How can I improve my time management skills?"]
    assert "### Instruction:\nHow can I improve" in question_prompts(qs[:1])[0]


def test_loading_mistakes_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing.jsonl: Vicuna QA question file not found"):
        load_questions(tmp_path / "missing.jsonl")
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question_id": 1, "turns": ["hi"]}\n')
    with pytest.raises(ValueError, match=r"q\.jsonl: not a Vicuna QA question file .*category"):
        load_questions(bad)
    bad.write_text('{"question_id": 1,\n')
    with pytest.raises(ValueError, match=r"q\.jsonl:1: invalid JSON"):
        load_questions(bad)
    with pytest.raises(ValidationError, match="unknown prompt template .chatml."):
        VicunaQAConfig(questions=str(bad), template="chatml")


def fair(request: RankRequest) -> Ranking:
    scores = [float(quality(c)) for c in request.candidates]
    return Ranking(order=order_from_scores(scores), scores=scores)


def test_both_orders_against_a_baseline(questions: list) -> None:
    answers = {"tuna": [f"great answer {i}" for i in range(5)], "alpaca": [f"bad answer {i}" for i in range(5)],
               "base": [f"ok answer {i}" for i in range(5)]}
    answers["tuna"][4] = answers["base"][4]  # identical answers tie without a call
    judge = ScriptedJudge(fair)
    results = compare(questions, answers, judge, baseline="base")
    assert [(r.model, r.opponent) for r in results] == [("tuna", "base"), ("alpaca", "base")]
    tuna, alpaca = results
    assert tuna.counts == {"win": 4, "tie": 1, "loss": 0, "failed": 0}
    assert alpaca.counts == {"win": 0, "tie": 0, "loss": 5, "failed": 0}
    assert tuna.judgements[4] == {"question_id": "80", "category": "writing", "outcome": "tie", "verdicts": [],
                                  "errors": [], "note": "identical answers"}
    assert len(judge.requests) == 2 * (4 + 5)
    first, second = judge.requests[:2]
    assert first.candidates == [answers["tuna"][0], answers["base"][0]] and second.candidates == first.candidates[::-1]
    assert first.prompt == questions[0].text and first.id == "1:tuna|base:ab" and second.id == "1:tuna|base:ba"
    coding = [r for r in judge.requests if r.metadata["question_id"] == "61"]
    assert coding and all(r.reference == questions[3].reference for r in coding)
    assert tuna.by_category == {"coding": {"win": 1, "tie": 0, "loss": 0, "failed": 0},
                                "generic": {"win": 3, "tie": 0, "loss": 0, "failed": 0},
                                "writing": {"win": 0, "tie": 1, "loss": 0, "failed": 0}}


def test_position_bias_equal_scores_and_failures_are_not_wins(questions: list) -> None:
    """Per question: fair judge; always-first judge; equal scores; a failed order; a non-permutation order."""

    def decide(request: RankRequest) -> Ranking:
        qid = request.metadata["question_id"]
        if qid == "2":
            return Ranking(order=[0, 1])  # position bias: prefers whatever it sees first
        if qid == "5":
            return Ranking(order=[0, 1], scores=[9.0, 9.0])
        if qid == "61" and request.id.endswith(":ba"):
            return Ranking.failure("no readable ranking after 2 answer(s)")
        if qid == "80":
            return Ranking(order=[0])
        return fair(request)

    answers = {"a": [f"good {i}" for i in range(5)], "b": [f"bad {i}" for i in range(5)]}
    (result,) = compare(questions, answers, ScriptedJudge(decide))
    assert [j["outcome"] for j in result.judgements] == ["win", "tie", "tie", "failed", "failed"]
    assert result.judgements[1]["verdicts"] == [0, 0] and result.judgements[2]["verdicts"] == ["tie", "tie"]
    assert result.judgements[3]["errors"] == ["no readable ranking after 2 answer(s)"]
    assert result.judgements[4]["errors"][0] == "judge returned order [0] for two answers"
    assert result.counts == {"win": 1, "tie": 2, "loss": 0, "failed": 2} and result.judged == 3
    assert result.rate("win") == pytest.approx(100 / 3) and result.rate("loss") == 0.0
    as_dict = result.to_dict()
    assert as_dict["win_rate"] == pytest.approx(100 / 3) and as_dict["judged"] == 3 and as_dict["counts"]["failed"] == 2


def test_every_pair_without_baseline_and_bad_inputs(questions: list) -> None:
    answers = {m: [f"{m} answer"] * 5 for m in ("good", "ok", "bad")}
    results = compare(questions, answers, ScriptedJudge(fair))
    assert [(r.model, r.opponent, r.counts["win"], r.counts["loss"]) for r in results] == [
        ("good", "ok", 5, 0), ("good", "bad", 5, 0), ("ok", "bad", 5, 0)]
    with pytest.raises(ValueError, match="baseline 'gpt4' has no answers"):
        compare(questions, answers, ScriptedJudge(fair), baseline="gpt4")
    with pytest.raises(ValueError, match="model 'ok' has 1 answers for 5 questions"):
        compare(questions, {**answers, "ok": ["ok"]}, ScriptedJudge(fair))


def test_summary_and_plot(tmp_path: Path) -> None:
    win = PairResult("tuna", "alpaca", counts={"win": 6, "tie": 3, "loss": 1, "failed": 2})
    flat = summarize([win, PairResult("x", "y")])
    assert flat["tuna"] == {"vicuna_win_rate_vs_alpaca": 60.0, "vicuna_tie_rate_vs_alpaca": 30.0,
                            "vicuna_loss_rate_vs_alpaca": 10.0, "vicuna_failed_vs_alpaca": 2.0}
    assert flat["alpaca"]["vicuna_win_rate_vs_tuna"] == 10.0 and flat["alpaca"]["vicuna_loss_rate_vs_tuna"] == 60.0
    assert flat["x"] == {"vicuna_failed_vs_y": 0.0}  # nothing judged: no rates, not zeros
    path = plot_win_tie_loss([win, PairResult("x", "y")], tmp_path / "plots" / "vicuna.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _shown(body: dict) -> tuple[str, list[str]]:
    content = body["messages"][0]["content"]
    instruction = content.split("### Instruction\n", 1)[1].split("\n\n### Response 0", 1)[0]
    return instruction, re.findall(r"^### Response \d+\n(.*)$", content, flags=re.MULTILINE)


def judge_server(body: dict) -> str:
    """A GPT-4 stand-in: fair, except on the stress question (prefers the first answer) and on garbage."""
    instruction, texts = _shown(body)
    if any(t.startswith("garbage") for t in texts):
        return "Both answers are fine, I cannot decide."
    scores = [5 * quality(t) for t in texts]
    order = [0, 1] if "stress" in instruction else order_from_scores(scores)
    return f"Open-ended.\nResponse 2: my own answer.\nscores: {scores + [14]}\nrank: [{order[0]}, 2, {order[1]}]"


def test_end_to_end_against_a_local_openai_judge(questions: list) -> None:
    answers = {"tuna": ["great plan", "great tips", "great intro", "great code", "garbage"],
               "alpaca": ["ok plan", "ok tips", "bad intro", "good code", "ok review"]}
    with OpenAIProtocolServer(chat=judge_server) as server:
        judge = build_ranker({"backend": "openai", "model": "gpt-4", "prompt": "strict", "base_url": server.base_url,
                              "api_key": "test", "max_repairs": 0, "max_retries": 0, "max_concurrency": 4})
        (result,) = compare(questions, answers, judge, baseline="alpaca")
        assert len(server.requests) == 10 and {b["model"] for b in server.requests} == {"gpt-4"}
    assert [j["outcome"] for j in result.judgements] == ["win", "tie", "win", "win", "failed"]
    assert result.counts == {"win": 3, "tie": 1, "loss": 0, "failed": 1}
    assert result.judgements[4]["errors"][0].startswith("no readable")
    assert summarize([result])["tuna"]["vicuna_win_rate_vs_alpaca"] == 75.0


def fastchat_reviewer(body: dict) -> str:
    """A GPT-4 stand-in for FastChat's reviewers: scores by the answers' quality words, in each reviewer's style."""
    system, user = (m["content"] for m in body["messages"][:2])
    assert system == "You are a helpful and precise assistant for checking the quality of the answer."
    answers = re.findall(r"\[The Start of Assistant [12]'s Answer\]\n(.*?)\n\n\[The End", user, flags=re.DOTALL)
    if any(a.startswith("garbage") for a in answers):
        return "Both are hard to judge."
    s1, s2 = (2 + 2 * quality(a) for a in answers)
    if "mathematical proficiency" in user:  # the math reviewer ends with a Python tuple
        return f"I solved it myself first.\nAssistant 1 is right.\n({s1}, {s2})"
    if "coding abilities" in user:
        return f"Assistant 1: {s1}, Assistant 2: {s2}\nClean code."
    return f"{s1} {s2}\nAssistant 1 was more detailed."


def test_fastchat_reviewers_end_to_end(shared_data: Path) -> None:
    root = shared_data / "vicuna_qa"
    everything = load_questions(root / "question.jsonl")
    qs = [everything[i] for i in (0, 60, 67, 79)]  # generic, coding, math, writing
    answers = {"tuna": ["great plan", "good code", "great proof", "garbage"],
               "alpaca": ["ok plan", "good code, other style", "bad proof", "ok review"]}
    with OpenAIProtocolServer(chat=fastchat_reviewer) as server:
        judge = build_ranker({"backend": "fastchat", "model": "gpt-4", "base_url": server.base_url, "api_key": "t",
                              "max_repairs": 0, "max_retries": 0, "max_concurrency": 1})  # requests in order
        (result,) = compare(qs, answers, judge, baseline="alpaca")
    prompts = [next(m["content"] for m in b["messages"] if m["role"] == "user") for b in server.requests]
    assert len(prompts) == 8 and {b["temperature"] for b in server.requests} == {0.2}
    assert {b["max_completion_tokens"] for b in server.requests} == {1024}
    kinds = {"general": "performance of two AI assistants", "coding": "coding abilities",
             "math": "mathematical proficiency"}
    by_question = [[k for k, phrase in kinds.items() if phrase in p] for p in prompts]
    assert by_question == [["general"]] * 2 + [["coding"]] * 2 + [["math"]] * 2 + [["general"]] * 2
    assert prompts[0].startswith("[Question]\nHow can I improve my time management skills?\n\n"
                                 "[The Start of Assistant 1's Answer]\ngreat plan\n\n[The End of Assistant 1's Answer]")
    assert prompts[1].split("[The Start of Assistant 1's Answer]\n")[1].startswith("ok plan")  # the other order
    assert [j["outcome"] for j in result.judgements] == ["win", "tie", "win", "failed"]
    stats = judge.stats
    assert stats["calls"] == 8 and stats["reviewed"] + stats["failed"] == 8 and stats["failed"] >= 1
    assert result.judgements[0]["scores"] == [[8.0, 4.0], [8.0, 4.0]]
    assert result.mean_scores() == pytest.approx((22 / 3, 4.0))  # (8+6+8)/3 and (4+6+2)/3, both orders
    summary = summarize([result])
    assert summary["tuna"]["vicuna_win_rate_vs_alpaca"] == pytest.approx(200 / 3)
    assert summary["alpaca"]["vicuna_score_vs_tuna"] == pytest.approx(4.0)


@pytest.mark.parametrize("review, scores", [("8 9\nbecause", (8, 9)), ("8, 9", (8, 9)), ("\n7.5 6\n", (7.5, 6)),
                                            ("Assistant 1: 3\tAssistant 2: 10", (3, 10)),
                                            ("Work...\n(9, 4)", (9, 4))])
def test_fastchat_review_scores(review: str, scores: tuple) -> None:
    assert parse_review(review) == scores


@pytest.mark.parametrize("review", ["Both fine.", "8 9 10", "11 3"])
def test_fastchat_unreadable_review_is_an_error(review: str) -> None:
    with pytest.raises(ValueError):
        parse_review(review)


def test_loading_fastchat_table_format(tmp_path: Path) -> None:
    path = tmp_path / "question.jsonl"  # fastchat/eval/table/question.jsonl: "text", not "turns"
    path.write_text('{"question_id": 1, "text": "How can I improve?", "category": "generic"}\n')
    assert load_questions(path)[0].text == "How can I improve?"
