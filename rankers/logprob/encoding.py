"""What every log-prob engine of ``rankers.logprob`` shares: the scorer protocol, the one tokenization they all score,
and the shape of a ``score`` answer.

Here, below the ``teacher_logprob`` backend rather than in it, so the engines (which the backend imports when one
is chosen) never import the backend back.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from rankers.llm.tokenization import encode_responses

Scores = list[tuple[float, int]]
"""One request's ``(sum of log-probs, number of tokens)`` per candidate."""

Pair = tuple[int, int, list[int], list[int]]
"""(request index, candidate index, context ids, candidate ids + EOS): one sequence to score."""


class LogprobScorer(Protocol):
    """Scores candidate continuations of prompts with one model; may also define ``close()`` to free it.

    ``score(prompts, candidates)[i][j]`` is ``(sum of log-probs, number of tokens)`` of ``candidates[i][j]``
    followed by the tokenizer's EOS, given ``prompts[i]`` (already templated). The candidate's tokens are those
    that follow the prompt's in the joint tokenization (``encode_candidates``, the rule of
    ``rankers.llm.tokenization`` that every trainer uses); the prompt gets the tokenizer's usual special tokens (BOS),
    the candidate none besides the appended EOS.

    A scorer whose requests can fail one at a time (a server) may also define ``score_each``: the same, except
    that a request whose scoring failed after the client's retries gives its ``CallFailed`` in place of its
    scores. The ranker records such a request as a failure and goes on; ``score`` raises it.
    """

    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[Scores]: ...


def check_batch(prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> None:
    """A ``score`` call needs one candidate list per prompt."""
    if len(prompts) != len(candidates):
        raise ValueError(f"{len(prompts)} prompts but {len(candidates)} candidate lists")


def encode_candidates(tokenizer: Any, prompt: str, candidates: Sequence[str]) -> list[tuple[list[int], list[int]]]:
    """[(context ids, candidate ids + EOS)] under the project's one prompt/response rule (``rankers.llm.tokenization``:
    candidates tokenized in context, after the prompt, as every trainer does)."""
    encoded = encode_responses(tokenizer, prompt, candidates)
    if any(not context for context, _ in encoded):
        raise ValueError(f"prompt {prompt!r} tokenizes to nothing; the first candidate token would have no context")
    return encoded


def encode_pairs(tokenizer: Any, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[Pair]:
    """Every (prompt, candidate) sequence of a ``score`` call, request by request; a request without
    candidates has none."""
    check_batch(prompts, candidates)
    pairs: list[Pair] = []
    for i, (prompt, cands) in enumerate(zip(prompts, candidates)):
        if cands:
            pairs.extend((i, j, context, ids) for j, (context, ids) in enumerate(encode_candidates(tokenizer, prompt,
                                                                                                   cands)))
    return pairs


def gather(candidates: Sequence[Sequence[str]], pairs: Sequence[Pair], sums: Sequence[float]) -> list[Scores]:
    """``score``'s answer from each pair's summed log-prob (pairs in any order)."""
    out: list[Scores] = [[(0.0, 0)] * len(c) for c in candidates]
    for (i, j, _, ids), value in zip(pairs, sums, strict=True):
        out[i][j] = (value, len(ids))
    return out
