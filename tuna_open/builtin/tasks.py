"""The quickstart's instruction suite: small synthetic tasks with exact programmatic verifiers.

Why synthetic: the quickstart must show the whole Tuna pipeline working on a laptop CPU with no downloads, and
its improvements must be *measurable*. Tasks a 2-layer model can partly learn in seconds, with a verifier that
says exactly how right an answer is, give held-out accuracy that moves when ranking feedback helps.

``score`` is graded (1.0 for the exact answer, partial credit by similarity otherwise) so that a verifier can
rank N wrong-ish candidates, not only separate right from wrong.
"""

from __future__ import annotations

import difflib
import random
from dataclasses import dataclass
from typing import Callable

from rankers.base import RankRequest

SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "po", "si", "de", "fu", "ga", "bo")
WORDS = (
    "apple river stone cloud tiger maple honey pixel rocket lemon zebra piano candle forest silver orange "
    "garden bottle window marble pepper violet castle dragon winter summer bridge camera planet needle"
).split()


@dataclass(frozen=True)
class TaskFamily:
    name: str
    instruction: str
    make: Callable[[random.Random], tuple[str, str]]
    """Draws one (input, reference output) pair."""


def _numbers(rng: random.Random, lo: int = 1, hi: int = 9) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(3, 5))]


def _join(xs: list[int] | list[str]) -> str:
    return " ".join(str(x) for x in xs)


def _add(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 49), rng.randint(0, 49)
    return f"{a} {b}", str(a + b)


def _reverse(rng: random.Random) -> tuple[str, str]:
    xs = _numbers(rng)
    return _join(xs), _join(xs[::-1])


def _sort(rng: random.Random) -> tuple[str, str]:
    xs = _numbers(rng)
    return _join(xs), _join(sorted(xs))


def _maximum(rng: random.Random) -> tuple[str, str]:
    xs = _numbers(rng, 10, 99)
    return _join(xs), str(max(xs))


def _count(rng: random.Random) -> tuple[str, str]:
    words = rng.sample(WORDS, rng.randint(2, 6))
    return _join(words), str(len(words))


def _pseudo_word(rng: random.Random) -> str:
    """A pronounceable made-up word (~1,900 possibilities), so word tasks have unseen held-out inputs."""
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))


def _upper(rng: random.Random) -> tuple[str, str]:
    word = _pseudo_word(rng)
    return word, word.upper()


def _repeat(rng: random.Random) -> tuple[str, str]:
    word = _pseudo_word(rng)
    return word, ", ".join([word] * 3)


def _first_letters(rng: random.Random) -> tuple[str, str]:
    words = rng.sample(WORDS, rng.randint(2, 4))
    return _join(words), "".join(w[0] for w in words)


FAMILIES: tuple[TaskFamily, ...] = (
    TaskFamily("add", "Add the two numbers.", _add),
    TaskFamily("reverse", "Reverse the order of the numbers.", _reverse),
    TaskFamily("sort", "Sort the numbers from smallest to largest.", _sort),
    TaskFamily("maximum", "Give the largest number in the list.", _maximum),
    TaskFamily("count", "How many words are in the list? Answer with a number.", _count),
    TaskFamily("upper", "Write the word in capital letters.", _upper),
    TaskFamily("repeat", "Repeat the word three times, separated by commas.", _repeat),
    TaskFamily("first_letters", "Write the first letter of each word, joined together.", _first_letters),
)
SPLITS = {"train": 0, "heldout": 1}


def generate(split: str, n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` instruction records of ``split`` (round-robin over task families).

    Held-out items never share (task, input) with the train split of the same seed, so held-out accuracy
    measures generalisation rather than memorisation.
    """
    if split not in SPLITS:
        raise ValueError(f"builtin:tasks has no split {split!r} (known: {', '.join(SPLITS)})")
    rng = random.Random(f"tuna-open/{seed}/{split}")
    exclude: set[tuple[str, str]] = set()
    if split == "heldout":
        exclude = {(r["task"], r["input"]) for r in generate("train", 4000, seed)}
    records: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    attempts = 0
    while len(records) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"builtin:tasks cannot draw {n} distinct {split} examples")
        family = FAMILIES[len(records) % len(FAMILIES)]
        inp, out = family.make(rng)
        key = (family.name, inp)
        if key in exclude or key in seen:
            continue
        seen.add(key)
        records.append({"id": f"{split}-{len(records)}", "task": family.name, "instruction": family.instruction,
                        "input": inp, "output": out})
    return records


def normalise(text: str) -> str:
    """The answer as a grader reads it: first line, surrounding whitespace and a final period dropped."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.strip().rstrip(".").strip()


def score(response: str, reference: str) -> float:
    """1.0 for the exact answer; otherwise up to 0.5 by character similarity (graded partial credit)."""
    got = normalise(response)
    if got == reference:
        return 1.0
    return 0.5 * difflib.SequenceMatcher(None, got, reference).ratio()


def score_request(request: RankRequest) -> list[float]:
    """The ``function`` ranker entry point (``tuna_open.builtin.tasks:score_request``): verifier scores."""
    if request.reference is None:
        raise ValueError(f"request {request.id}: the builtin verifier needs the reference answer")
    return [score(c, request.reference) for c in request.candidates]


def corpus(n: int = 2000, seed: int = 0) -> list[str]:
    """Texts the builtin tokenizer is trained on: the templated prompts and answers of the suite."""
    from rankers.llm.templates import format_prompt

    return [format_prompt(r["instruction"], r["input"]) + r["output"] for r in generate("train", n, seed)]
