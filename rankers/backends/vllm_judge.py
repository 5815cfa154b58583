"""Backend ``vllm``: the contextual-ranking judge (Tuna_c) on an open model in an in-process vLLM engine.

Same prompt, parser and repair re-asks as the ``openai`` backend (``rankers.judging.contextual``,
``rankers.llm.conversation``), but batched: every request's first question goes to the engine in one
``generate`` call, then one call per repair round holds every request whose answer was still unreadable. With
prefix caching on (the default) the shared instructions of the judge prompt, and a re-asked conversation's
earlier turns, are computed once.

The conversation is rendered with the tokenizer's chat template when it has one, else as its messages joined
by blank lines (a base model judging). A request whose prompt does not fit ``max_model_len`` fails alone
instead of failing the batch. ``constrain: rank_line`` passes its regex to the engine as
``SamplingParams(structured_outputs=StructuredOutputsParams(regex=...))``. As with every judge, an unreadable
answer after ``max_repairs`` re-asks is a ``Ranking.failure`` with the raw answers and the reason: an order is
never invented.
"""

from __future__ import annotations

from typing import Any, Sequence

from rankers.base import Ranking, RankRequest, Tally
from rankers.config import RankerConfig
from rankers.judging.contextual import judge_conversation, ranking_from_exchange, unjudged
from rankers.judging.parsing import Judgement
from rankers.judging.settings import JudgeSettings
from rankers.llm.conversation import Conversation, Messages
from rankers.llm.vllm_engine import EngineSettings, load_llm, shutdown_llm


class Config(JudgeSettings, RankerConfig, EngineSettings):
    model: str
    """The judge: a local directory or an HF id."""


class VLLMJudge:
    """A ``Ranker`` running the contextual judge prompt through a ``vllm.LLM``, batched over requests."""

    name = "vllm"

    def __init__(self, config: Config, llm: Any = None) -> None:
        self.config = config
        self.llm = llm if llm is not None else load_llm(config.model, config, seed=config.seed)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.model_config.max_model_len
        self._counts = Tally("judged", "failed", "repairs", "prompt_tokens", "completion_tokens")

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        skipped = [unjudged(r) for r in requests]
        conversations = {i: judge_conversation(r, self.config) for i, r in enumerate(requests) if skipped[i] is None}
        waiting = dict(conversations)
        while waiting:  # one generate call per round: the first questions, then each round of re-asks
            answers = self._generate([c.messages for c in waiting.values()],
                                     [len(requests[i].candidates) for i in waiting])
            waiting = {i: c for (i, c), answer in zip(waiting.items(), answers) if self._take(c, answer)}
        return [self._ranking(conversations[i], len(r.candidates)) if i in conversations else skipped[i]
                for i, r in enumerate(requests)]

    @staticmethod
    def _take(conversation: Conversation[Judgement], answer: tuple[str, int, int] | str) -> bool:
        """Record one answer (or a per-request error string); True when the request is to be re-asked."""
        if isinstance(answer, str):
            conversation.fail(answer)
            return False
        return conversation.take(*answer)

    def _generate(self, conversations: list[Messages], sizes: list[int]) -> list[tuple[str, int, int] | str]:
        """(answer, prompt tokens, completion tokens) per conversation over ``sizes`` candidates, or the reason it
        was not asked."""
        encoded = [self._encode(messages) for messages in conversations]
        fits = [i for i, ids in enumerate(encoded) if len(ids) < self.max_model_len]
        out: list[tuple[str, int, int] | str] = [
            f"the judge prompt is {len(ids)} tokens, over the engine's max_model_len {self.max_model_len}"
            for ids in encoded]
        if not fits:
            return out
        params = {n: self._params(n) for n in set(sizes)}
        results = self.llm.generate([{"prompt_token_ids": encoded[i]} for i in fits], [params[sizes[i]] for i in fits],
                                    use_tqdm=False)
        for i, result in zip(fits, results):
            completion = result.outputs[0]
            out[i] = (completion.text, len(encoded[i]), len(completion.token_ids))
        return out

    def _params(self, n: int) -> Any:
        """The sampling parameters of an answer over n candidates (``constrain: rank_line``: its regex)."""
        from vllm import SamplingParams

        cfg = self.config
        constraint = {}
        regex = cfg.decoding_regex(n)
        if regex is not None:
            from vllm.sampling_params import StructuredOutputsParams

            constraint["structured_outputs"] = StructuredOutputsParams(regex=regex)
        return SamplingParams(temperature=cfg.temperature, max_tokens=cfg.completion_tokens(n), seed=cfg.seed,
                              **constraint)

    def _encode(self, messages: Messages) -> list[int]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            # The template writes BOS itself where the model wants one; encoding adds no second one.
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return tok(text, add_special_tokens=False)["input_ids"]
        return tok("\n\n".join(m["content"] for m in messages) + "\n\n")["input_ids"]

    def _ranking(self, conversation: Conversation[Judgement], n: int) -> Ranking:
        exchange = conversation.exchange
        ranking = ranking_from_exchange(exchange, n, self.config)
        self._counts.add(**{"failed" if ranking.failed else "judged": 1}, repairs=exchange.repairs,
                         prompt_tokens=exchange.prompt_tokens, completion_tokens=exchange.completion_tokens)
        return ranking

    @property
    def stats(self) -> dict[str, Any]:
        """Judging outcomes and token totals so far."""
        return self._counts.as_dict()

    def close(self) -> None:
        shutdown_llm(self.llm)


def build(config: Config) -> VLLMJudge:
    return VLLMJudge(config)
