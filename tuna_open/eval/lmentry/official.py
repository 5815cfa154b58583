"""LMentry's official scoring behaviour (aviaefrat/lmentry ``lmentry/scorers/``), re-implemented.

What "LMentry score" means in the paper and everywhere else is the number the official scorers give, so these
are the rules ``tuna_open.eval.lmentry.evaluate`` scores by. Each task's rule is a cascade:

1. a *negative* check that settles obvious failures (the answer word absent, a lone wrong word, the opposite
   yes/no, the distractor stated as the answer) as a certain 0;
2. a *simple* check: the prediction is the bare answer (``"The word "`` and quotes/periods around it allowed),
   or every alphanumeric token of it is (``b b b``);
3. the task's phrasings ("The first letter of dog is d", "Of the numbers 3 and 7, 7 is bigger", the shared
   "The answer is x"), each tried with the task's prefixes and suffixes: a phrasing that covers the whole
   prediction is a certain 1, one found *anywhere* in it an uncertain 1, none a 0. The accuracy counts the
   uncertain 1s, as the official analysis does.

The official code has quirks that decide real predictions, and they are kept on purpose so the numbers agree:
phrasings are lower-cased *as regular expressions* (so ``\\W`` becomes ``\\w``); the question's words and
sentences enter the expressions unescaped; numbers are matched as digits or as ``num2words`` English
(``seven hundred and twenty-three``); the ``rhyming_word`` and ``homophones`` phrasings must cover the whole
prediction; ``ends_with_letter`` runs two of its phrasings together (a missing comma upstream).

Agreement with the official scorers is measured by ``benchmarks/lmentry_agreement.py``.
"""

from __future__ import annotations

import itertools
import re
import string
from typing import Any, Callable, Iterable, Sequence

Score = tuple[int, int]
"""(score, certainty), each 0 or 1, as the official scorers return them."""

_ALNUM_TOKEN = r"\b[a-z\d]+\b"
_ALPHA_TOKEN = r"\b[a-z]+\b"
_NOT_WORD = "[^a-zA-Z0-9_]"


def _lower(pattern: str) -> str:
    """The official normalisation, applied to predictions and (quirk included) to phrasing regexes."""
    return re.sub(r" +", " ", pattern.strip().lower())


def _prediction(text: str) -> str:
    return _lower(text).replace("_", " ")


def _word(body: str) -> str:
    return r'(The word )?["\'\.,]*\b' + body + r'\b["\'\.,]*'


def _letter(body: str) -> str:
    return r'(The letter )?["\'\.,]*\b' + body + r'\b["\'\.,]*'


