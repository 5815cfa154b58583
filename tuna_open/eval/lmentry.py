"""LMentry (Efrat et al., 2023): 25 elementary tasks, scored by per-task rules, summarised as the LMentry score.

**Scoring rules.** Two rule sets, chosen by ``LMentryConfig.rules``:

- ``official`` (the default, and what "LMentry score" means): the official scorers' behaviour
  (aviaefrat/lmentry ``lmentry/scorers/``), re-implemented in ``tuna_open.eval.lmentry_official``: regular
  expressions per task; a prediction is right when it is the bare answer or matches one of the phrasings a
  person would use to give it ("The first letter is b.", "Of the numbers 101 and 723, 723 is bigger."), and a
  phrasing found anywhere in a longer answer counts too (an "uncertain" 1, counted like a certain one).
  ``benchmarks/lmentry_agreement.py`` measures its agreement with the official code.
- ``strict`` (this project's earlier rules; numbers are not comparable with published LMentry scores): the
  same intent, decided by *claims*: the prediction is cut into sentences, each sentence is matched in full against
  the task's
phrasings, and every phrasing names the slot holding the answer it claims (``x``) or an option it rejects
(``n``: "beer doesn't rhyme with declare" claims the other option of a two-option question). A prediction is
correct when it makes at least one claim and all its claims are the right answer; sentences that claim nothing
(explanations) are ignored. So a hedge ("b or c", "Maybe b"), a listing of both options, a wrong claim anywhere,
an echo of the question or an empty answer is wrong, while quotes, "the word", "The answer is", a trailing
period and an explanation after the answer are accepted. Where the official scorers accept a match found
*anywhere* in the text as an uncertain 1, these rules accept only full-sentence claims, so "The first letter is
b or c" is wrong here. Words named in a claim (the word asked about, the query word, the sentence) must be the
ones of the question, or the claim is wrong. Tasks that ask the model to *write* something (a word with a
letter, a sentence with a word) check the written word or the first written sentence against the task's
condition, like the official scorers; neither checks that a word is in a dictionary. A model that continues
with a new ``Q:`` line is cut there. Yes/no tasks, like the official ones, need an explicit yes or no.

**The LMentry score** (``lmentry/analysis/lmentry_score.py``): ``accuracy * robustness / 100``, where accuracy
is the mean of the 25 core tasks' accuracies, and robustness (``analysis/robustness.py``) the mean of four
aspects, each ``100 - the largest accuracy gap`` within a group, averaged over groups: *argument order*
(accuracy when the answer is the first vs. the second argument; 7 tasks), *argument content* (the task
variants of ``ARGUMENT_CONTENT_GROUPS``), *template* (the 3 prompt templates of each core task) and *adjacent
tasks* (the 17 task pairs of ``ADJACENT_TASK_PAIRS``). A group that the evaluated data cannot fill (a task left
out, or a template with no examples, as in a cut-down copy) is skipped and reported under ``missing``; the
result is then marked incomplete, and its robustness is not comparable with the paper's.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from rankers.llm.templates import TemplateName, format_prompt
from tuna_open.eval.lmentry_official import ONES, TENS, score_official
from tuna_open.eval.superni import GenerateFn, generate_all

Rules = Literal["official", "strict"]

CORE_TASKS: tuple[str, ...] = (
    "sentence_containing", "sentence_not_containing", "word_containing", "word_not_containing",
    "most_associated_word", "least_associated_word", "any_words_from_category", "all_words_from_category",
    "first_alphabetically", "more_letters", "less_letters", "bigger_number", "smaller_number", "rhyming_word",
    "homophones", "word_after", "word_before", "starts_with_word", "ends_with_word", "starts_with_letter",
    "ends_with_letter", "first_word", "last_word", "first_letter", "last_letter",
)
ARGUMENT_ORDER_TASKS: tuple[str, ...] = (
    "more_letters", "less_letters", "first_alphabetically", "rhyming_word", "homophones", "bigger_number",
    "smaller_number",
)
ARGUMENT_CONTENT_GROUPS: dict[str, tuple[str, ...]] = {
    "first_alphabetically": ("far_first_letter", "different_first_letter", "consecutive_first_letter",
                             "same_first_letter"),
    "all_words_from_category": ("0_distractors", "1_distractors", "2_distractors"),
    "any_words_from_category": ("5_distractors", "4_distractors", "3_distractors"),
    "rhyming_word": ("orthographically_similar", "orthographically_different"),
    "more_letters": ("length_diff_3plus", "length_diff_1"),
    "less_letters": ("length_diff_3plus", "length_diff_1"),
}
ANALYSIS_TASKS: tuple[str, ...] = tuple(f"{task}_{variant}" for task, variants in ARGUMENT_CONTENT_GROUPS.items()
                                        for variant in variants)
ADJACENT_TASK_PAIRS: tuple[tuple[str, str], ...] = (
    ("bigger_number", "smaller_number"), ("more_letters", "less_letters"), ("word_after", "word_before"),
    ("most_associated_word", "least_associated_word"), ("any_words_from_category", "all_words_from_category"),
    ("sentence_containing", "sentence_not_containing"), ("word_containing", "word_not_containing"),
    ("starts_with_word", "starts_with_letter"), ("ends_with_word", "ends_with_letter"),
    ("sentence_containing", "word_containing"), ("sentence_not_containing", "word_not_containing"),
    ("first_word", "first_letter"), ("last_word", "last_letter"), ("starts_with_word", "ends_with_word"),
    ("starts_with_letter", "ends_with_letter"), ("first_word", "last_word"), ("first_letter", "last_letter"),
)
ALL_TASKS: tuple[str, ...] = CORE_TASKS + ANALYSIS_TASKS


class LMentryConfig(BaseModel):
    """Where the LMentry task files are and which part of them to evaluate."""

    model_config = ConfigDict(extra="forbid")

    data_dir: str
    """The directory of task files (``<task>.json``), e.g. a checkout's ``data/``."""
    tasks: list[str] | None = None
    """Default: every LMentry task (core and analysis) with a file in ``data_dir``."""
    limit: int | None = Field(default=None, ge=1)
    """Examples per task, spread evenly over the task's templates (default: all)."""
    template: TemplateName = "alpaca"
    """How an example's input reaches the model: a ``rankers.llm.templates`` name (``raw`` passes it unchanged)."""
    rules: Rules = "official"
    """``official``: the official scorers' behaviour (comparable LMentry scores); ``strict``: this project's
    claim-based rules (see the module docstring)."""


