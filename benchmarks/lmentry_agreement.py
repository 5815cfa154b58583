"""Agreement of ``tuna_open.eval.lmentry.official`` with the official LMentry scorers, on generated predictions.

    python benchmarks/lmentry_agreement.py --data DIR --lmentry CHECKOUT [--per-example 40] [--seed 0]

``DIR`` holds LMentry task files (``<task>.json``); ``CHECKOUT`` is a directory from which
``lmentry.scorers.scorer_mapping`` imports (a checkout of aviaefrat/lmentry, with ``num2words`` installed). For
every example of every task file, ``--per-example`` predictions are generated: the bare answer and the wrong
option, the phrasings of both rule sets and free variations of them (case, quotes, "The answer is",
explanations, hedges, a second claim, the question echoed, numbers as words, other words of the example,
noise), each scored by both implementations. Prints one JSON object: per task the number of predictions and
the agreement on the score (the number LMentry accuracy counts) and on (score, certainty), and how many the
official scorers counted right (and how many of those uncertainly); the disagreements' first examples go to
``--examples FILE``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuna_open.eval.lmentry.official import number_words, score_official
from tuna_open.eval.lmentry.tasks import base_task, load_task

FILLER_WORDS = ("apple", "dog", "tree", "music", "yellow", "table", "river", "happy", "zebra", "ice", "a", "i",
                "quick", "box", "jump", "light", "onion", "under", "very", "wax", "xray", "e-mail", "x-ray")
WRAPPERS = ("{}", "{}.", " {} ", "{}!", '"{}"', "'{}'.", "The answer is {}.", "Answer: {}", "{} is the answer.",
            "The correct answer is {}", "A: {}", "{}\nQ: next question", "{}. This is because it is.",
            "I think {}.", "Maybe {}.", "{} or something else.", "Obviously, it's {}.", "{}, definitely.",
            "The word {}", "The letter {}", "The number {}", "{}\n\nExplanation: see above.", "{} {}")


def _values(meta: dict[str, Any]) -> dict[str, list[str]]:
    """Strings an answer may be built from: the right one, wrong ones, and the question's other parts."""
    right, wrong, parts = [], [], []
    if "answer" in meta:
        right.append(str(meta["answer"]))
        if isinstance(meta["answer"], int):
            right.append(number_words(meta["answer"]))
    for key in ("distractor", "word1", "word2", "n1", "n2", "query", "category", "word", "letter"):
        if key in meta and isinstance(meta[key], (str, int)):
            (wrong if key == "distractor" else parts).append(str(meta[key]))
    wrong += [str(d) for d in meta.get("distractors", []) if isinstance(d, str)]
    if "sentence" in meta:
        parts.append(meta["sentence"])
        words = meta["sentence"].split()
        wrong += words[:3]
    for key in ("num_distractors",):
        if key in meta:
            right.append("yes" if meta[key] == 0 else "no")
            wrong.append("no" if meta[key] == 0 else "yes")
    return {"right": right or ["yes"], "wrong": wrong or list(FILLER_WORDS[:3]), "parts": parts or ["it"]}