def _sentence(body: str) -> str:
    return r'((The sentence )?["\'\.,]*' + body + r'["\'\.,]*|The sentence)'


ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen").split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """English words for 0 <= n < 1,000,000 as ``num2words`` writes them ("one hundred and five", "forty-two",
    "one thousand and twenty-four", "two thousand, three hundred")."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10 - 2] + ("" if n % 10 == 0 else "-" + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return f"{ONES[n // 100]} hundred" + (f" and {number_words(rest)}" if rest else "")
    rest = n % 1000
    head = f"{number_words(n // 1000)} thousand"
    if not rest:
        return head
    return head + (f" and {number_words(rest)}" if rest < 100 else f", {number_words(rest)}")


def _number_body(n: int) -> str:
    words = number_words(n)
    return rf"(\b{n}\b|{words}|{words.replace('-', ' ')})"


def _number(n: int) -> str:
    return r'(The number )?["\'\.,]*\b' + _number_body(n) + r'\b["\'\.,]*'


def _words_in_order(words: Sequence[str]) -> str:
    body = f"{_NOT_WORD}*"
    for i, word in enumerate(words):
        body += f"{word}{_NOT_WORD}+"
        if i == len(words) - 2:
            body += f"(and{_NOT_WORD}+)?"
    return rf"(The words )?{body}{_NOT_WORD}*"


def _swap(text: str, a: str, b: str) -> str:
    """Exchange every ``a`` and ``b`` in ``text`` (through placeholders, as upstream)."""
    pa, pb = "X" * len(text), "Y" * len(text)
    return text.replace(a, pa).replace(b, pb).replace(pa, b).replace(pb, a)


def _answer_phrasings(target: str) -> list[str]:
    return [f"{target} is the answer", f"The answer is {target}", f"The correct answer is {target}",
            f"Answer: {target}"]


def _simple(prediction: str, answer: str, repeats: bool = True) -> tuple[int | None, int | None]:
    """Bare answer (case-insensitive, optional final period) or, with ``repeats``, every token the answer."""
    if not re.search(r"[^\W_]", prediction):
        return 0, 1
    result: tuple[int | None, int | None] = (None, None)
    if re.match(rf"{answer}\.?$", prediction, flags=re.IGNORECASE):
        result = (1, 1)
    if repeats and all(re.match(answer + "$", token) for token in re.findall(_ALNUM_TOKEN, prediction)):
        result = (1, 1)
    return result


def _phrasings(prediction: str, bases: Iterable[str], prefixes: Sequence[str] = ("",),
               suffixes: Sequence[str] = ("",), **fill: Any) -> Score:
    """Certain 1 on a whole-prediction match, uncertain 1 on a match anywhere, else 0 (prefix/suffix outer)."""
    bases = list(bases)
    found = 0
    for prefix, suffix in itertools.product(prefixes, suffixes):
        head, tail = prefix.format(**fill), suffix.format(**fill)
        for base in bases:
            pattern = _lower(head + base + tail)
            if re.match(pattern + r"\.?$", prediction):
                return 1, 1
            if re.search(pattern, prediction):
                found = 1
    return found, 0


def _first_certain(prediction: str, answers: Iterable[str], repeats: bool = True) -> Score | None:
    for answer in answers:
        score, certainty = _simple(prediction, answer, repeats)
        if score:
            return score, certainty
    return None


def _absent(prediction: str, word: str) -> bool:
    return not re.search(rf"\b{word}\b", prediction)


def _lone_other_word(prediction: str, answer: str, token: str = _ALPHA_TOKEN) -> bool:
    words = re.findall(token, prediction)
    return len(words) == 1 and words[0] != answer


# ---------------------------------------------------------------------------------------------------- tasks


def _letter_position(first: bool) -> Callable[[str, dict[str, Any]], Score]:
    ord_, of = ("first", "(of|in)") if first else ("last", "(of|in)")
    verb = "(starts|begins)" if first else "ends"
    other = "starting" if first else "final"

    def score(p: str, meta: dict[str, Any]) -> Score:
        if _absent(p, meta["answer"]):
            return 0, 1
        answer = _letter(meta["answer"])
        if (hit := _first_certain(p, [answer])) is not None:
            return hit
        word = _word(meta["word"])
        bases = [f"The {ord_} letter is {answer}", f"The {ord_} letter {of} {word} is {answer}",
                 f"{answer} is the {ord_} letter {of} {word}", f"{word} {verb} with {answer}",
                 f"The letter that {word} {verb} with is {answer}", f"{answer} is the {other} letter {of} {word}",
                 f"{word}: {answer}", f"{ord_.capitalize()} letter: {answer}"]
        return _phrasings(p, bases + _answer_phrasings(answer))

    return score


def _word_position(first: bool) -> Callable[[str, dict[str, Any]], Score]:
    ord_, verb = ("first", "begins") if first else ("last", "ends")

    def score(p: str, meta: dict[str, Any]) -> Score:
        answer, sentence = meta["answer"].lower(), meta["sentence"].lower()
        if _absent(p, answer):
            return 0, 1
        answer, sentence = _word(answer), _sentence(sentence)
        if (hit := _first_certain(p, [answer])) is not None:
            return hit
        # Upstream's last-word list keeps the first-word list's "First word" line (and \W lower-cased to \w).
        bases = [f"The {ord_} word is {answer}", f"The {ord_} word (of|in) {sentence} is {answer}",
                 f"{answer} is the {ord_} word", f"{sentence} {verb} with {answer}", rf"First word\W+{answer}"]
        return _phrasings(p, bases + _answer_phrasings(answer), ("", "In {sentence} "), ("", " (of|in) {sentence}"),
                          sentence=sentence)

    return score


def _neighbour(after: bool) -> Callable[[str, dict[str, Any]], Score]:
    after_re, before_re = r"(immediately |right )?after", r"(immediately |right )?before"
    succeeds, precedes, follows = r"(immediately )?succeeds", r"(immediately )?precedes", r"(immediately )?follows"

    def bases_for(a: str, q: str, s: str) -> list[str]:
        if after:
            rel, verb, flip = after_re, succeeds, before_re
            own = [f"{a} comes {rel} {q}", f"{a} is the word that comes {rel} {q}", f"{a} {verb} {q}",
                   f"{a} is the word that {verb} {q}", f"{a} {follows} {q}", f"The word that comes {rel} {q} is {a}",
                   f"The word that comes {rel} {q} in {s} is {a}", f"The word that {verb} {q} is {a}",
                   f"The word that {follows} {q} is {a}", f"{q} is succeeded by {a}", f"{q} is followed by {a}"]
        else:
            rel, verb, flip = before_re, precedes, after_re
            own = [f"{a} comes {rel} {q}", f"{a} is the word that comes {rel} {q}", f"{a} {verb} {q}",
                   f"{a} is the word that {verb} {q}", f"{a} is followed by {q}",
                   f"The word that comes {rel} {q} is {a}",
                   f"The word that comes {rel} {q} in {s} is {a}", f"The word that {verb} {q} is {a}",
                   f"The word that {follows} {a} is {q}", f"{a} is succeeded by {q}", f"{q} {follows} {a}"]
        mirrored = [_swap(b, a, q).replace(rel, flip) for b in own if rel in b]
        return own + mirrored + _answer_phrasings(a)

    def score(p: str, meta: dict[str, Any]) -> Score:
        answer, query, sentence = (meta[k].lower() for k in ("answer", "query", "sentence"))
        result: Score | None = (0, 1) if _absent(p, answer) else None
        if re.sub(r"[^\w ]+", "", p) == sentence:
            result = (0, 1)
        if result is not None:
            return result
        answer, query, sentence = _word(answer), _word(query), _sentence(sentence)
        if (hit := _first_certain(p, [answer])) is not None:
            return hit
        return _phrasings(p, bases_for(answer, query, sentence), ("", "In {sentence} "), ("", " (of|in) {sentence}"),
                          sentence=sentence)

    return score


def _compare_numbers(bigger: bool) -> Callable[[str, dict[str, Any]], Score]:
    big = r"(bigger|larger)"

    def score(p: str, meta: dict[str, Any]) -> Score:
        tokens = re.findall(_ALNUM_TOKEN, p)
        if len(set(tokens)) == 1 and tokens[0] != str(meta["answer"]):
            return 0, 1
        answer, distractor = _number(meta["answer"]), _number(meta["distractor"])
        if (hit := _first_certain(p, [answer])) is not None:
            return hit
        if bigger:
            own = [f"{answer} is {big}", f"{answer} is {big} than {distractor}", f"{answer} is the {big} number",
                   f"The {big} number is {answer}"]
            mirrored = [_swap(b, answer, distractor).replace(big, "smaller") for b in own]
        else:
            own = [f"{answer} is smaller", f"{answer} is smaller than {distractor}",
                   f"{answer} is the smaller number", f"The smaller number is {answer}"]
            mirrored = [_swap(b, answer, distractor).replace("smaller", big) for b in own]
        prefixes = ("", "Of the numbers {n1} and {n2}, ", "From the numbers {n1} and {n2}, ",
                    "Between the numbers {n1} and {n2}, ")
        return _phrasings(p, own + mirrored + _answer_phrasings(answer), prefixes, n1=meta["n1"], n2=meta["n2"])

    return score


def _compare_lengths(more: bool) -> Callable[[str, dict[str, Any]], Score]:
    fewer = r"(less|fewer)"
    big, long_ = ("more", "longer") if more else (fewer, "shorter")
    number = r"(?P<number>\d+|one|two|three|four|five|six|seven|eight|nine|ten|zero|a single)"

    def claims(a: str, d: str, diff: str) -> list[str]:
        return [f"{a} has {big} letters", f"{a} has {big} letters than {d}", f"{a} has {diff} {big} letter(s)?",
                f"{a} has {diff} {big} letter(s)? than {d}", f"The word that has {big} letters is {a}",
                f"{a} is the word that has {big} letters", f"{a} is {long_}", f"{a} is {long_} than {d}",
                f"{a} is {long_} than {d} by {diff} letter(s)?", f"The {long_} word is {a}",
                f"The word that is {long_} is {a}", f"{a} is the word that is {long_}"]

    def score(p: str, meta: dict[str, Any]) -> Score:
        gap = abs(len(meta["answer"]) - len(meta["distractor"]))
        answer, distractor, diff = _word(meta["answer"]), _word(meta["distractor"]), _number_body(gap)
        words = (_word(meta["word1"]), _word(meta["word2"]))
        result: Score | None = None
        # The distractor claimed as the whole answer is a certain 0.
        wrong = [distractor, f"{distractor} has {big} letters", f"{distractor} has {big} letters than {answer}",
                 f"{distractor} has {diff} {big} letter(s)?", f"{distractor} has {diff} {big} letter(s)? than {answer}",
                 f"The word that has {big} letters is {distractor}", f"{distractor} is the word that has {big} letters",
                 f"{distractor} is {long_}", f"{distractor} is {long_} by {diff} letter(s)?",
                 f"{distractor} is {long_} than {answer}",
                 f"{distractor} is {long_} than {answer} by {diff} letter(s)?",
                 f"The {long_} word is {distractor}", f"The word that is {long_} is {distractor}",
                 f"{distractor} is the word that is {long_}"]
        if any(re.match(rf"{_lower(w)}\.?$", p) for w in wrong):
            result = (0, 1)
        stated = [f"{answer} has {number} {big} letter(s)?",
                  f"{answer} has {number} {big} letter(s)? than {distractor}",
                  f"{answer} is {long_} by {number} letter(s)?",
                  f"{answer} is {long_} than {distractor} by {number} letter(s)?"]
        for pattern in stated:
            if (m := re.match(pattern, p)) and not re.match(diff, m.group("number")):
                result = (0, 1)
                break
        if result is not None:
            return result
        if (hit := _first_certain(p, [answer])) is not None:
            return hit
        bases = claims(answer, distractor, diff)
        if more:
            bases += [_swap(b, answer, distractor).replace("more", fewer) for b in bases if "more" in b]
            bases += [_swap(b, answer, distractor).replace("longer", "shorter") for b in bases if "longer" in b]
        else:
            bases += [_swap(b, answer, distractor).replace(fewer, "more") for b in bases if fewer in b]
            bases += [_swap(b, answer, distractor).replace("shorter", "longer") for b in bases if "shorter" in b]
        prefixes = ("", "Of the words {word1} and {word2}, ", "From the words {word1} and {word2}, ")
        return _phrasings(p, bases + _answer_phrasings(answer), prefixes, word1=words[0], word2=words[1])

    return score


def _pick_one(exact_bases: Callable[[str, str, str], list[str]],
              negative: Callable[[str, str], bool]) -> Callable[[str, dict[str, Any]], Score]:
    """Rhymes and homophones: the bare answer, or one of the phrasings covering the whole prediction."""

    def score(p: str, meta: dict[str, Any]) -> Score:
        if negative(p, meta["answer"]):
            return 0, 1
        answer = _word(meta["answer"])
        if (hit := _first_certain(p, [answer])) is not None:
            return hit
        query, distractor = _word(meta["query"]), _word(meta["distractor"])
        hit = _first_certain(p, exact_bases(answer, query, distractor))
        return hit if hit is not None else (0, 0)

    return score


def _rhymes(a: str, q: str, d: str) -> list[str]:
    art, while_, doesnt = r"(a|the)", "(while|but|and)", r"(does not|doesn't)"
    own = [f"{q} rhymes with {a}( and not with {d})?", f"{q} is {art} rhyme of {a}( and not of {d})?",
           f"{q} and {a} rhyme", f"{q} and {a} are rhymes", f"{q} and {a} are words that rhyme",
           f"{art} rhyme of {q} is {a}( and not {d})?", f"{art} word rhyming with {q} is {a}",
           f"{art} word that rhymes with {q} is {a}",
           f"{q} and {a}( both)? rhyme( with each other)?, {while_} {d} {doesnt} rhyme with either( word)?"]
    return own + [_swap(b, a, q) for b in own] + [
        rf"{d} {doesnt} rhyme with {q}(\s+{a} (rhymes|does rhyme) with {q})?",
        rf"{q} {doesnt} rhyme with {d}(\s+{q} (rhymes|does rhyme) with {a})?",
        rf"{a} rhymes with {q}\s+{d} {doesnt} rhyme with {q}"]


def _homophones(a: str, q: str, d: str) -> list[str]:
    but, like = r"(\.,)? (but|and)", "(like|similar to)"
    own = [f"{q} sounds {like} {a}", f"{q} sounds {like} {a}{but} not {like} {d}",
           f"{q} sounds {like} {a}{but} {d} does not",
           f"{q} and {a} sound alike", f"{q} sounds more {like} {a}",
           f"{q} sounds more {like} {a} than( like)? {d}( does)?",
           f"{q} sounds most {like} {a}", f"{q} is a homophone of {a}", f"{q} and {a} are homophones( of each other)?",
           f"The homophone of {q} is {a}"]
    return own + [_swap(b, a, q) for b in own]


def _alphabetical(p: str, meta: dict[str, Any]) -> Score:
    if _lone_other_word(p, meta["answer"]):
        return 0, 1
    answer, distractor = _word(meta["answer"]), _word(meta["distractor"])
    if (hit := _first_certain(p, [answer, f"{answer} does"])) is not None:
        return hit
    comes = "(comes|is)"
    bases = [f"{answer} {comes} first", f"{distractor} {comes} second", f"{distractor} {comes} after",
             f"{answer} {comes} before {distractor}", f"{distractor} {comes} after {answer}"]
    prefixes = ("", "Alphabetically, ", "In an alphabetical order, ", "In alphabetical order, ",
                "Of the words {word1} and {word2}, ")
    suffixes = ("", " alphabetically", " in an alphabetical order", " in alphabetical order", " in the dictionary")
    return _phrasings(p, bases + _answer_phrasings(answer), prefixes, suffixes,
                      word1=_word(meta["word1"]), word2=_word(meta["word2"]))


def _association(most: bool) -> Callable[[str, dict[str, Any]], Score]:
    sup = "most" if most else "least"
    related, to_, is_ = rf"{sup}( commonly)? (associated|related)", r"(to|with)", r"(is|are)"

    def score(p: str, meta: dict[str, Any]) -> Score:
        if _absent(p, meta["answer"]):
            return 0, 1
        i = meta["answer_index"]
        options = meta["distractors"][:i] + [meta["answer"]] + meta["distractors"][i:]
        answer, category = _word(meta["answer"]), _word(meta["category"])
        exact = [answer, f"{category} - {answer}"] if most else [answer]
        if (hit := _first_certain(p, exact)) is not None:
            return hit
        words = (rf"(of|from) ({_words_in_order(options)}|the (words|options) (above|given|listed|following)"
                 rf"|the (above|given|listed|following) (words|options))")
        own = [f"The word {related} {to_} {category} is {answer}",
               f"The word {related} {to_} {category} {words} is {answer}",
               f"{category} {is_} {related} {to_} {answer}", f"{answer} {is_} the {related} {to_} {category}",
               f"{answer} {is_} the word {related} {to_} {category}",
               f"The word that relates to {category} the {sup} is {answer}",
               f"{answer} relates to {category} the {sup}"]
        bases = own + [_swap(b, answer, category) for b in own] + _answer_phrasings(answer)
        return _phrasings(p, bases, ("", "{words}[^a-zA-Z0-9_]*"), ("", "[^a-zA-Z0-9_]*{words}"), words=words)

    return score


_CATEGORY_NAMES = {"items of clothing": "(items of clothing|clothes|clothing)",
                   "furniture": "(furniture|pieces of furniture)", "fruit": "(fruit|fruits)"}


def _yes_no(answer_of: Callable[[dict[str, Any]], str], phrasings: Callable[[str, dict[str, Any]], list[str]]
            ) -> Callable[[str, dict[str, Any]], Score]:
    def score(p: str, meta: dict[str, Any]) -> Score:
        answer = answer_of(meta)
        if re.match(rf"{'no' if answer == 'yes' else 'yes'}\.?$", p):
            return 0, 1
        if (hit := _first_certain(p, [answer])) is not None:
            return hit
        return _phrasings(p, phrasings(answer, meta) + _answer_phrasings(answer))

    return score


def _all_words_phrasings(answer: str, meta: dict[str, Any]) -> list[str]:
    category = _CATEGORY_NAMES.get(meta["category"], meta["category"])
    all_words = r"(all of these words|all of those words|all of the words|they all)"
    listed, belong = r"(listed|in the list)", r"(represent|are types of|refer to types of)"
    return [f"{answer}, the list contains only {category}", f"{answer}, {all_words}( {listed})? {belong} {category}",
            rf"^{answer}\b"]


def _write_letter_word(task: str) -> Callable[[str, dict[str, Any]], Score]:
    """starts/ends_with_letter and word_containing: offer a word meeting a letter condition."""

    def score(p: str, meta: dict[str, Any]) -> Score:
        letter = meta["letter"]
        short_ok = letter in {"a", "i"}
        tokens = re.findall(_ALPHA_TOKEN, p)
        if task == "starts_with_letter":
            if all(t[0] != letter for t in tokens):
                return 0, 1
            body = rf"{letter}-?" + (r"\w*" if short_ok else r"\w+")
        elif task == "ends_with_letter":
            if all(t[-1] != letter for t in tokens):
                return 0, 1
            body = (r"\w*" if short_ok else r"\w+") + letter
        else:
            body = rf"\w*{letter}\w*" if short_ok else rf"((\w+{letter}\w*)|(\w*{letter}\w+)|({letter}-\w+))"
        word = _word(body)
        if (hit := _first_certain(p, [word])) is not None:
            return hit
        letter = _letter(letter)
        a, possible, word_ = r"(a|one)", r"possible( such)?", r"(word|answer)"
        if task == "starts_with_letter":
            starts, starting = r"(starts|begins)", r"(starting|beginning)"
            bases = [f"{a} {possible} {word_} is {word}", f"{word} is {a} {possible} {word_}",
                     f"{word} {starts} with {letter}",
                     f"{word} is {a} word that {starts} with {letter}", f"{word} is {a} word {starting} with {letter}",
                     f"A word starting with {letter} is {word}", f"{word} is {a} word whose first letter is {letter}",
                     f"{letter} is for {word}", f"How about {word}", f"May I suggest {word}"]
        elif task == "ends_with_letter":
            bases = [f"{a} {possible} {word_} is {word}", f"{word} is {a} {possible} {word_}",
                     f"{word} ends with {letter}",
                     f"{word} is {a} word that ends with {letter}", f"{word} is {a} word ending with {letter}",
                     f"A word ending with {letter} is {word}",
                     f"{word} is {a} word whose last letter is {letter}How about {word}",  # upstream's missing comma
                     f"May I suggest {word}"]
        else:
            bases = [f"{word} (is a word (that|which) )?(contains|uses|has) {letter}"]
        return _phrasings(p, bases + _answer_phrasings(word))

    return score


def _word_not_containing(p: str, meta: dict[str, Any], question: str) -> Score:
    letter = meta["letter"]
    result: Score | None = None
    if re.match(_lower(question).replace(f'"{letter}"', r'"\w"') + "$", p):  # the question repeated
        result = (0, 1)
    if not re.search(r"\W", p) and letter in p:
        result = (0, 1)
    if result is not None:
        return result
    allowed = rf"(\b[{string.ascii_lowercase.replace(letter, '')}]{{2,}}\b)"
    allowed += "".join(rf"|({short})" for short in ("a", "i") if letter != short)
    word = _word(f"({allowed})")
    if (hit := _first_certain(p, [word], repeats=False)) is not None:
        return hit
    letter_re = _letter(letter)
    that, doesnt = r"(that|which)", r"((does not)|(doesn't))"
    bases = [f"{word} (is a word {that} )?{doesnt} (contain|use|have) {letter_re}",
             f"A word {that} {doesnt} (contain|use|have) {letter_re} is {word}",
             f"A word not (containing|using|having) {letter_re} is {word}", f"{word} is a word without {letter_re}"]
    return _phrasings(p, bases)


def _sentence_with_word(start: bool) -> Callable[[str, dict[str, Any]], Score]:
    def score(p: str, meta: dict[str, Any]) -> Score:
        word = meta["word"].lower()
        if _absent(p, word):
            return 0, 1
        word = _word(word)
        valid = r"(a|i|\w\w+)"
        sentence = (rf"[^a-zA-Z0-9_]*{word}[^a-zA-Z0-9_]+{valid}.*" if start
                    else rf".*{valid}[^a-zA-Z0-9_]+{word}[^a-zA-Z0-9_]*")
        bases = [sentence, *_answer_phrasings(sentence)]
        if (hit := _first_certain(p, [sentence])) is not None:
            return hit
        if start:
            prefixes = ("The sentence( is)?", "(a|one) sentence that starts with {word}( is)?",
                        "(a|one) sentence starting with {word}( is)?",
                        "(a|one) sentence whose first word is {word}( is)?")
            suffixes = ("starts with {word}", "is a sentence that starts with {word}",
                        "is a sentence starting with {word}", "is a sentence whose first word is {word}")
        else:
            prefixes = ("The sentence( is)?", "(a|one) sentence that ends with {word} ( is)?",
                        "(a|one) sentence ending with {word}( is)?",
                        "(a|one) sentence whose (last|final) word is {word}( is)?")
            suffixes = ("$",)
        return _phrasings(p, bases, prefixes, suffixes, word=word)

    return score


def _sentence_containing(p: str, meta: dict[str, Any]) -> Score:
    word = meta["word"].lower()
    return (1, 1) if re.search(_sentence(rf"((.*\b{word}\b.+)|(.+\b{word}\b.*))"), p) else (0, 1)


def _sentence_not_containing(p: str, meta: dict[str, Any]) -> Score:
    word = meta["word"].lower()
    if re.search(rf"\b{word}\b", p):
        return 0, 1
    tokens = re.findall(_ALPHA_TOKEN, p)
    if not tokens:
        return 0, 1
    if len(tokens) == 1:
        return 0, 0  # one word is not counted as a sentence, uncertainly
    return 1, 0 if word in p else 1  # the word inside another one ("cats") is an uncertain 1


_SCORERS: dict[str, Callable[[str, dict[str, Any]], Score]] = {
    "first_letter": _letter_position(True), "last_letter": _letter_position(False),
    "first_word": _word_position(True), "last_word": _word_position(False),
    "word_after": _neighbour(True), "word_before": _neighbour(False),
    "bigger_number": _compare_numbers(True), "smaller_number": _compare_numbers(False),
    "more_letters": _compare_lengths(True), "less_letters": _compare_lengths(False),
    "rhyming_word": _pick_one(_rhymes, _lone_other_word), "homophones": _pick_one(_homophones, _absent),
    "first_alphabetically": _alphabetical,
    "most_associated_word": _association(True), "least_associated_word": _association(False),
    "all_words_from_category": _yes_no(lambda m: "yes" if m["num_distractors"] == 0 else "no", _all_words_phrasings),
    "any_words_from_category": _yes_no(lambda m: "yes" if m["num_words"] > m["num_distractors"] else "no",
                                       lambda answer, meta: [rf"^{answer}\b"]),
    "starts_with_letter": _write_letter_word("starts_with_letter"),
    "ends_with_letter": _write_letter_word("ends_with_letter"),
    "word_containing": _write_letter_word("word_containing"),
    "starts_with_word": _sentence_with_word(True), "ends_with_word": _sentence_with_word(False),
    "sentence_containing": _sentence_containing, "sentence_not_containing": _sentence_not_containing,
}


def score_official(task: str, metadata: dict[str, Any], question: str, prediction: str) -> Score:
    """(score, certainty) of ``prediction`` for a core task (an analysis variant passes its core task)."""
    p = _prediction(prediction)
    if task == "word_not_containing":
        return _word_not_containing(p, metadata, question)
    return _SCORERS[task](p, metadata)