@dataclass(frozen=True)
class Example:
    task: str
    id: str
    input: str
    metadata: dict[str, Any]


# ---------------------------------------------------------------------------------------------------- loading


def base_task(task: str) -> str:
    """The core task whose scoring rule a task uses (an analysis variant uses its core task's)."""
    for core in sorted(CORE_TASKS, key=len, reverse=True):
        if task == core or task.startswith(core + "_"):
            return core
    raise ValueError(f"unknown LMentry task {task!r}")


def load_task(path: Path, limit: int | None = None) -> list[Example]:
    """A task file's examples; with ``limit``, taken round-robin over templates so each template keeps a share."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        examples = [Example(path.stem, str(key), value["input"], value["metadata"])
                    for key, value in data["examples"].items()]
        for example in examples:
            int(example.metadata["template_id"])
    except FileNotFoundError:
        raise ValueError(f"{path}: LMentry task file not found") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise ValueError(f"{path}: not an LMentry task file (missing or malformed {err})") from None
    if limit is None or limit >= len(examples):
        return examples
    by_template: dict[int, list[Example]] = defaultdict(list)
    for example in examples:
        by_template[example.metadata["template_id"]].append(example)
    queues = [by_template[t] for t in sorted(by_template)]
    picked: list[Example] = []
    for rank in range(max(len(q) for q in queues)):
        picked.extend(q[rank] for q in queues if rank < len(q))
    return picked[:limit]


def load_tasks(data_dir: str | Path, tasks: Sequence[str] | None = None,
               limit: int | None = None) -> dict[str, list[Example]]:
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: LMentry data directory not found")
    names = list(tasks) if tasks is not None else [t for t in ALL_TASKS if (root / f"{t}.json").is_file()]
    if not names:
        raise ValueError(f"{root}: no LMentry task files (<task>.json)")
    for name in names:
        base_task(name)
    return {name: load_task(root / f"{name}.json", limit) for name in names}


# ---------------------------------------------------------------------------------------------------- text


_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "`": "'"})
_NEW_QUESTION = re.compile(r"\n\s*(?:q|question)\s*:", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
_HEDGE = re.compile(r"\b(?:maybe|perhaps|possibly|probably|not sure|unsure|could be|might be|i guess)\b")


def _prepare(prediction: str, question: str) -> str:
    """Lower-cased text of the answer proper: without an echoed question or a following new question."""
    text = prediction.replace(question.strip(), " ") if question.strip() else prediction
    text = _NEW_QUESTION.split(text.translate(_QUOTES))[0]
    return text.replace("_", " ").lower().strip()


def _sentences(text: str) -> list[str]:
    """Sentences with collapsed spaces and without their final period or exclamation mark."""
    parts = (" ".join(part.split()).rstrip(".! ") for part in _SENTENCE_END.split(text))
    return [part for part in parts if part]


def _tokens(text: str) -> list[str]:
    return re.findall(_WORD, text)


# ---------------------------------------------------------------------------------------------------- numbers

_ONES, _TENS = ONES, TENS
_NUMBER_WORD = "|".join(sorted(_ONES + _TENS + ["hundred", "thousand"], key=len, reverse=True))


def parse_number(text: str) -> int | None:
    """``723``, ``1,024``, ``seven hundred and twenty-three`` -> int; None for anything else."""
    text = text.strip().replace(",", "")
    if text.isdigit():
        return int(text)
    words = [w for w in re.split(r"[\s-]+", text) if w and w != "and"]
    if not words:
        return None
    total = current = 0
    for word in words:
        if word in _ONES:
            current += _ONES.index(word)
        elif word in _TENS:
            current += 10 * (_TENS.index(word) + 2)
        elif word == "hundred":
            current *= 100
        elif word == "thousand":
            total, current = total + current * 1000, 0
        else:
            return None
    return total + current


# ---------------------------------------------------------------------------------------------------- patterns

_WORD = r"[a-z0-9]+(?:['-][a-z0-9]+)*"
_LETTER = r"[a-z]"
_NUMBER = rf"\d[\d,]*|(?:{_NUMBER_WORD})(?:(?: and |[ -])(?:{_NUMBER_WORD}))*"
_DIFF = r"\d+|a single|" + "|".join(_ONES)

_FRAME = (r"(?:(?:so|thus|therefore|hence),? )?"
          r"(?:(?:the )?(?:correct |right |final )?answer(?: is)?:? |a: "
          r"|(?:obviously|certainly|definitely|plainly|clearly|of course|undoubtedly),? "
          r"(?:it is |it's |this is |that is |that's )?)?")
_ANSWER_SUFFIX = r"(?: is the (?:correct |right )?answer)?"


def _slot(name: str | None, body: str, kind: str) -> str:
    """A value, optionally introduced by its kind ("the letter b") and quoted; ``name`` captures it."""
    inner = f"(?P<{name}>{body})" if name else f"(?:{body})"
    return rf"(?:the {kind} )?[\"']?{inner}[.,!?]?[\"']?"


def _sentence_slot(name: str | None) -> str:
    inner = rf"(?P<{name}>[^\"]+?)" if name else r"(?:[^\"]+?)"
    return rf"(?:the sentence )?[\"']?{inner}[.!?]?[\"']?"


_QUOTED_WORD = rf"[\"']?{_WORD}[\"']?"
_OPTION_LIST = rf"{_QUOTED_WORD}(?:(?:,? (?:and|or) |, | ){_QUOTED_WORD})*"


@dataclass(frozen=True)
class _Family:
    """The phrasings of one kind of question.

    Templates may use ``{x}`` (the claimed answer), ``{n}`` (a rejected option), ``{o}`` (another option,
    unchecked), ``{d}`` (a stated letter-count difference), ``{w}``/``{q}``/``{s}`` (the word, query word or
    sentence of the question, checked), ``{c}`` (a category, unchecked) and the family's ``vocab``. Clauses
    (leading "Of the words a and b, ...") and trails (trailing "... alphabetically") use only unchecked parts.
    """

    slot: str
    templates: tuple[str, ...]
    kind: str = "word"
    """What a value may be introduced as: "the word b", "the letter b", "the number 7"."""
    vocab: tuple[tuple[str, str], ...] = ()
    clauses: tuple[str, ...] = ()
    trails: tuple[str, ...] = ()

    def compile(self) -> tuple[re.Pattern[str], ...]:
        vocab = dict(self.vocab)
        word = _slot(None, _WORD, "word")
        free = {"o": _slot(None, self.slot, self.kind), "w": word, "q": word, "s": _sentence_slot(None),
                "c": r"[\"']?[a-z][a-z ]*?[\"']?", "opts": _OPTION_LIST, **vocab}
        bound = {**free, "x": _slot("x", self.slot, self.kind), "n": _slot("n", self.slot, self.kind),
                 "d": rf"(?:(?P<d>{_DIFF}) )?", "w": _slot("w", _WORD, "word"), "q": _slot("q", _WORD, "word"),
                 "s": _sentence_slot("s")}
        clause = f"(?:(?:{'|'.join(c.format(**free) for c in self.clauses)}),? )?" if self.clauses else ""
        trail = f"(?:,? (?:{'|'.join(t.format(**free) for t in self.trails)}))?" if self.trails else ""
        return tuple(re.compile(_FRAME + clause + t.format(**bound) + trail + _ANSWER_SUFFIX)
                     for t in self.templates)


def _letter_family(first: bool) -> _Family:
    return _Family(
        slot=_LETTER, kind="letter",
        vocab=(("ord", "(?:first|initial|starting|beginning|opening)" if first else "(?:last|final|ending|closing)"),
               ("verb", "(?:starts|begins)" if first else "ends")),
        templates=("{x}", "(?:the )?{ord} letter(?: (?:of|in) {w})? is {x}",
                   "{x} is the {ord} letter(?: (?:of|in) {w})?", "{w} {verb} with {x}",
                   "the letter (?:that )?{w} {verb} with is {x}", "{w}: {x}",
                   "{ord} letter: {x}"),
        clauses=("in {w}",), trails=("(?:of|in) {w}",))


def _word_position_family(first: bool) -> _Family:
    return _Family(
        slot=_WORD,
        vocab=(("ord", "(?:first|initial|starting|opening)" if first else "(?:last|final|ending|closing)"),
               ("verb", "(?:starts|begins)" if first else "ends")),
        templates=("{x}", "(?:the )?{ord} word(?: (?:of|in) {s})? is {x}",
                   "{x} is the {ord} word(?: (?:of|in) {s})?", "{s} {verb} with {x}", "{ord} word: {x}"),
        clauses=("in {s}",), trails=("(?:of|in) {s}",))


def _neighbour_family(after: bool) -> _Family:
    """``x`` is the word right after (or before) the query word ``q``; the relation can be stated either way."""
    return _Family(
        slot=_WORD,
        vocab=(("adv", "(?:immediately |right |directly )?"), ("rel", "after" if after else "before"),
               ("verb", "(?:follows|succeeds)" if after else "precedes"),
               ("passive", "(?:followed|succeeded)" if after else "preceded"),
               ("rel_q", "before" if after else "after"),
               ("verb_q", "precedes" if after else "(?:follows|succeeds)")),
        templates=("{x}", "{x} (?:comes |is )?{adv}{rel} {q}",
                   "(?:the )?word (?:that )?(?:comes |is )?{adv}{rel} {q}(?: in {s})? is {x}",
                   "{x} {adv}{verb} {q}", "(?:the )?word (?:that )?{adv}{verb} {q}(?: in {s})? is {x}",
                   "{q} is {adv}{passive} by {x}", "{q} (?:comes |is )?{adv}{rel_q} {x}", "{q} {adv}{verb_q} {x}"),
        clauses=("in {s}",), trails=("in {s}",))


_ALPHABETICAL = _Family(
    slot=_WORD,
    templates=("{x}", "{x} does", "{x} (?:comes|is|goes|would come) first", "{x} (?:comes|is|goes) before {o}",
               "{n} (?:comes|is|goes) (?:second|last)", "{n} (?:comes|is|goes) after {o}",
               "(?:the )?(?:word that comes first|first word|first one) is {x}"),
    clauses=("alphabetically", "in (?:an )?alphabetical order",
             "(?:of|between|from) (?:the (?:two )?words )?{o} and {o}"),
    trails=("alphabetically", "in (?:an )?alphabetical order", "in the dictionary"))


def _length_family(more: bool) -> _Family:
    big, small = ("more", "(?:fewer|less)") if more else ("(?:fewer|less)", "more")
    long, short = ("longer", "shorter") if more else ("shorter", "longer")
    return _Family(
        slot=_WORD, vocab=(("big", big), ("small", small), ("long", long), ("short", short)),
        templates=("{x}", "{x} has {d}{big} letters?(?: than {o})?",
                   "{x} is {long}(?: than {o})?(?: by {d}letters?)?", "(?:the )?{long} (?:word|one) is {x}",
                   "(?:the )?word (?:that has|with) {big} letters is {x}",
                   "{x} is the (?:{long} (?:word|one)|word (?:that is {long}|that has {big} letters"
                   "|with {big} letters))",
                   "{n} has {d}{small} letters?(?: than {o})?", "{n} is {short}(?: than {o})?(?: by {d}letters?)?",
                   "(?:the )?{short} (?:word|one) is {n}"),
        clauses=("(?:of|between|from) (?:the (?:two )?words )?{o} and {o}",))


def _number_family(bigger: bool) -> _Family:
    big, small = "(?:bigger|larger|greater|higher)", "(?:smaller|lower|less|lesser)"
    if not bigger:
        big, small = small, big
    return _Family(
        slot=_NUMBER, kind="number", vocab=(("big", big), ("small", small)),
        templates=("{x}", "{x} is (?:the )?{big}(?: number| one)?(?: than {o})?",
                   "(?:the )?{big} (?:number|one|of the two(?: numbers)?) is {x}",
                   "{x} is the {big} of the two(?: numbers)?",
                   "{n} is (?:the )?{small}(?: number| one)?(?: than {o})?", "(?:the )?{small} (?:number|one) is {n}"),
        clauses=("(?:of|between|from) (?:the (?:two )?numbers )?{o} and {o}",))


_CONTRAST_TRAILS = ("(?:and |but )?not (?:with |like )?{o}",
                    "(?:but|while|whereas|and) {o} (?:does not|doesn't)(?: rhyme| sound like it)?(?: with (?:it|{q}))?",
                    "(?:but|while|whereas|and) {o} does")

_RHYME = _Family(
    slot=_WORD,
    templates=("{x}", "{q} rhymes with {x}", "{x} rhymes with {q}",
               "{q} and {x} (?:rhyme|are rhymes|are words that rhyme)(?: with each other)?",
               "{x} and {q} (?:rhyme|are rhymes|are words that rhyme)(?: with each other)?",
               "{x} is (?:a|the) rhyme (?:of|for) {q}",
               "(?:a|the) (?:rhyme (?:of|for)|word (?:that )?rhym(?:es|ing) with) {q} is {x}",
               "{n} (?:does not|doesn't) rhyme with {q}"),
    clauses=("(?:of|between|from) (?:the (?:two )?words )?{o} and {o}",),
    trails=_CONTRAST_TRAILS)

_HOMOPHONE = _Family(
    slot=_WORD, vocab=(("like", "(?:more |most |exactly )?(?:like|similar to|the same as)"),
                       ("alike", "(?:sound (?:alike|the same|similar)|are homophones)(?: of each other)?")),
    templates=("{x}", "{q} sounds {like} {x}", "{x} sounds {like} {q}", "{q} and {x} {alike}", "{x} and {q} {alike}",
               "{x} is (?:a|the) homophone (?:of|for) {q}", "{q} is (?:a|the) homophone (?:of|for) {x}",
               "(?:a|the) homophone (?:of|for) {q} is {x}", "{n} (?:does not|doesn't) sound like {q}"),
    clauses=("(?:of|between|from) (?:the (?:two )?words )?{o} and {o}",),
    trails=("than(?: like)? {o}(?: does)?", *_CONTRAST_TRAILS))


def _association_family(most: bool) -> _Family:
    sup = "most" if most else "least"
    related = rf"{sup}(?: commonly| closely)? (?:associated|related) (?:to|with)"
    return _Family(
        slot=_WORD, vocab=(("related", related), ("sup", sup)),
        templates=("{x}", "{c} - {x}", "(?:the )?word {related} {c} is {x}",
                   "{x} is (?:the )?(?:word )?{related} {c}", "{c} is {related} {x}",
                   "(?:the )?word that relates to {c} the {sup} is {x}",
                   "{x} relates to {c} the {sup}"),
        clauses=("(?:of|from|among) (?:the (?:words|options)(?: given| listed| above)?:? )?(?:{opts})?",),
        trails=("(?:of|from|among) (?:the (?:words|options)(?: given| listed| above)?|{opts})",))


@lru_cache(maxsize=None)
def _patterns(family: str) -> tuple[re.Pattern[str], ...]:
    return _FAMILIES[family]().compile()


_FAMILIES: dict[str, Callable[[], _Family]] = {
    "first_letter": lambda: _letter_family(True), "last_letter": lambda: _letter_family(False),
    "first_word": lambda: _word_position_family(True), "last_word": lambda: _word_position_family(False),
    "word_after": lambda: _neighbour_family(True), "word_before": lambda: _neighbour_family(False),
    "first_alphabetically": lambda: _ALPHABETICAL,
    "more_letters": lambda: _length_family(True), "less_letters": lambda: _length_family(False),
    "bigger_number": lambda: _number_family(True), "smaller_number": lambda: _number_family(False),
    "rhyming_word": lambda: _RHYME, "homophones": lambda: _HOMOPHONE,
    "most_associated_word": lambda: _association_family(True),
    "least_associated_word": lambda: _association_family(False),
}


# ---------------------------------------------------------------------------------------------------- rules


def _same_text(a: str, b: str) -> bool:
    return _tokens(a.lower()) == _tokens(b.lower())


@dataclass(frozen=True)
class _Claims:
    """Judges the claims of a closed question (one right answer) against its answer and options."""

    family: str
    answer: str
    options: tuple[str, ...] = ()
    context: tuple[tuple[str, str], ...] = ()
    canon: Callable[[str], str | None] = str
    diff: int | None = None

    def __call__(self, text: str) -> bool:
        claims: list[str | None] = []
        for sentence in _sentences(text):
            found = self._claims(sentence)
            if not found and self._hedges(sentence):
                return False  # "b. Or maybe c."
            claims.extend(found)
        return bool(claims) and all(claim == self.answer for claim in claims)

    def _hedges(self, sentence: str) -> bool:
        """A hedging word outside the candidates themselves (an option may be the word "possibly")."""
        for word in (self.answer, *self.options):
            sentence = re.sub(rf"\b{re.escape(word)}\b", " ", sentence)
        return bool(_HEDGE.search(sentence))

    def _claims(self, sentence: str) -> list[str | None]:
        """The sentence's claim: [] if it claims nothing, [None] if it only fits as a claim about something else.

        Phrasings are symmetric ("q rhymes with x" / "x rhymes with q"), so the first reading that agrees with
        the question's words (and stated letter difference) is taken.
        """
        matched = False
        for pattern in _patterns(self.family):
            match = pattern.fullmatch(sentence)
            if match is None:
                continue
            matched = True
            groups = {k: v for k, v in match.groupdict().items() if v is not None}
            if any(not _same_text(groups[k], expected) for k, expected in self.context if k in groups):
                continue
            if "d" in groups and _diff_value(groups["d"]) != self.diff:
                continue
            if "x" in groups:
                return [self.canon(groups["x"])]
            return [self._other(self.canon(groups["n"]))]
        return [None] if matched else []

    def _other(self, rejected: str | None) -> str | None:
        """Rejecting one of two options claims the other one."""
        if len(self.options) != 2 or rejected not in self.options:
            return None
        return self.options[1 - self.options.index(rejected)]


def _diff_value(text: str) -> int | None:
    return 1 if text == "a single" else parse_number(text)


def _number_canon(text: str) -> str | None:
    value = parse_number(text)
    return None if value is None else str(value)


def _closed(meta: dict[str, Any], family: str) -> _Claims:
    """The claims judge for one example of a closed task."""
    answer = str(meta["answer"]).lower()
    if family in ("first_letter", "last_letter"):
        return _Claims(family, answer, context=(("w", meta["word"]),))
    if family in ("first_word", "last_word"):
        return _Claims(family, answer, context=(("s", meta["sentence"]),))
    if family in ("word_after", "word_before"):
        return _Claims(family, answer, context=(("q", meta["query"]), ("s", meta["sentence"])))
    if family in ("bigger_number", "smaller_number"):
        return _Claims(family, str(int(meta["answer"])), (str(int(meta["n1"])), str(int(meta["n2"]))),
                       canon=_number_canon)
    if family in ("rhyming_word", "homophones"):
        options = (answer, str(meta["distractor"]).lower())
        return _Claims(family, answer, options, context=(("q", meta["query"]),))
    if family in ("more_letters", "less_letters"):
        return _Claims(family, answer, (str(meta["word1"]).lower(), str(meta["word2"]).lower()),
                       diff=abs(len(meta["word1"]) - len(meta["word2"])))
    if family == "first_alphabetically":
        return _Claims(family, answer, (str(meta["word1"]).lower(), str(meta["word2"]).lower()))
    return _Claims(family, answer)  # most/least associated word: five options, no negation


_YES_NO = re.compile(_FRAME + r"(?P<x>yes|no)\b(?!\s*,?\s*(?:or|and|/)\s*(?:yes|no)\b).*")


def _yes_no(expected: str, text: str) -> bool:
    """Every sentence that opens with yes or no is a claim; a hedge like "yes and no" claims nothing."""
    claims = [m["x"] for s in _sentences(text) if (m := _YES_NO.fullmatch(s))]
    return bool(claims) and all(claim == expected for claim in claims)


def _write_word_family(relation: str) -> _Family:
    letter = _slot(None, _LETTER, "letter")
    return _Family(
        slot=_WORD, vocab=(("rel", relation), ("l", letter), ("which", f"(?: (?:that |which )?{relation} {letter})?"),
                           ("a", "(?:a|one|an example of a|another)"), ("kind", "(?:possible |such |good |valid )*")),
        templates=("{x}", "{a} {kind}(?:word|answer|example){which} (?:is|would be|could be) {x}",
                   "{x} is {a} {kind}(?:word|answer|example){which}", "{x} {rel} {l}",
                   "{x} is {a} word (?:that |which )?{rel} {l}", "how about {x}", "may i suggest {x}",
                   "here(?: is|'s) {a} (?:word|example){which}: {x}", "{l} is for {x}"))


_WRITE_WORD_RELATIONS = {
    "starts_with_letter": "(?:starts with|begins with|starting with|beginning with|whose first letter is)",
    "ends_with_letter": "(?:ends with|ending with|whose last letter is)",
    "word_containing": "(?:contains|containing|has|having|uses|using|includes|including|with)",
    "word_not_containing": "(?:(?:does not|doesn't) (?:contain|have|use|include)|not containing|without(?: using)?"
                           "|with no|lacking)",
}
_WORD_LIST = re.compile(_FRAME + rf"(?P<x>{_WORD}(?:(?:,| and|, and| or|, or) {_WORD})+)")


@lru_cache(maxsize=None)
def _write_word_patterns(task: str) -> tuple[re.Pattern[str], ...]:
    return _write_word_family(_WRITE_WORD_RELATIONS[task]).compile()


def _written_word_ok(task: str, letter: str, word: str) -> bool:
    if not word.isalpha() and "-" not in word and "'" not in word:
        return False
    if len(word) < 2 and word not in ("a", "i"):
        return False
    if task == "starts_with_letter":
        return word[0] == letter
    if task == "ends_with_letter":
        return word[-1] == letter
    if task == "word_containing":
        return letter in word
    return letter not in word


def _write_word(task: str, letter: str, text: str) -> bool:
    """Every word offered (one, or a list of them) must meet the condition."""
    claims: list[str] = []
    for sentence in _sentences(text):
        match = next((m for p in _write_word_patterns(task) if (m := p.fullmatch(sentence))), None)
        if match is not None:
            claims.append(match["x"])
        elif listed := _WORD_LIST.fullmatch(sentence):
            claims.extend(_tokens(listed["x"].replace(" and ", " ").replace(" or ", " ")))
    return bool(claims) and all(_written_word_ok(task, letter, word) for word in claims)


_SENTENCE_FRAME = re.compile(r"^(?:(?:sure|okay|ok)[,!.]?\s+)?(?:here(?: is|'s)\s+)?(?:(?:a|an|one|the|my)\s+)?"
                             r"(?:possible\s+|example\s+)?sentence\b[^:\n]*:\s*|^the sentence is\s+")


def _written_sentence(text: str) -> list[str]:
    """The words of the first sentence written, after a "Here is a sentence ...:" frame."""
    body = _SENTENCE_FRAME.sub("", text, count=1)
    first = next(iter(_SENTENCE_END.split(body.strip())), "")
    return _tokens(first)


def _write_sentence(task: str, word: str, text: str) -> bool:
    words = _written_sentence(text)
    if len(words) < 2:  # one word is not a sentence
        return False
    word = word.lower()
    if task == "starts_with_word":
        return words[0] == word
    if task == "ends_with_word":
        return words[-1] == word
    if task == "sentence_containing":
        return word in words
    return word not in words


def score_prediction(task: str, example: Example, prediction: str, rules: Rules = "official") -> bool:
    """Whether ``prediction`` answers ``example`` of ``task`` correctly (a variant scores as its core task)."""
    base = base_task(task)
    if rules == "official":
        return score_official(base, example.metadata, example.input, prediction)[0] == 1
    text = _prepare(prediction, example.input)
    meta = example.metadata
    if base in _FAMILIES:
        return _closed(meta, base)(text)
    if base == "all_words_from_category":
        return _yes_no("yes" if meta["num_distractors"] == 0 else "no", text)
    if base == "any_words_from_category":
        return _yes_no("yes" if meta["num_words"] > meta["num_distractors"] else "no", text)
    if base in _WRITE_WORD_RELATIONS:
        return _write_word(base, str(meta["letter"]).lower(), text)
    return _write_sentence(base, str(meta["word"]), text)


# ---------------------------------------------------------------------------------------------------- metrics


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _accuracy(flags: Sequence[bool]) -> float:
    return 100.0 * sum(flags) / len(flags)


def task_metrics(examples: Sequence[Example], correct: Sequence[bool]) -> dict[str, Any]:
    """Accuracy (0-100) overall, per template and, for two-argument tasks, per answer position."""
    by_template: dict[int, list[bool]] = defaultdict(list)
    by_index: dict[int, list[bool]] = defaultdict(list)
    for example, ok in zip(examples, correct):
        by_template[int(example.metadata["template_id"])].append(ok)
        if "answer_index" in example.metadata:
            by_index[int(example.metadata["answer_index"])].append(ok)
    return {"accuracy": _accuracy(correct), "n": len(correct),
            "per_template": {t: _accuracy(v) for t, v in sorted(by_template.items())},
            "per_answer_index": {i: _accuracy(v) for i, v in sorted(by_index.items())}}


def _robustness_of(accuracies: Sequence[float]) -> float:
    """LMentry's ``robustness_func``: 100 minus the largest gap between any two accuracies."""
    return 100.0 - (max(accuracies) - min(accuracies))


