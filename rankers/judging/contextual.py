"""The contextual-ranking judge prompts (Tuna_c) and the parsers of their verdicts.

Two prompts, chosen by the judges' key ``prompt``:

- ``lmops`` (the default): microsoft/LMOps ``tuna/src/gpt-eval.py`` word for word, the prompt the paper's
  GPT-4 rankings came from. Its system message; the Alpaca-templated prompt the model was sampled with (LMOps
  judges the formatted prompt, not the raw instruction); the candidates under ``###Response i:`` headers; and
  its instructions, run-on sentences and odd spacing (``[i, j ,k, l, m]``) included. The judge itself decides
  whether the instruction is open- or close-ended (LMOps has no classifier: the prompt gives both sets of
  criteria and asks the judge to pick), writes ``###Response N`` as its own reference, compares it with every
  response, writes ``Response k: [sum]`` per response and ends with ``rank: [...]``. LMOps's text is written
  for N = 4; for other N only the response indices change (``Response 0/1/2``, ``'###Response 3'``), never the
  wording, so the paper's judge sees the paper's text. LMOps read its answers by splitting at the first
  ``rank:``; we read them with the tolerant parser below, which counts an unreadable answer as a failure (after
  a repair re-ask) instead of training on whatever digits follow.
- ``strict`` (this project's earlier prompt): the same procedure in our wording, with rules LMOps lacks (a wrong
  close-ended answer capped at 1 accuracy point, ties broken by accuracy, a required ``scores:`` line) and an
  optional human reference answer (``show_reference``).

The ``strict`` procedure (our wording): the judge sees all N candidates at once, labelled
``Response 0`` … ``Response N-1``; decides whether the instruction is open- or close-ended; writes its own
answer as ``Response N`` to anchor its judgement; sets duplicated responses aside; scores every response on
three criteria (0-5 each, 0-15 in total); and ends with one line ``rank: [...]`` of response indices, best first.
Seeing the candidates side by side is the point of *contextual* ranking: the judge compares instead of
grading each response in isolation.

The parser is strict where a mistake would corrupt training data (an index out of range or repeated, a
candidate silently missing) and lenient about formatting (``Rank:``, ``**Ranking:**``, brackets or not, ``>``
separators, ``Response 2`` items, trailing punctuation). The judge's own answer (index N) is dropped from the
returned order. A candidate the judge left out is accepted only when it duplicates a ranked candidate (same
text up to case and whitespace): it is placed right after its twin. Anything else raises ``ParseError``, whose
message goes into the repair prompt so the judge can fix its answer.

Both contextual judges (``openai`` over an API, ``vllm`` in process) share the rest here too: their judging
keys (``JudgeSettings``), the conversation a request starts (``judge_conversation``, re-asked per
``rankers.judging.repair``), the decoding constraint of ``constrain: rank_line`` (``rank_line_regex``,
``completion_budget``) and the ``Ranking`` its exchange becomes (``ranking_from_exchange``).

``constrain: rank_line`` is for judges too weak to follow the procedure to its last line (a 135M model loops and
never writes ``rank:``): the same prompt is sent, but decoding is constrained by a regex (vLLM structured
outputs) so that the whole answer is one line ``rank: [i, j, ...]`` whose indices are a permutation of the
candidates'. The judge then writes no analysis, no reference answer of its own and no scores: its rankings carry
no scores, and it is no longer the paper's protocol, only its prompt.
"""

from __future__ import annotations

import re
from itertools import permutations
from typing import Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rankers.base import Ranking, RankRequest
from rankers.judging.repair import Conversation, Exchange
from rankers.llm.templates import format_prompt

Judgement = tuple[list[int], list[float] | None]
"""What ``parse_ranking`` reads from an answer: the order of all candidates and their scores, if given."""

REPAIR_SEPARATOR = "\n\n--- repair ---\n\n"
"""Joins a judge's answers in ``Ranking.raw`` when a repair was needed, so the audit trail keeps them all."""

