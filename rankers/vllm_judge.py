"""Backend ``vllm``: the contextual-ranking judge (Tuna_c) on an open model in an in-process vLLM engine.

Same prompt, parser and repair re-asks as the ``openai`` backend (``rankers.contextual``,
``rankers.openai_client.Exchange``), but batched: every request's first question goes to the engine in one
``generate`` call, then one call per repair round holds every request whose answer was still unreadable. With
prefix caching on (the default) the shared instructions of the judge prompt, and a re-asked conversation's
earlier turns, are computed once.

The conversation is rendered with the tokenizer's chat template when it has one, else as its messages joined
by blank lines (a base model judging). A request whose prompt does not fit ``max_model_len`` fails alone
instead of failing the batch. As with every judge, an unreadable answer after ``max_repairs`` re-asks is a
``Ranking.failure`` with the raw answers and the reason: an order is never invented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from pydantic import Field

from rankers.base import Ranking, RankRequest
from rankers.contextual import build_prompt, parse_ranking, parse_scores, repair_prompt
from rankers.openai_client import Exchange
from rankers.openai_judge import REPAIR_SEPARATOR
from rankers.registry import RankerConfig
from rankers.vllm_engine import EngineSettings, load_llm_from, shutdown_llm

Messages = list[dict[str, str]]


class Config(RankerConfig, EngineSettings):
    model: str
    """The judge: a local directory or an HF id."""
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=2048, ge=1)
    """Completion budget: the judge writes its own answer and a justification per response before ranking."""
    max_repairs: int = Field(default=1, ge=0)
    """Re-asks after an unreadable answer before the request is recorded as failed."""
    show_reference: bool = False
    """Show the request's reference answer (the dataset's output) to the judge."""


@dataclass
class _Judging:
    """One request in flight: its conversation so far and what its answers gave."""

    candidates: list[str]
    messages: Messages
    exchange: Exchange[tuple[list[int], list[float] | None]]


class VLLMJudge:
    """A ``Ranker`` running the contextual judge prompt through a ``vllm.LLM``, batched over requests."""

    name = "vllm"

    def __init__(self, config: Config, llm: Any = None) -> None:
        self.config = config
        self.llm = llm if llm is not None else load_llm_from(config.model, config, seed=config.seed)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.model_config.max_model_len
        self._counts = {"judged": 0, "failed": 0, "repairs": 0, "prompt_tokens": 0, "completion_tokens": 0}

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        cfg = self.config
        active: dict[int, _Judging] = {}
        for i, request in enumerate(requests):
            if len(request.candidates) <= 1:  # nothing to compare; no generation
                continue
            reference = request.reference if cfg.show_reference else None
            prompt = build_prompt(request.prompt, request.candidates, request.input, reference)
            active[i] = _Judging(list(request.candidates), [{"role": "user", "content": prompt}], Exchange())
        judging = dict(active)
        for attempt in range(cfg.max_repairs + 1):
            if not active:
                break
            answers = self._generate([job.messages for job in active.values()])
            still_unreadable: dict[int, _Judging] = {}
            for (i, job), answer in zip(active.items(), answers):
                if self._take(job, answer, can_repair=attempt < cfg.max_repairs):
                    still_unreadable[i] = job
            active = still_unreadable
        return [self._ranking(judging[i]) if i in judging
                else Ranking(order=list(range(len(r.candidates))), metadata={"judged": False})
                for i, r in enumerate(requests)]

    def _take(self, job: _Judging, answer: tuple[str, int, int] | str, can_repair: bool) -> bool:
        """Record one answer (or a per-request error string); True when the request is to be re-asked."""
        exchange = job.exchange
        if isinstance(answer, str):
            exchange.error = answer
            return False
        text, prompt_tokens, completion_tokens = answer
        exchange.texts.append(text)
        exchange.prompt_tokens += prompt_tokens
        exchange.completion_tokens += completion_tokens
        try:
            exchange.value = parse_ranking(text, len(job.candidates), job.candidates)
            return False
        except ValueError as err:
            exchange.error = str(err)
        if can_repair:
            exchange.repairs += 1
            job.messages = [*job.messages, {"role": "assistant", "content": text},
                            {"role": "user", "content": repair_prompt(exchange.error, len(job.candidates))}]
            return True
        exchange.error = f"no readable answer after {len(exchange.texts)} answer(s): {exchange.error}"
        return False

    def _generate(self, conversations: list[Messages]) -> list[tuple[str, int, int] | str]:
        """(answer, prompt tokens, completion tokens) per conversation, or the reason it was not asked."""
        from vllm import SamplingParams

        cfg = self.config
        encoded = [self._encode(messages) for messages in conversations]
        fits = [i for i, ids in enumerate(encoded) if len(ids) < self.max_model_len]
        out: list[tuple[str, int, int] | str] = [
            f"the judge prompt is {len(ids)} tokens, over the engine's max_model_len {self.max_model_len}"
            for ids in encoded]
        if not fits:
            return out
        params = SamplingParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=cfg.seed)
        results = self.llm.generate([{"prompt_token_ids": encoded[i]} for i in fits], params, use_tqdm=False)
        for i, result in zip(fits, results):
            completion = result.outputs[0]
            out[i] = (completion.text, len(encoded[i]), len(completion.token_ids))
        return out

    def _encode(self, messages: Messages) -> list[int]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            # The template writes BOS itself where the model wants one; encoding adds no second one.
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return tok(text, add_special_tokens=False)["input_ids"]
        return tok("\n\n".join(m["content"] for m in messages) + "\n\n")["input_ids"]

    def _ranking(self, job: _Judging) -> Ranking:
        exchange = job.exchange
        raw = REPAIR_SEPARATOR.join(exchange.texts) or None
        metadata = {"model": self.config.model, **exchange.usage()}
        self._counts["prompt_tokens"] += exchange.prompt_tokens
        self._counts["completion_tokens"] += exchange.completion_tokens
        self._counts["repairs"] += exchange.repairs
        if exchange.value is None:
            self._counts["failed"] += 1
            return Ranking.failure(exchange.error or "no answer", raw=raw, **metadata)
        self._counts["judged"] += 1
        order, scores = exchange.value
        # A repaired answer is often the rank line alone; the first answer's scores line still holds.
        return Ranking(order=order, scores=scores or parse_scores(exchange.texts[0], len(job.candidates)),
                       raw=raw, metadata=metadata)

    @property
    def stats(self) -> dict[str, Any]:
        """Judging outcomes and token totals so far."""
        return dict(self._counts)

    def close(self) -> None:
        shutdown_llm(self.llm)


def build(config: Config) -> VLLMJudge:
    return VLLMJudge(config)
