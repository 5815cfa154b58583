"""LMentry: the official per-task scoring rules, the LMentry score, and evaluate() on real data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from tuna_open.eval.lmentry.evaluate import LMentryConfig, evaluate, score_prediction, summarize
from tuna_open.eval.lmentry.official import number_words, score_official
from tuna_open.eval.lmentry.score import lmentry_score
from tuna_open.eval.lmentry.tasks import (
    ADJACENT_TASK_PAIRS,
    ALL_TASKS,
    ARGUMENT_ORDER_TASKS,
    CORE_TASKS,
    base_task,
    load_task,
    load_tasks,
)


@pytest.fixture(scope="module")
def data_dir(shared_data: Path) -> Path:
    return shared_data / "lmentry" / "data"


@pytest.fixture(scope="module")
def first_examples(data_dir: Path) -> dict:
    return {task: load_task(data_dir / f"{task}.json")[0] for task in CORE_TASKS}


# The official scorers' verdicts (score, certainty) on the first example of each task; checked against
# aviaefrat/lmentry's code, quirks included (an uncertain 1 for a phrasing inside a hedge counts as right).
OFFICIAL = [
    ("first_letter", "b", (1, 1)), ("first_letter", "The first letter is b.", (1, 1)),
    ("first_letter", "The first letter is b or c", (1, 0)),  # a phrasing inside a longer answer: uncertain 1
    ("first_letter", "c", (0, 1)), ("first_letter", "Bench starts with b.", (0, 0)),
    ("bigger_number", "seven hundred and twenty-three", (1, 1)), ("bigger_number", "101", (0, 1)),
    ("bigger_number", "Of the numbers 101 and 723, 723 is bigger.", (1, 1)),
    ("rhyming_word", "wear", (1, 1)), ("rhyming_word", "declare rhymes with wear", (1, 1)),
    ("rhyming_word", "I think declare rhymes with wear", (0, 0)),  # rhyme phrasings must be the whole answer
    ("more_letters", "chat has 2 more letters than no", (1, 1)),
    ("more_letters", "chat has 3 more letters than no", (0, 1)),  # right word, wrong difference
    ("more_letters", "no is longer", (0, 1)),
    ("word_after", "glad", (1, 1)), ("word_after", "we were glad it was over", (0, 1)),
    ("sentence_not_containing", "The sun is out.", (1, 1)), ("sentence_not_containing", "Beaches are nice.", (1, 0)),
    ("sentence_not_containing", "Sun", (0, 0)),
]


@pytest.mark.parametrize("task, prediction, verdict", OFFICIAL)
def test_official_rules(first_examples: dict, task: str, prediction: str, verdict: tuple[int, int]) -> None:
    example = first_examples[task]
    assert score_official(task, example.metadata, example.input, prediction) == verdict
    assert score_prediction(task, example, prediction) == (verdict[0] == 1)


def test_number_words_as_num2words_writes_them() -> None:
    assert [number_words(n) for n in (0, 13, 40, 99, 105, 723, 1000, 1024, 2300)] == [
        "zero", "thirteen", "forty", "ninety-nine", "one hundred and five", "seven hundred and twenty-three",
        "one thousand", "one thousand and twenty-four", "two thousand, three hundred"]


def test_analysis_variants_use_their_core_rule() -> None:
    assert base_task("more_letters_length_diff_1") == "more_letters"
    assert base_task("sentence_not_containing") == "sentence_not_containing"
    assert {base_task(t) for t in ALL_TASKS} == set(CORE_TASKS)
    with pytest.raises(ValueError, match="unknown LMentry task 'capital'"):
        base_task("capital")


def _oracle(resources: Path):
    """Builds a right answer for any example from its metadata, like a model that knows every answer."""
    words = list(json.loads((resources / "lmentry_words.json").read_text()))

    def pick(condition) -> str:
        return next(w for w in words if w.isalpha() and len(w) > 1 and condition(w))

    def answer(task: str, meta: dict) -> str:
        base = base_task(task)
        if "answer" in meta:  # bare: the official rhyme and homophone rules take no "The answer is ..."
            return f'"{meta["answer"]}".'
        if base == "all_words_from_category":
            return "Yes." if meta["num_distractors"] == 0 else "No."
        if base == "any_words_from_category":
            return "Yes." if meta["num_words"] > meta["num_distractors"] else "No."
        letter, word = meta.get("letter", ""), meta.get("word", "")
        return {
            "starts_with_letter": lambda: pick(lambda w: w[0] == letter) if letter != "x" else "x-ray",
            "ends_with_letter": lambda: pick(lambda w: w[-1] == letter),
            "word_containing": lambda: pick(lambda w: letter in w),
            "word_not_containing": lambda: pick(lambda w: letter not in w),
            "sentence_containing": lambda: f"I thought about {word} today.",
            "sentence_not_containing": lambda: "The weather is lovely today.",
            "starts_with_word": lambda: f"{word.capitalize()} can be found everywhere.",
            "ends_with_word": lambda: f"Yesterday we talked about {word}.",
        }[base]()

    return answer


def _generator(tasks: dict, answer: Callable[[str, dict], str]) -> Callable[[list[str]], list[str]]:
    by_prompt = {}
    for task, examples in tasks.items():
        for e in examples:
            by_prompt[e.input] = answer(task, e.metadata)
    return lambda prompts: [by_prompt[p] for p in prompts]


def test_evaluate_with_a_perfect_model_on_the_shared_sample(data_dir: Path, shared_data: Path) -> None:
    tasks = load_tasks(data_dir)
    assert set(tasks) == set(ALL_TASKS)
    generate = _generator(tasks, _oracle(shared_data / "lmentry" / "resources"))
    result = evaluate(generate, data_dir, template="raw")
    assert {t: m["accuracy"] for t, m in result["per_task"].items()} == {t: 100.0 for t in ALL_TASKS}
    assert result["accuracy"] == 100.0 and result["robustness"] == 100.0 and result["lmentry_score"] == 100.0
    # The sample holds only the first 40 examples of each task, nearly all from template 0.
    assert not result["complete"] and any(m.startswith("template: ") for m in result["missing"])
    assert result["robustness_aspects"]["argument_order"] == 100.0
    assert result["rules"] == "official"
    assert summarize(result) == {"lmentry_accuracy": 100.0, "lmentry_robustness": 100.0, "lmentry_score": 100.0}


def test_evaluate_with_a_model_that_always_picks_the_distractor(data_dir: Path) -> None:
    tasks = ["bigger_number", "smaller_number", "rhyming_word", "homophones"]
    loaded = load_tasks(data_dir, tasks)
    generate = _generator(loaded, lambda task, meta: str(meta["distractor"]))
    result = evaluate(generate, data_dir, tasks=tasks, template="raw")
    assert all(m["accuracy"] == 0.0 for m in result["per_task"].values())
    assert result["accuracy"] == 0.0 and result["lmentry_score"] == 0.0
    assert result["predictions"]["homophones"][0] == {"id": "1", "input": loaded["homophones"][0].input,
                                                      "prediction": "classroom", "correct": False}


def test_prompts_use_the_template_and_limit_spreads_over_templates(data_dir: Path) -> None:
    seen: list[str] = []

    def generate(prompts: list[str]) -> list[str]:
        seen.extend(prompts)
        return ["a"] * len(prompts)

    result = evaluate(generate, data_dir, tasks=["starts_with_letter"], limit=6)
    assert len(seen) == 6 and seen[0].startswith("Below is an instruction") and "### Response:" in seen[0]
    assert result["per_task"]["starts_with_letter"]["per_template"] == {0: 100 * 1 / 3, 1: 100 * 1 / 3}
    picked = load_task(data_dir / "starts_with_letter.json", limit=6)
    assert [e.metadata["template_id"] for e in picked] == [0, 1, 0, 1, 0, 1]


def _metrics(accuracy: float, templates: tuple[float, float, float] = (50.0, 50.0, 50.0),
             positions: tuple[float, float] | None = None) -> dict:
    metrics = {"accuracy": accuracy, "per_template": dict(enumerate(templates)), "per_answer_index": {}}
    if positions is not None:
        metrics["per_answer_index"] = {0: positions[0], 1: positions[1]}
    return metrics


def test_lmentry_score_follows_the_official_definition() -> None:
    """accuracy * robustness / 100; robustness = mean of four aspects, each 100 - the largest gap in a group."""
    per_task = {t: _metrics(50.0, positions=(50.0, 50.0) if t in ARGUMENT_ORDER_TASKS else None) for t in CORE_TASKS}
    per_task.update({t: _metrics(50.0) for t in ALL_TASKS if t not in CORE_TASKS})
    per_task["first_letter"] = _metrics(80.0, templates=(60.0, 90.0, 90.0))      # template gap 30
    per_task["bigger_number"] = _metrics(50.0, positions=(40.0, 60.0))          # order gap 20
    per_task["rhyming_word_orthographically_similar"] = _metrics(90.0)         # content gap 40
    result = lmentry_score(per_task)
    accuracy = (24 * 50 + 80) / 25
    # first_letter (80) differs by 30 from first_word/last_letter (50): 2 of the 17 adjacent pairs.
    aspects = {"argument_order": 100 - 20 / 7, "argument_content": 100 - 40 / 6, "template": 100 - 30 / 25,
               "adjacent_tasks": 100 - 2 * 30 / len(ADJACENT_TASK_PAIRS)}
    assert result["robustness_aspects"] == pytest.approx(aspects)
    robustness = sum(aspects.values()) / 4
    assert result["accuracy"] == pytest.approx(accuracy) and result["robustness"] == pytest.approx(robustness)
    assert result["lmentry_score"] == pytest.approx(accuracy * robustness / 100)
    assert result["complete"] and result["missing"] == []


def test_missing_tasks_are_reported_not_guessed() -> None:
    result = lmentry_score({"first_letter": _metrics(70.0)})
    assert result["accuracy"] == 70.0 and result["robustness_aspects"]["argument_order"] is None
    assert result["robustness"] == 100.0 and not result["complete"]
    assert "accuracy: last_letter" in result["missing"]
    assert "adjacent_tasks: first_letter/last_letter" in result["missing"]
    assert summarize({**result}) == {"lmentry_accuracy": 70.0, "lmentry_robustness": 100.0, "lmentry_score": 70.0}
    assert summarize(lmentry_score({})) == {}


def test_user_mistakes_name_the_file(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(ValueError, match="nowhere: LMentry data directory not found"):
        load_tasks(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no LMentry task files"):
        load_tasks(tmp_path)
    with pytest.raises(ValueError, match=r"first_letter\.json: LMentry task file not found"):
        load_tasks(tmp_path, ["first_letter"])
    (tmp_path / "first_letter.json").write_text('{"examples": {"1": {"input": "x"}}}')
    with pytest.raises(ValueError, match=r"first_letter\.json: not an LMentry task file .*metadata"):
        load_tasks(tmp_path, ["first_letter"])
    (tmp_path / "last_letter.json").write_text('{"examples": ')
    with pytest.raises(ValueError, match=r"last_letter\.json:1: invalid JSON"):
        load_tasks(tmp_path, ["last_letter"])
    with pytest.raises(ValueError, match="returned 0 completions"):
        evaluate(lambda prompts: [], data_dir, tasks=["first_letter"])
    with pytest.raises(ValueError, match="unknown prompt template .chatml."):
        LMentryConfig(data_dir=str(data_dir), template="chatml")