def _phrasings(task: str, meta: dict[str, Any], a: str, o: str) -> list[str]:
    """Task phrasings with answer ``a`` and other option ``o`` (either may be the wrong one)."""
    w, q, s = str(meta.get("word", "")), str(meta.get("query", "")), str(meta.get("sentence", ""))
    c, letter = str(meta.get("category", "")), str(meta.get("letter", ""))
    n1, n2 = meta.get("n1", a), meta.get("n2", o)
    diff = str(abs(len(str(meta.get("word1", ""))) - len(str(meta.get("word2", "")))))
    return {
        "first_letter": [f"The first letter of {w} is {a}", f"{w} starts with {a}", f"{a} is the first letter of {w}",
                         f'The first letter of "{w}" is "{a}".', f"First letter: {a}", f"{w}: {a}",
                         f"{w} begins with the letter {a}"],
        "last_letter": [f"The last letter of {w} is {a}", f"{w} ends with {a}", f"{a} is the final letter of {w}",
                        f"Last letter: {a}", f"The letter that {w} ends with is {a}"],
        "first_word": [f"The first word is {a}", f'The first word of "{s}" is "{a}".', f"{a} is the first word",
                       f"In {s} the first word is {a}", f"First word: {a}", f"{s} begins with {a}"],
        "last_word": [f"The last word is {a}", f'The last word in "{s}" is {a}.', f"{a} is the last word of {s}",
                      f"{s} ends with {a}"],
        "word_after": [f"{a} comes after {q}", f"The word that comes right after {q} is {a}", f"{q} is followed by {a}",
                       f"{a} immediately follows {q}", f"{q} comes before {a}", f"In {s} the word after {q} is {a}"],
        "word_before": [f"{a} comes before {q}", f"The word that comes immediately before {q} is {a}",
                        f"{a} precedes {q}", f"{q} follows {a}", f"{q} comes after {a}", f"{a} is followed by {q}"],
        "bigger_number": [f"{a} is bigger", f"{a} is larger than {o}", f"The bigger number is {a}",
                          f"Of the numbers {n1} and {n2}, {a} is bigger", f"{o} is smaller than {a}", f"{a} > {o}"],
        "smaller_number": [f"{a} is smaller", f"{a} is smaller than {o}", f"The smaller number is {a}",
                           f"Between the numbers {n1} and {n2}, {a} is smaller", f"{o} is bigger than {a}"],
        "more_letters": [f"{a} has more letters", f"{a} has {diff} more letters than {o}", f"{a} is longer than {o}",
                         f"The longer word is {a}", f"{o} has fewer letters than {a}", f"{a} is longer by 1 letter",
                         f'Of the words "{meta.get("word1")}" and "{meta.get("word2")}", {a} is longer'],
        "less_letters": [f"{a} has fewer letters", f"{a} has {diff} less letters than {o}", f"{a} is shorter than {o}",
                         f"The shorter word is {a}", f"{o} has more letters than {a}",
                         f"{a} is shorter by two letters"],
        "first_alphabetically": [f"{a} comes first", f"{a} comes before {o}", f"Alphabetically, {a} comes first",
                                 f"{o} comes after {a} in the dictionary", f"{a} does",
                                 f"In alphabetical order, {a} is first"],
        "rhyming_word": [f"{q} rhymes with {a}", f"{a} rhymes with {q}", f"{q} and {a} rhyme",
                         f"A word that rhymes with {q} is {a}", f"{o} doesn't rhyme with {q}",
                         f"{q} rhymes with {a} and not with {o}"],
        "homophones": [f"{q} sounds like {a}", f"{q} and {a} sound alike", f"{a} is a homophone of {q}",
                       f"The homophone of {q} is {a}", f"{q} sounds more like {a} than {o}"],
        "most_associated_word": [f"The word most associated with {c} is {a}", f"{a} is the most related to {c}",
                                 f"{c} - {a}", f"{a} relates to {c} the most", f"Of the words given, {a}"],
        "least_associated_word": [f"The word least associated with {c} is {a}", f"{a} is the least related to {c}",
                                  f"{a} relates to {c} the least", f"From the options above, {a}"],
        "all_words_from_category": [f"{a}, they all are types of {c}", f"{a}, the list contains only {c}",
                                    f"{a}, because"],
        "any_words_from_category": [f"{a}, one of them is", f"{a}. There is a word from {c}."],
        "starts_with_letter": [f"{a} starts with {letter}", f"A word starting with {letter} is {a}", f"How about {a}",
                               f"{letter} is for {a}", f"{a} is a possible word"],
        "ends_with_letter": [f"{a} ends with {letter}", f"A word ending with {letter} is {a}", f"May I suggest {a}"],
        "word_containing": [f"{a} contains {letter}", f"{a} is a word that has {letter}"],
        "word_not_containing": [f"{a} doesn't contain {letter}", f"A word without {letter} is {a}",
                                f"{a} is a word without {letter}"],
        "starts_with_word": [f"{a}", f"The sentence is {a}", f"A sentence that starts with {w}: {a}"],
        "ends_with_word": [f"{a}", f"The sentence {a}", f"One sentence ending with {w} is {a}"],
        "sentence_containing": [f"{a}", f"Here is a sentence: {a}"],
        "sentence_not_containing": [f"{a}", f"Sure: {a}"],
    }[task]


