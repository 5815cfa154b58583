"""LMentry: per-task scoring rules against hand-labelled answers, the LMentry score, and evaluate() on real data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from tuna_open.eval.lmentry import (
    ADJACENT_TASK_PAIRS,
    ALL_TASKS,
    ARGUMENT_ORDER_TASKS,
    CORE_TASKS,
    LMentryConfig,
    base_task,
    evaluate,
    lmentry_score,
    load_task,
    load_tasks,
    parse_number,
    score_prediction,
    summarize,
)
from tuna_open.eval.lmentry_official import number_words, score_official

# Hand-labelled answers to the first example of every core task of the shared LMentry sample, labelled the way a
# careful grader applying the benchmark's rules would: the bare answer and its usual phrasings are right; a wrong
# answer, an empty one, a hedge between candidates, or an answer to a different question is wrong.
CASES: dict[str, list[tuple[str, bool]]] = {
    "first_letter": [  # beach
        ("b", True), ('"B".', True), ('The first letter of the word "beach" is b.', True),
        ("Beach starts with the letter b.", True), ("b. The word beach begins with b.", True), ("c", False),
        ("", False), ("b or c", False), ("The first letter is e.", False), ("The first letter is b or c.", False),
        ("The first letter of the word beach is b.\nQ: What is the first letter of the word \"cat\"?\nA: c", True)],
    "last_letter": [  # beach
        ("h", True), ('The last letter is "h".', True), ("Beach ends with h.", True), ("b", False), ("", False),
        ("h or c", False), ("The last letter of beach is c.", False), ("The last letter of \"bench\" is h.", False)],
    "first_word": [  # He has left
        ("He", True), ('The first word is "He".', True),
        ('The first word of the sentence "He has left" is "He".', True), ("has", False), ("He has left", False),
        ("", False), ("He or has", False)],
    "last_word": [
        ("left", True), ('The last word is "left".', True), ('"He has left" ends with "left".', True), ("has", False),
        ("He has left", False), ("", False)],
    "word_after": [  # We were glad it was over / were -> glad
        ("glad", True), ('The word that comes right after "were" is "glad".', True),
        ('"glad" comes after "were".', True), ('"were" is followed by "glad".', True), ("it", False),
        ("We were glad it was over", False), ("", False),
        ("glad or it", False), ('The word after "was" is "glad".', False)],
    "word_before": [  # John was seeing his children / was -> John
        ("John", True), ("john.", True), ('"John" comes right before "was".', True),
        ('The word that precedes "was" is "John".', True), ("seeing", False), ("", False)],
    "first_alphabetically": [  # beach / silver
        ("beach", True), ('"Beach" comes first.', True), ("Alphabetically, beach comes before silver.", True),
        ("Silver comes after beach.", True), ("silver", False), ("beach and silver", False), ("", False),
        ("Silver comes first.", False)],
    "more_letters": [  # no / chat
        ("chat", True), ('"chat" has more letters.', True), ("Chat has 2 more letters than no.", True),
        ("The longer word is chat.", True), ("No is shorter than chat.", True), ("no", False),
        ("Chat has 3 more letters than no.", False), ("", False), ("No is longer.", False)],
    "less_letters": [
        ("no", True), ('"No" has fewer letters.', True), ("The shorter word is no.", True),
        ("Chat has more letters than no.", True), ("chat", False), ("", False), ("no or chat", False)],
    "bigger_number": [  # 101 / 723
        ("723", True), ("723 is bigger than 101.", True), ("The bigger number is seven hundred twenty-three.", True),
        ("101 is smaller.", True), ("Of the numbers 101 and 723, 723 is larger.", True), ("101", False), ("", False),
        ("101 and 723", False), ("723 is smaller.", False)],
    "smaller_number": [
        ("101", True), ("The smaller number is 101.", True), ("One hundred and one.", True), ("723", False),
        ("", False), ("101 is bigger than 723.", False)],
    "rhyming_word": [  # declare: beer / wear
        ("wear", True), ('"Wear" rhymes with "declare".', True), ("Declare rhymes with wear, but beer doesn't.", True),
        ("Beer does not rhyme with declare.", True), ("beer", False), ("beer and wear", False), ("", False),
        ("Beer rhymes with declare.", False)],
    "homophones": [  # aisle: isle / classroom
        ("isle", True), ('"Isle" sounds like "aisle".', True), ("Aisle and isle are homophones.", True),
        ("classroom", False), ("", False), ("isle or classroom", False)],
    "most_associated_word": [  # truck bus train chicken van / animals
        ("chicken", True), ('"Chicken" is the word most associated with animals.', True),
        ('The word most commonly associated with "animals" is "chicken".', True), ("truck", False),
        ("truck, bus, train, chicken, and van", False), ("", False)],
    "least_associated_word": [  # / vehicles
        ("chicken", True), ("Chicken is the word least related to vehicles.", True), ("van", False), ("", False),
        ("chicken or van", False)],
    "any_words_from_category": [  # none of peach couch coat truck shirt is an animal
        ("no", True), ("No.", True), ("No, none of them are animals.", True), ("yes", False), ("", False),
        ("Yes and no.", False)],
    "all_words_from_category": [  # truck is not an animal
        ("no", True), ("No, truck is not an animal.", True), ("The answer is no.", True), ("yes", False),
        ("Yes, they are all animals.", False), ("", False)],
    "sentence_containing": [  # beach
        ("We went to the beach.", True), ("Here is a sentence: The beach was crowded today.", True), ("beach", False),
        ("We went to the park.", False), ("", False), ("The beaches were crowded.", False)],
    "sentence_not_containing": [
        ("We went to the park.", True), ("Mountains are tall.", True), ("We went to the beach.", False),
        ("park", False), ("", False)],
    "starts_with_word": [  # villages
        ("Villages are small towns.", True), ('"Villages in the north are cold."', True),
        ("The villages are small.", False), ("villages", False), ("", False)],
    "ends_with_word": [
        ("I love visiting villages.", True), ("There are many small villages!", True), ("Villages are small.", False),
        ("villages", False), ("", False)],
    "starts_with_letter": [  # a
        ("apple", True), ('"Apple".', True), ("A word that starts with a is apple.", True), ("banana", False),
        ("", False), ("Apple is a fruit that grows on trees.", False)],
    "ends_with_letter": [  # a
        ("pizza", True), ("Banana.", True), ("Pizza ends with a.", True), ("apple", False), ("", False)],
    "word_containing": [  # a
        ("cat", True), ('"Banana"', True), ("Cat contains the letter a.", True), ("dog", False), ("", False)],
    "word_not_containing": [  # a
        ("dog", True), ('"Tree".', True), ("Dog doesn't contain the letter a.", True), ("cat", False), ("", False),
        ("A dog is running in the park.", False)],
}


@pytest.fixture(scope="module")
def data_dir(shared_data: Path) -> Path:
    return shared_data / "lmentry" / "data"


@pytest.fixture(scope="module")
def first_examples(data_dir: Path) -> dict:
    return {task: load_task(data_dir / f"{task}.json")[0] for task in CORE_TASKS}


def test_cases_cover_every_core_task_with_right_and_wrong_answers() -> None:
    assert set(CASES) == set(CORE_TASKS)
    for task, cases in CASES.items():
        labels = {label for _, label in cases}
        assert labels == {True, False} and ("", False) in cases, task


def test_agreement_with_hand_labels(first_examples: dict) -> None:
    disagreements = [(task, pred, label) for task, cases in CASES.items() for pred, label in cases
                     if score_prediction(task, first_examples[task], pred, "strict") != label]
    assert disagreements == []


def test_echoed_question_and_curly_quotes(first_examples: dict) -> None:
    example = first_examples["first_letter"]
    assert score_prediction("first_letter", example, example.input + " b", "strict")
    assert score_prediction("first_letter", example, "The first letter is “b”.", "strict")


def test_claims_about_another_question_are_wrong(first_examples: dict) -> None:
    # The right letter, but said of another word / another sentence: not an answer to this question.
    assert not score_prediction("first_letter", first_examples["first_letter"], "Bench starts with b.", "strict")
    assert not score_prediction("first_word", first_examples["first_word"], 'The first word of "He ran" is "He".',
                                "strict")


# The official scorers' verdicts (score, certainty) on the first example of each task; checked against
# aviaefrat/lmentry's code, and where the strict rules differ, that is the point of the case.
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
    assert score_prediction(task, example, prediction) == (verdict[0] == 1)  # official is the default


def test_official_is_the_default_and_strict_is_named_apart(data_dir: Path) -> None:
    generate = lambda prompts: ["The first letter is b or c."] * len(prompts)
    official = evaluate(generate, data_dir, tasks=["first_letter"], limit=1, template="raw")
    strict = evaluate(generate, data_dir, tasks=["first_letter"], limit=1, template="raw", rules="strict")
    assert official["per_task"]["first_letter"]["accuracy"] == 100.0 and official["rules"] == "official"
    assert strict["per_task"]["first_letter"]["accuracy"] == 0.0
    assert set(summarize(strict)) <= {"lmentry_strict_accuracy", "lmentry_strict_robustness", "lmentry_strict_score"}
    assert LMentryConfig(data_dir=str(data_dir)).rules == "official"


def test_number_words_as_num2words_writes_them() -> None:
    assert [number_words(n) for n in (0, 13, 40, 99, 105, 723, 1000, 1024, 2300)] == [
        "zero", "thirteen", "forty", "ninety-nine", "one hundred and five", "seven hundred and twenty-three",
        "one thousand", "one thousand and twenty-four", "two thousand, three hundred"]


def test_number_words() -> None:
    assert parse_number("seven hundred and twenty-three") == 723
    assert parse_number("1,024") == 1024 and parse_number("ninety nine") == 99
    assert parse_number("many") is None and parse_number("") is None


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


@pytest.mark.parametrize("rules", ["official", "strict"])
def test_evaluate_with_a_perfect_model_on_the_shared_sample(data_dir: Path, shared_data: Path, rules: str) -> None:
    tasks = load_tasks(data_dir)
    assert set(tasks) == set(ALL_TASKS)
    generate = _generator(tasks, _oracle(shared_data / "lmentry" / "resources"))
    result = evaluate(generate, data_dir, template="raw", rules=rules)
    assert {t: m["accuracy"] for t, m in result["per_task"].items()} == {t: 100.0 for t in ALL_TASKS}
    assert result["accuracy"] == 100.0 and result["robustness"] == 100.0 and result["lmentry_score"] == 100.0
    # The sample holds only the first 40 examples of each task, nearly all from template 0.
    assert not result["complete"] and any(m.startswith("template: ") for m in result["missing"])
    assert result["robustness_aspects"]["argument_order"] == 100.0
    prefix = "lmentry" if rules == "official" else "lmentry_strict"
    assert summarize(result) == {f"{prefix}_accuracy": 100.0, f"{prefix}_robustness": 100.0, f"{prefix}_score": 100.0}


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
