"""The contextual-ranking judge prompts (Tuna_c): what the judge is asked, chosen by the judges' key ``prompt``.

- ``lmops`` (the default): microsoft/LMOps ``tuna/src/gpt-eval.py`` word for word, the prompt the paper's
  GPT-4 rankings came from. Its system message; the Alpaca-templated prompt the model was sampled with (LMOps
  judges the formatted prompt, not the raw instruction); the candidates under ``###Response i:`` headers; and
  its instructions, run-on sentences and odd spacing (``[i, j ,k, l, m]``) included. The judge itself decides
  whether the instruction is open- or close-ended (LMOps has no classifier: the prompt gives both sets of
  criteria and asks the judge to pick), writes ``###Response N`` as its own reference, compares it with every
  response, writes ``Response k: [sum]`` per response and ends with ``rank: [...]``. LMOps's text is written
  for N = 4; for other N only the response indices change (``Response 0/1/2``, ``'###Response 3'``), never the
  wording, so the paper's judge sees the paper's text. LMOps read its answers by splitting at the first
  ``rank:``; we read them with the tolerant parser of ``rankers.judging.parsing``, which counts an unreadable
  answer as a failure (after a repair re-ask) instead of training on whatever digits follow.
- ``strict`` (this project's earlier prompt): the same procedure in our wording, with rules LMOps lacks (a wrong
  close-ended answer capped at 1 accuracy point, ties broken by accuracy, a required ``scores:`` line) and an
  optional human reference answer (``show_reference``).

The ``strict`` procedure (our wording): the judge sees all N candidates at once, labelled
``Response 0`` … ``Response N-1``; decides whether the instruction is open- or close-ended; writes its own
answer as ``Response N`` to anchor its judgement; sets duplicated responses aside; scores every response on
three criteria (0-5 each, 0-15 in total); and ends with one line ``rank: [...]`` of response indices, best first.
Seeing the candidates side by side is the point of *contextual* ranking: the judge compares instead of
grading each response in isolation.

Both prompts share the repair re-ask (``repair_prompt``) sent after an unreadable answer.
"""

from __future__ import annotations

from typing import Sequence

from rankers.llm.templates import format_prompt


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


def repair_prompt(error: str, n: int) -> str:
    """The follow-up message after an unreadable answer: what was wrong and the exact format wanted."""
    return (f"I could not read a ranking from your answer: {error}. Do not repeat your reasoning. Reply with "
            f"only the final line 'rank: [...]', listing each distinct response index from 0 to {n} exactly once, "
            f"best first (leave out duplicates of a response you listed).")
