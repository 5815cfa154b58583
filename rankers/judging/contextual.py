"""One contextual judgement (Tuna_c), whatever carries the chat: the conversation a request starts and the
``Ranking`` its exchange becomes.

Both contextual judges (``openai`` over an API, ``vllm`` in process) judge the same way: a request with fewer
than two candidates needs no judge (``unjudged``); otherwise the prompt its ``JudgeSettings`` choose
(``rankers.judging.prompts``) starts a conversation (``judge_conversation``) whose answers are read by
``rankers.judging.parsing`` and re-asked per ``rankers.llm.conversation``; the finished exchange becomes a ranking,
or a failure with the reason (``ranking_from_exchange``). Only how the conversation is sent differs (one HTTP
call at a time, or batched rounds in an engine), under the decoding constraint of
``rankers.judging.constraints`` when ``constrain: rank_line`` asks for it.
"""

from __future__ import annotations

from rankers.base import Ranking, RankRequest
from rankers.judging.parsing import Judgement, parse_ranking
from rankers.judging.prompts import LMOPS_SYSTEM, lmops_prompt, repair_prompt, strict_prompt
from rankers.judging.settings import JudgeSettings
from rankers.llm.conversation import Conversation, Exchange


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
    raw = exchange.raw()
    metadata = {"model": settings.model, **exchange.usage(), **exchange.raw_length()}
    if exchange.value is None:
        return Ranking.failure(exchange.error or "no answer", raw=raw, **metadata)
    order, scores = exchange.value
    # A repaired answer is often the rank line alone; the first answer's scores still hold.
    return Ranking(order=order, scores=scores or settings.scores_parser(exchange.texts[0], n), raw=raw,
                   metadata=metadata)