def _written(task: str, meta: dict[str, Any], rng: random.Random) -> tuple[str, str]:
    """A (right-ish, wrong-ish) pair for the tasks that ask the model to write something."""
    letter, word = str(meta.get("letter", "e")), str(meta.get("word", "cat")).lower()
    pool = list(FILLER_WORDS)
    fits = {"starts_with_letter": lambda x: x.startswith(letter), "ends_with_letter": lambda x: x.endswith(letter),
            "word_containing": lambda x: letter in x, "word_not_containing": lambda x: letter not in x}
    if task in fits:
        good = [x for x in pool if fits[task](x)] or [letter + "ox"]
        bad = [x for x in pool if not fits[task](x)] or ["zzz"]
        return rng.choice(good), rng.choice(bad)
    other = rng.choice(pool)
    sentences = {"starts_with_word": (f"{word.capitalize()} is near the {other}.", f"The {other} is {word}."),
                 "ends_with_word": (f"I saw the {other} {word}.", f"{word.capitalize()} is here."),
                 "sentence_containing": (f"The {other} and the {word} are here.", f"The {other} is here."),
                 "sentence_not_containing": (f"The {other} is very {rng.choice(pool)}.", f"The {word} is here.")}
    return sentences[task]


def predictions_for(task: str, example: Any, rng: random.Random, count: int) -> list[str]:
    meta = example.metadata
    values = _values(meta)
    written = task in ("starts_with_letter", "ends_with_letter", "word_containing", "word_not_containing",
                       "starts_with_word", "ends_with_word", "sentence_containing", "sentence_not_containing")
    out = ["", "   ", "I don't know.", example.input, example.input.split("\n")[0]]
    while len(out) < count:
        if written:
            a, o = _written(task, meta, rng)
        else:
            a, o = rng.choice(values["right"]), rng.choice(values["wrong"] + values["parts"])
            if rng.random() < 0.3:
                a, o = o, a
        core = rng.choice([a, a, *_phrasings(task, meta, a, o)])
        if rng.random() < 0.2:
            core = core.upper() if rng.random() < 0.5 else core.capitalize()
        wrapper = rng.choice(WRAPPERS)
        text = wrapper.format(core, rng.choice([core, o, a]))
        if rng.random() < 0.15:
            text += " " + rng.choice(_phrasings(task, meta, o, a) if not written else [o])
        if rng.random() < 0.05:
            text = rng.choice(values["parts"]) + " " + text
        out.append(text)
    return out[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--lmentry", required=True, help="directory from which lmentry.scorers imports")
    parser.add_argument("--per-example", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", help="write up to 20 disagreements per task to this JSON file")
    args = parser.parse_args()
    sys.path.insert(0, args.lmentry)
    official = importlib.import_module("lmentry.scorers.scorer_mapping").task_name_to_scorer
    rng = random.Random(args.seed)
    stats: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "score_agree": 0, "both_agree": 0,
                                                             "official_errors": 0, "official_1": 0,
                                                             "official_uncertain_1": 0})
    disagreements: dict[str, list[dict[str, Any]]] = defaultdict(list)
    start = time.time()
    for path in sorted(Path(args.data).glob("*.json")):
        task = base_task(path.stem)
        for example in load_task(path):
            for prediction in predictions_for(task, example, rng, args.per_example):
                row = stats[task]
                try:
                    want = tuple(official[task]().score_prediction(prediction, {"input": example.input,
                                                                                "metadata": example.metadata}))
                except Exception:  # noqa: BLE001 - an upstream crash (e.g. a question that is no valid regex)
                    row["official_errors"] += 1
                    continue
                got = score_official(task, example.metadata, example.input, prediction)
                row["n"] += 1
                row["official_1"] += want[0] == 1
                row["official_uncertain_1"] += want == (1, 0)
                row["score_agree"] += got[0] == want[0]
                row["both_agree"] += got == want
                if got != want and len(disagreements[task]) < 20:
                    disagreements[task].append({"file": path.stem, "id": example.id, "prediction": prediction,
                                                "official": want, "ours": got})
    total = {k: sum(r[k] for r in stats.values()) for k in next(iter(stats.values()))}
    report = {"seconds": round(time.time() - start, 1), "total": total,
              "score_agreement": total["score_agree"] / total["n"],
              "per_task": {t: {**r, "score_agreement": r["score_agree"] / r["n"]} for t, r in sorted(stats.items())}}
    print(json.dumps(report, indent=1))
    if args.examples:
        Path(args.examples).write_text(json.dumps(disagreements, indent=1))


if __name__ == "__main__":
    main()
