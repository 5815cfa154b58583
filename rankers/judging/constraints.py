"""The decoding constraint of ``constrain: rank_line``: the regex an answer must match and the tokens it needs.

``constrain: rank_line`` is for judges too weak to follow the procedure to its last line (a 135M model loops and
never writes ``rank:``): the same prompt is sent, but decoding is constrained by a regex (vLLM structured
outputs) so that the whole answer is one line ``rank: [i, j, ...]`` whose indices are a permutation of the
candidates'. The judge then writes no analysis, no reference answer of its own and no scores: its rankings carry
no scores, and it is no longer the paper's protocol, only its prompt.
"""

from __future__ import annotations

from itertools import permutations

RANK_LINE_PERMUTATIONS_UP_TO = 6
"""Up to this many candidates the ``rank_line`` regex lists every permutation (6! = 720 alternatives, ~13 kB);
beyond it the list grows too fast (7! = 5,040, 8! = 40,320: a regex of ~0.5 MB for the grammar compiler), so the
regex only fixes the line's shape and the index range, and the parser rejects a repeated index (a re-ask)."""


def rank_line_regex(n: int) -> str:
    """The regex a ``constrain: rank_line`` answer must match in full for n candidates: ``rank: [`` then the
    indices 0..n-1 separated by ``", "``, then ``]`` and nothing else (the judge's own index n is not allowed:
    under the constraint it writes no answer of its own).

    For n ≤ ``RANK_LINE_PERMUTATIONS_UP_TO`` the alternatives are exactly the n! permutations, so every answer
    the constrained judge can write is a readable ranking of all candidates. For larger n any n indices in range
    match; an answer repeating one fails the parser and is re-asked (``max_repairs``) under the same constraint.
    """
    if n < 1:
        raise ValueError(f"a rank line needs at least one candidate, got n={n}")
    if n <= RANK_LINE_PERMUTATIONS_UP_TO:
        body = "|".join(", ".join(map(str, p)) for p in permutations(range(n)))
    else:
        index = "(?:" + "|".join(map(str, range(n))) + ")"
        body = f"{index}(?:, {index}){{{n - 1}}}"
    return rf"rank: \[(?:{body})\]"


def rank_line_tokens(n: int) -> int:
    """A completion budget that always fits a rank line of n indices: its characters (no token is shorter than
    one character of this ASCII line) plus 8 for the end-of-sequence token and tokenizers' empty-text tokens."""
    return len("rank: [" + ", ".join(map(str, range(n))) + "]") + 8