def lmentry_score(per_task: dict[str, dict[str, Any]], num_templates: int = 3) -> dict[str, Any]:
    """Accuracy, the four robustness aspects, robustness, and the LMentry score from per-task metrics."""
    missing: list[str] = []

    def aspect(name: str, groups: Iterable[tuple[str, list[float] | None]]) -> float | None:
        values = []
        for label, accs in groups:
            if accs is None:
                missing.append(f"{name}: {label}")
            else:
                values.append(_robustness_of(accs))
        return _mean(values)

    def task_accuracies(names: Sequence[str]) -> list[float] | None:
        return [per_task[n]["accuracy"] for n in names] if all(n in per_task for n in names) else None

    def positions(task: str) -> list[float] | None:
        by_index = per_task.get(task, {}).get("per_answer_index", {})
        return [by_index[0], by_index[1]] if 0 in by_index and 1 in by_index else None

    def templates(task: str) -> list[float] | None:
        by_template = per_task.get(task, {}).get("per_template", {})
        ids = range(num_templates)
        return [by_template[t] for t in ids] if all(t in by_template for t in ids) else None

    aspects = {
        "argument_order": aspect("argument_order", ((t, positions(t)) for t in ARGUMENT_ORDER_TASKS)),
        "argument_content": aspect("argument_content", ((task, task_accuracies([f"{task}_{v}" for v in variants]))
                                                        for task, variants in ARGUMENT_CONTENT_GROUPS.items())),
        "template": aspect("template", ((t, templates(t)) for t in CORE_TASKS)),
        "adjacent_tasks": aspect("adjacent_tasks", ((f"{a}/{b}", task_accuracies([a, b]))
                                                    for a, b in ADJACENT_TASK_PAIRS)),
    }
    missing.extend(f"accuracy: {t}" for t in CORE_TASKS if t not in per_task)
    accuracy = _mean(per_task[t]["accuracy"] for t in CORE_TASKS if t in per_task)
    robustness = _mean(v for v in aspects.values() if v is not None)
    score = accuracy * robustness / 100.0 if accuracy is not None and robustness is not None else None
    return {"accuracy": accuracy, "robustness": robustness, "lmentry_score": score, "robustness_aspects": aspects,
            "complete": not missing, "missing": missing}


