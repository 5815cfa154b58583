"""Backend ``teacher_logprob``: Tuna_p's probabilistic ranking by the teacher's own likelihood of each candidate.

A candidate's score is its length-normalised log-likelihood under the teacher given the templated prompt,
``s = sum(token log-probs) / length ** lenpen``, where the tokens are the candidate's followed by the EOS token
(the same tokens the Tuna loss scores: responses are trained with EOS appended). ``lenpen=1`` is the mean token
log-prob; ``lenpen=0`` the raw sum, which favours short answers.

When a request already carries ``logprobs`` and ``lengths`` (the sampler that generated the candidates
computed them) they are used as they are and no model is loaded, unless ``use_request_logprobs`` is off (the
sampler was not the teacher). Otherwise an engine scores the candidates; engines are modules
``rankers.logprobs_<engine>`` exposing ``make_scorer(config) -> LogprobScorer``:

- ``hf``: transformers, in process (``rankers.logprobs_hf``);
- ``vllm``: a vLLM engine in process (``rankers.logprobs_vllm``);
- ``openai``: an OpenAI-protocol completions server with ``echo``+``logprobs`` (``rankers.logprobs_openai``).
"""

from __future__ import annotations

import importlib
from typing import Any, Literal, Protocol, Sequence

from pydantic import Field, field_validator

from rankers.base import Ranking, RankRequest, order_from_scores
from rankers.openai_client import ClientSettings
from rankers.registry import RankerConfig, RankerConfigError
from rankers.templates import TEMPLATES, format_prompt


class LogprobScorer(Protocol):
    """Scores candidate continuations of prompts with one model; may also define ``close()`` to free it.

    ``score(prompts, candidates)[i][j]`` is ``(sum of log-probs, number of tokens)`` of ``candidates[i][j]``
    followed by the tokenizer's EOS, given ``prompts[i]`` (already templated). Prompt and candidate are
    tokenized separately and concatenated, so the candidate's token count does not depend on the prompt; the
    prompt gets the tokenizer's usual special tokens (BOS), the candidate none besides the appended EOS.
    """

    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[list[tuple[float, int]]]: ...


class Config(RankerConfig, ClientSettings):
    model: str | None = None
    """The teacher (a local directory, an HF id, or the model name on ``base_url`` for the openai engine)."""
    tokenizer: str | None = None
    """Defaults to ``model``."""
    engine: Literal["hf", "vllm", "openai"] = "hf"
    template: str = "alpaca"
    """The prompt template the candidates were sampled with (``rankers.templates``)."""
    lenpen: float = Field(default=1.0, ge=0.0)
    use_request_logprobs: bool = True
    """Use the sampler's logprobs carried by a request instead of scoring again."""
    batch_size: int = Field(default=8, ge=1)
    """hf: (prompt, candidate) sequences per forward pass."""
    dtype: str = "auto"
    device: str = "auto"
    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    max_model_len: int | None = Field(default=None, ge=1)

    @field_validator("template")
    @classmethod
    def _known_template(cls, value: str) -> str:
        if value not in TEMPLATES:
            raise ValueError(f"unknown prompt template {value!r} (known: {', '.join(TEMPLATES)})")
        return value


def make_engine(config: Config) -> LogprobScorer:
    try:
        module = importlib.import_module(f"rankers.logprobs_{config.engine}")
    except ImportError as err:
        raise RankerConfigError(f"ranker teacher_logprob: engine {config.engine!r} is unavailable: {err}") from None
    return module.make_scorer(config)


class TeacherLogprobRanker:
    """Orders candidates by length-normalised teacher log-likelihood; loads its engine only when needed."""

    name = "teacher_logprob"

    def __init__(self, config: Config, scorer: LogprobScorer | None = None) -> None:
        self.config = config
        self._scorer = scorer
        self.precomputed = 0
        self.scored = 0

    @property
    def scorer(self) -> LogprobScorer:
        if self._scorer is None:
            if self.config.model is None:
                raise RankerConfigError("ranker teacher_logprob: requests carry no logprobs/lengths, so 'model' "
                                        "must name the teacher that scores them")
            self._scorer = make_engine(self.config)
        return self._scorer

    def _carried(self, request: RankRequest) -> list[tuple[float, int]] | None:
        if not self.config.use_request_logprobs or request.logprobs is None or request.lengths is None:
            return None
        n = len(request.candidates)
        if len(request.logprobs) != n or len(request.lengths) != n:
            raise ValueError(f"request {request.id}: {len(request.logprobs)} logprobs and {len(request.lengths)} "
                             f"lengths for {n} candidates")
        return list(zip(request.logprobs, request.lengths))

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        pairs: list[list[tuple[float, int]] | None] = [self._carried(r) for r in requests]
        todo = [i for i, p in enumerate(pairs) if p is None]
        if todo:
            prompts = [format_prompt(requests[i].prompt, requests[i].input, self.config.template) for i in todo]
            for i, scored in zip(todo, self.scorer.score(prompts, [requests[i].candidates for i in todo])):
                pairs[i] = scored
        self.scored += len(todo)
        self.precomputed += len(requests) - len(todo)
        scored = set(todo)
        return [self._ranking(p, source=self.config.engine if i in scored else "request")
                for i, p in enumerate(pairs)]

    def _ranking(self, pairs: list[tuple[float, int]] | None, source: str) -> Ranking:
        assert pairs is not None  # every request was either carried or scored
        scores = [lp / max(n, 1) ** self.config.lenpen for lp, n in pairs]
        return Ranking(order=order_from_scores(scores), scores=scores,
                       metadata={"logprobs": [lp for lp, _ in pairs], "lengths": [n for _, n in pairs],
                                 "source": source})

    @property
    def stats(self) -> dict[str, Any]:
        return {"scored_requests": self.scored, "precomputed_requests": self.precomputed,
                **getattr(self._scorer, "stats", {})}

    def close(self) -> None:
        close = getattr(self._scorer, "close", None)
        if close is not None:
            close()


def build(config: Config) -> TeacherLogprobRanker:
    return TeacherLogprobRanker(config)