# The last "rank:" line wins: judges sometimes restate a draft ranking before the final one.
_RANK_LINE = re.compile(
    r"(?im)(?<![\w])(?:final\s+)?rank(?:ing)?s?\s*(?:\*\*|__)?\s*[:=]\s*(?:\*\*|__)?[ \t]*(?P<value>[^\n]*)$"
)
_SCORES_LINE = re.compile(r"(?im)^[\W_]*scores?\s*(?:\*\*|__)?\s*[:=]\s*(?:\*\*|__)?[ \t]*(?P<value>[^\n]*)$")
_ITEM = re.compile(r"^(?:response|resp\.?|#)?\s*(\d+)$", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# LMOps's rating lines, "Response k: [sum of the 3 individual scores you give to response k]" (bracketed or not).
_RESPONSE_SCORE_LINE = re.compile(r"(?im)^[\W_]*response\s*(?P<index>\d+)\s*(?:\*\*|__)?\s*:\s*(?P<value>[^\n]*)$")
_SUM = re.compile(r"\d+(?:\.\d+)?(?:\s*\+\s*\d+(?:\.\d+)?)+")


class ParseError(ValueError):
    """The judge's answer holds no usable ranking; the message says what is wrong, in words the judge can act on."""


def strict_prompt(instruction: str, candidates: Sequence[str], input: str = "", reference: str | None = None) -> str:
    """The judge's user message for one request."""
    n = len(candidates)
    task = instruction if not input else f"{instruction}\n\n{input}"
    blocks = "\n\n".join(f"### Response {i}\n{c}" for i, c in enumerate(candidates))
    reference_block = (f"\n\nA reference answer written by a person is given below; it may help you judge "
                       f"correctness, but it is not necessarily perfect.\n\n### Reference answer\n{reference}"
                       if reference is not None else "")
    return f"""You are a careful, impartial judge of AI assistants. Compare the {n} responses below to the \
instruction and rank them from best to worst.

### Instruction
{task}

{blocks}{reference_block}

Work through these steps:
1. Decide whether the instruction is close-ended (there is one correct answer, e.g. arithmetic, facts, \
extraction, classification) or open-ended (many good answers, e.g. writing, advice, brainstorming). Say which.
2. Write your own best answer to the instruction and call it Response {n}.
3. Note any responses that are duplicates of each other (the same text). Judge only the first of each group; \
leave the others out of the ranking.
4. Score each response, including your own Response {n}, on three criteria, 0 to 5 points each:
   - helpfulness and relevance: does it address what was asked?
   - accuracy: is it correct? For a close-ended instruction, a wrong final answer gets at most 1 point here and \
should rank below every correct response.
   - level of detail: is it as complete and specific as the instruction needs, without padding?
   Give a short justification and the total (0-15) for each response.
5. Rank the responses from best to worst by total score; break ties by accuracy.

Finish with exactly two lines in this format, using response indices only:
scores: [total of Response 0, total of Response 1, ..., total of Response {n}]
rank: [index of the best response, ..., index of the worst response]"""


LMOPS_SYSTEM = "You are a professional and experienced data annotator."
"""The system message of LMOps ``gpt_eval``."""


def lmops_prompt(instruction: str, candidates: Sequence[str], input: str = "") -> str:
    """The user message of LMOps ``gpt-eval.py`` for one request, indices adapted to ``len(candidates)``.

    The instruction is rendered with LMOps's ``PROMPT_DICT`` (``train.py``), which is ours without the newline
    after ``### Response:``.
    """
    n = len(candidates)
    instruct = format_prompt(instruction, input, "alpaca").removesuffix("\n")
    shown = "/".join(map(str, range(n)))
    response_str = [f"###Response {j}:\n{r}\n" for j, r in enumerate(candidates)]
    return (
        instruct + "\n\n" + "\n".join(response_str)
        + f"\n\nWe would like you to rate Response {shown} in reply to the given instruction displayed above.\n"
        "First, identify if the instruction requires open-ended or close-ended responses."
        f"Second, you need to generate one high quality '###Response {n}' in answer to the instruction. It needs to "
        "have the same format as other responses and will be used as a reference later.\n"
        "Third, identify if there are duplicate responses and keep only one of the duplicate responses for the "
        "following steps."
        f"Fourth, compare Response {n} with Response {shown}/{n} and assign each response an overall score on a "
        "scale of 0 to 15 where a higher score indicates better overall quality. For an open-ended instruction, "
        "please rate based on the relevance (score 0 to 5), level of details/justification: (score 0 to 5) and "
        "accuracy (score 0 to 5) of each response; for a close-ended instruction, please rate based on the "
        "accuracy (score 0 to 5), level of details/justification (score 0 to 5) and clarity (score 0 to 5) of "
        "each response. The ratings should have the format: 'Response k: [sum of the 3 individual scores you give "
        "to response k]'.\n"
        "Last, rank the responses in decreasing order of their overall scores. The ranking should have the format: "
        "'rank: [i, j ,k, l, m]'. If there are duplicate responses, keep only one of them in the rank, that is, the "
        "ranking may become: 'rank: [i, j, k, l]', 'rank: [i, j, k]' 'rank: [i, j]' or even 'rank: [i]'.\n"
    )


def _rating(value: str) -> float | None:
    """The total in a rating such as ``[12]``, ``12/15``, ``4 + 4 + 4 = 12``, ``[4+4+4]`` or ``relevance 4,
    details 4, accuracy 4, total 12``; None if absent. The bracketed part, as LMOps asks for, wins."""
    value = re.sub(r"(?:/|\bout\s+of)\s*15\b", "", value)
    brackets = re.findall(r"\[([^\]]*\d[^\]]*)\]", value)
    total = re.search(r"(?i)\btotal\b[^\d]*(\d+(?:\.\d+)?)", value)
    if brackets:
        value = brackets[-1]
    elif total:
        return float(total.group(1))
    if "=" in value:
        value = value.rsplit("=", 1)[1]
    total = _SUM.search(value)
    if total and not _NUMBER.search(value[:total.start()]):
        return sum(float(x) for x in _NUMBER.findall(total.group()))
    numbers = _NUMBER.findall(value)
    return float(numbers[0]) if numbers else None


def parse_lmops_scores(text: str, n: int) -> list[float] | None:
    """Per-candidate totals from LMOps's ``Response k: [sum]`` lines (the last rating of each index wins, so
    the judge's own ``###Response n:`` answer written earlier is overridden); None unless all n are rated."""
    ratings: dict[int, float] = {}
    for match in _RESPONSE_SCORE_LINE.finditer(text):
        rating = _rating(match.group("value"))
        if rating is not None:
            ratings[int(match.group("index"))] = rating
    return [ratings[k] for k in range(n)] if all(k in ratings for k in range(n)) else None


def repair_prompt(error: str, n: int) -> str:
    """The follow-up message after an unreadable answer: what was wrong and the exact format wanted."""
    return (f"I could not read a ranking from your answer: {error}. Do not repeat your reasoning. Reply with "
            f"only the final line 'rank: [...]', listing each distinct response index from 0 to {n} exactly once, "
            f"best first (leave out duplicates of a response you listed).")


def normalise(text: str) -> str:
    """What makes two candidates duplicates: equal up to case and whitespace."""
    return " ".join(text.casefold().split())


def _items(value: str) -> list[str]:
    value = value.strip().strip("*_` ")
    if "[" in value:
        start = value.index("[")
        end = value.find("]", start)
        if end < 0:
            raise ParseError(f"the rank list {value!r} has no closing bracket")
        value = value[start + 1:end]
    value = value.rstrip(".;:!").strip()
    items = []
    for token in re.split(r"[,;>]|\bthen\b", value):
        token = token.strip().strip("*_`'\"()").strip()
        items.extend(token.split() if re.fullmatch(r"\d+(?:\s+\d+)+", token) else [token] if token else [])
    return items


def parse_rank_line(text: str) -> list[int]:
    """The indices of the last ``rank:`` line, as the judge wrote them."""
    matches = list(_RANK_LINE.finditer(text))
    if not matches:
        raise ParseError("no 'rank: [...]' line was found")
    value = matches[-1].group("value")
    items = _items(value)
    if not items:
        raise ParseError("the 'rank:' line is empty")
    out = []
    for item in items:
        match = _ITEM.match(item)
        if not match:
            raise ParseError(f"{item!r} in the rank line is not a response index")
        out.append(int(match.group(1)))
    return out


def parse_scores(text: str, n: int) -> list[float] | None:
    """Per-candidate totals from the last ``scores:`` line, when it lists n or n+1 numbers; else None."""
    matches = list(_SCORES_LINE.finditer(text))
    if not matches:
        return None
    numbers = [float(x) for x in _NUMBER.findall(matches[-1].group("value"))]
    return numbers[:n] if len(numbers) in (n, n + 1) else None


def complete_order(ranked: Sequence[int], candidates: Sequence[str]) -> list[int]:
    """Check the judge's indices (the judge's own answer, index n, allowed) and return the full candidate order.

    Omitted candidates must be duplicates of a ranked one; each goes right after its twin (and after any
    earlier-indexed duplicates of that twin).
    """
    n = len(candidates)
    seen: set[int] = set()
    for i in ranked:
        if i > n:
            raise ParseError(f"index {i} is out of range (responses are numbered 0 to {n})")
        if i in seen:
            raise ParseError(f"index {i} appears more than once")
        seen.add(i)
    order = [i for i in ranked if i != n]
    missing = [i for i in range(n) if i not in seen]
    key = [normalise(c) for c in candidates]
    for m in missing:
        twins = [pos for pos, i in enumerate(order) if key[i] == key[m]]
        if not twins:
            raise ParseError(f"Response {m} is missing from the ranking and duplicates no ranked response")
        order.insert(twins[-1] + 1, m)
    return order


ScoresParser = Callable[[str, int], list[float] | None]


def parse_ranking(text: str, n: int, candidates: Sequence[str] | None = None,
                  scores: ScoresParser = parse_scores) -> Judgement:
    """(order of all n candidates best first, per-candidate scores or None) from a judge's answer.

    ``candidates`` (their texts) are needed to accept omitted duplicates; without them every candidate must be
    ranked. ``scores`` reads the prompt's score format (``parse_scores`` for ``strict``,
    ``parse_lmops_scores`` for ``lmops``); both prompts share the ``rank: [...]`` line.
    """
    if candidates is not None and len(candidates) != n:
        raise ValueError(f"n={n} but {len(candidates)} candidates given")
    texts = list(candidates) if candidates is not None else [f"\0{i}" for i in range(n)]  # all distinct
    order = complete_order(parse_rank_line(text), texts)
    return order, scores(text, n)


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


class JudgeSettings(BaseModel):
    """Judging keys of the contextual judges, mixed in first (``Config(JudgeSettings, RankerConfig, ...)``)
    so that ``model`` and these keys follow the common ones, as a backend's own keys do."""

    model_config = ConfigDict(extra="forbid")

    model: str
    """The judge (each backend says how it is named)."""
    prompt: Literal["lmops", "strict"] = "lmops"
    """``lmops``: LMOps ``gpt-eval.py`` word for word (the paper's judge prompt); ``strict``: this project's
    stricter wording (see the module docstring)."""
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=2048, ge=1)
    """Completion budget: the judge writes its own answer and a justification per response before ranking."""
    max_repairs: int = Field(default=1, ge=0)
    """Re-asks after an unreadable answer before the request is recorded as failed."""
    show_reference: bool = False
    """Show the request's reference answer (the dataset's output) to the judge (``prompt: strict`` only: LMOps's
    judge writes its own reference)."""
    constrain: Literal["none", "rank_line"] = "none"
    """``none``: the judge writes freely (the paper's protocol: analysis, scores, then the rank line).
    ``rank_line``: decoding is constrained (vLLM structured outputs, ``rank_line_regex``) so that the answer is
    only the line ``rank: [...]``, a permutation of the candidate indices, within ``rank_line_tokens`` tokens (or
    ``max_tokens`` if smaller). The prompt is unchanged, but the judge cannot reason before it ranks, and its
    rankings have no scores. For weak open judges that never reach the rank line on their own. Needs vLLM (the
    ``vllm`` backend, or an ``openai`` backend pointed at a vLLM server, which takes the regex in the request's
    ``structured_outputs`` field)."""

    @model_validator(mode="after")
    def _reference_needs_strict(self) -> "JudgeSettings":
        if self.show_reference and self.prompt != "strict":
            raise ValueError("show_reference needs prompt: strict (the lmops prompt has no place for a reference)")
        return self

    @property
    def scores_parser(self) -> ScoresParser:
        return parse_lmops_scores if self.prompt == "lmops" else parse_scores

    def decoding_regex(self, n: int) -> str | None:
        """The regex the answer over n candidates is constrained to, or None when decoding is free."""
        return rank_line_regex(n) if self.constrain == "rank_line" else None

    def completion_tokens(self, n: int) -> int:
        """The completion budget of one answer over n candidates."""
        return min(self.max_tokens, rank_line_tokens(n)) if self.constrain == "rank_line" else self.max_tokens


