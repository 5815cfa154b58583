"""When two candidate responses count as the same answer: two rules, defined once, named for what they serve.

They differ on purpose, and neither may change without changing results:

- ``duplicate_key`` (equal up to case and whitespace) is what a *reader* calls the same answer. The judge prompts
  ask the judge to set duplicated responses aside (``rankers.judging.prompts``), and a judge sees "Paris." and
  "paris." as duplicates; so the rank-line parser accepts a candidate the judge left out only when it has this
  key in common with a ranked one, and a pairwise evaluation does not ask a judge to compare two such answers.
- ``same_response`` (equal up to surrounding whitespace) is what *training* calls the same answer. A preference
  pair between "Paris." and "paris." is a real pair of different token sequences (a ranker may prefer the
  capitalised one), while whitespace around a response is not something a ranker judges: such a pair states
  no preference and is skipped.
"""

from __future__ import annotations


def duplicate_key(text: str) -> str:
    """The text as a reader compares it: case folded, runs of whitespace as one space, none around it."""
    return " ".join(text.casefold().split())


def same_response(a: str, b: str) -> bool:
    """Whether two responses are the same training text: equal once surrounding whitespace is stripped."""
    return a.strip() == b.strip()