def evaluate(generate_fn: GenerateFn, data_dir: str | Path, tasks: Sequence[str] | None = None,
             limit: int | None = None, template: str = "alpaca", rules: Rules = "official") -> dict[str, Any]:
    """Generate for every example of the chosen tasks, score each answer, and compute the LMentry score."""
    examples = load_tasks(data_dir, tasks, limit)
    flat = [example for task_examples in examples.values() for example in task_examples]
    predictions = generate_all(generate_fn, [format_prompt(example.input, "", template) for example in flat])
    correct = [score_prediction(e.task, e, p, rules) for e, p in zip(flat, predictions)]
    per_task: dict[str, dict[str, Any]] = {}
    records: dict[str, list[dict[str, Any]]] = {}
    start = 0
    for task, task_examples in examples.items():
        end = start + len(task_examples)
        per_task[task] = task_metrics(task_examples, correct[start:end])
        records[task] = [{"id": e.id, "input": e.input, "prediction": p, "correct": ok}
                         for e, p, ok in zip(task_examples, predictions[start:end], correct[start:end])]
        start = end
    return {**lmentry_score(per_task), "rules": rules, "per_task": per_task, "predictions": records}


def summarize(result: dict[str, Any]) -> dict[str, float]:
    """The flat numbers for a run report (a number that could not be computed is left out)."""
    # Only the official rules give an "LMentry score"; the strict rules' numbers are named apart.
    prefix = "lmentry" if result.get("rules", "official") == "official" else "lmentry_strict"
    flat = {f"{prefix}_accuracy": result["accuracy"], f"{prefix}_robustness": result["robustness"],
            f"{prefix}_score": result["lmentry_score"]}
    return {key: float(value) for key, value in flat.items() if value is not None}