def unjudged(request: RankRequest) -> Ranking | None:
    """The ranking of a request with nothing to compare (one candidate or none), which needs no judge; else None."""
    n = len(request.candidates)
    return Ranking(order=list(range(n)), metadata={"judged": False}) if n <= 1 else None


def judge_conversation(request: RankRequest, settings: JudgeSettings) -> Conversation[Judgement]:
    """The judge prompt for ``request`` as a conversation that re-asks with ``repair_prompt``."""
    n = len(request.candidates)
    if settings.prompt == "lmops":
        messages = [{"role": "system", "content": LMOPS_SYSTEM},
                    {"role": "user", "content": lmops_prompt(request.prompt, request.candidates, request.input)}]
    else:
        reference = request.reference if settings.show_reference else None
        messages = [{"role": "user",
                     "content": strict_prompt(request.prompt, request.candidates, request.input, reference)}]
    return Conversation(messages, parse=lambda text: parse_ranking(text, n, request.candidates, settings.scores_parser),
                        repair=lambda error: repair_prompt(error, n), max_repairs=settings.max_repairs)


def ranking_from_exchange(exchange: Exchange[Judgement], n: int, settings: JudgeSettings) -> Ranking:
    """The ``Ranking`` of a finished exchange over n candidates: every answer in ``raw``, its usage and the
    judge's ``model`` in ``metadata``; a ``Ranking.failure`` with the reason when no answer was readable."""
    raw = REPAIR_SEPARATOR.join(exchange.texts) or None
    metadata = {"model": settings.model, **exchange.usage()}
    if exchange.value is None:
        return Ranking.failure(exchange.error or "no answer", raw=raw, **metadata)
    order, scores = exchange.value
    # A repaired answer is often the rank line alone; the first answer's scores still hold.
    return Ranking(order=order, scores=scores or settings.scores_parser(exchange.texts[0], n), raw=raw,
                   metadata=metadata)
