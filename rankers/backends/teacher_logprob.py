"""Backend ``teacher_logprob``: Tuna_p's probabilistic ranking by the teacher's own likelihood of each candidate.

A candidate's score is its length-normalised log-likelihood under the teacher given the templated prompt,
``s = sum(token log-probs) / length ** lenpen``, where the tokens are the candidate's followed by the EOS token
(the same tokens the Tuna loss scores: responses are trained with EOS appended). ``lenpen=1`` is the mean token
log-prob; ``lenpen=0`` the raw sum, which favours short answers.

When a request already carries ``logprobs`` and ``lengths`` (the sampler that generated the candidates
computed them) they are used as they are and no model is loaded, unless ``use_request_logprobs`` is off (the
sampler was not the teacher). That is the paper's quantity (LMOps's Tuna_p data ranks by ``avg_token_prob``,
text-davinci-003's own log-probs of the tokens it sampled), and not always the one scoring gives: a sample cut at
``max_new_tokens`` carries no EOS term, while scoring appends EOS to its text (``use_request_logprobs``).
Otherwise an engine scores the candidates; each engine is a module of
``rankers.logprob`` exposing ``make_scorer(config) -> LogprobScorer``, registered in ``ENGINES`` and imported
only when chosen:

- ``hf``: transformers, in process (``rankers.logprob.hf_scorer``);
- ``vllm``: a vLLM engine in process (``rankers.logprob.vllm_scorer``);
- ``openai``: an OpenAI-protocol completions server with ``echo``+``logprobs`` (``rankers.logprob.openai_scorer``).

Every engine that tokenizes does it through ``rankers.logprob.encoding`` (``encode_candidates``, ``encode_pairs``),
so all of them score the same tokens. A request whose scoring fails on its own (its call still fails after the
client's retries: 5xx, timeouts, or an error answer to that one request) becomes a ``Ranking.failure`` with the
reason and is counted in ``stats``; the other requests are ranked as usual and an order is never invented. A
configuration error (``RankerConfigError``, or the client's ``EngineError``: a rejected key, an unknown model)
still stops the run.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

from pydantic import Field

from rankers.base import Ranking, RankRequest, close_if_closable, order_from_scores
from rankers.config import RankerConfig, RankerConfigError
from rankers.llm.client_settings import ClientSettings
from rankers.llm.openai_client import CallFailed
from rankers.llm.templates import TemplateName, request_prompt
from rankers.llm.vllm_engine import EngineSettings
from rankers.logprob.encoding import LogprobScorer, Scores


class Config(RankerConfig, ClientSettings, EngineSettings):
    """Engine keys: ``ClientSettings`` for the openai engine, ``EngineSettings`` for vllm (``tokenizer`` and
    ``dtype`` also for hf)."""

    model: str | None = None
    """The teacher (a local directory, an HF id, or the model name on ``base_url`` for the openai engine)."""
    engine: Literal["hf", "vllm", "openai"] = "hf"
    template: TemplateName = "alpaca"
    """The prompt template the candidates were sampled with (``rankers.llm.templates``)."""
    lenpen: float = Field(default=1.0, ge=0.0)
    use_request_logprobs: bool = True
    """Use the sampler's logprobs carried by a request instead of scoring again. For a sample that ended with EOS
    both are the same tokens (equal to float rounding in fp32); a sample cut at ``max_new_tokens`` is scored by the
    sampler without EOS and by scoring with an EOS it never produced, so with many cut samples the two rank
    differently (SmolLM2, 32 new tokens: 37 of 64 samples cut, the same order for 6 of 16 prompts;
    ``benchmarks/sampling.py``'s ``vs_hf_fp32``)."""
    batch_size: int = Field(default=8, ge=1)
    """hf: (prompt, candidate) sequences per forward pass; with ``shared_prefix`` a request's candidates stay in one
    (a request with more candidates gets a forward to itself)."""
    shared_prefix: bool = True
    """hf: run each prompt once for all its candidates (``rankers.logprob.hf_scorer``; the same scores up to float
    rounding). ``false`` feeds every candidate with its whole prompt: the path for a model whose key/value cache
    cannot be expanded and reused, which is also taken, with one warning, when the shared forward fails."""
    device: str = "auto"


MakeScorer = Callable[[Config], LogprobScorer]


def _hf() -> MakeScorer:
    from rankers.logprob.hf_scorer import make_scorer

    return make_scorer


def _vllm() -> MakeScorer:
    from rankers.logprob.vllm_scorer import make_scorer

    return make_scorer


def _openai() -> MakeScorer:
    from rankers.logprob.openai_scorer import make_scorer

    return make_scorer


ENGINES: dict[str, Callable[[], MakeScorer]] = {"hf": _hf, "vllm": _vllm, "openai": _openai}
"""``engine`` -> the loader of its ``make_scorer`` (one per ``Config.engine`` value)."""


def make_engine(config: Config) -> LogprobScorer:
    """The scorer of ``config.engine``; an engine whose module cannot be imported is a one-line config error."""
    try:
        make_scorer = ENGINES[config.engine]()
    except ImportError as err:
        raise RankerConfigError(f"ranker teacher_logprob: engine {config.engine!r} is unavailable: {err}") from None
    return make_scorer(config)


class TeacherLogprobRanker:
    """Orders candidates by length-normalised teacher log-likelihood; loads its engine only when needed."""

    name = "teacher_logprob"

    def __init__(self, config: Config, scorer: LogprobScorer | None = None) -> None:
        self.config = config
        self._scorer = scorer
        self.precomputed = 0
        self.scored = 0
        self.failed = 0
        self._chat_tokenizer: Any = None

    @property
    def scorer(self) -> LogprobScorer:
        if self._scorer is None:
            if self.config.model is None:
                raise RankerConfigError("ranker teacher_logprob: requests carry no logprobs/lengths, so 'model' "
                                        "must name the teacher that scores them")
            self._scorer = make_engine(self.config)
        return self._scorer

    @property
    def chat_tokenizer(self) -> Any:
        """The teacher's tokenizer, whose chat template renders ``template: chat`` prompts (loaded once)."""
        if self._chat_tokenizer is None:
            from rankers.llm.hf import load_tokenizer

            self._chat_tokenizer = getattr(self.scorer, "tokenizer", None) or \
                load_tokenizer(self.config.tokenizer or self.config.model)
        return self._chat_tokenizer

    def _carried(self, request: RankRequest) -> Scores | None:
        if not self.config.use_request_logprobs or request.logprobs is None or request.lengths is None:
            return None
        n = len(request.candidates)
        if len(request.logprobs) != n or len(request.lengths) != n:
            raise ValueError(f"request {request.id}: {len(request.logprobs)} logprobs and {len(request.lengths)} "
                             f"lengths for {n} candidates")
        return list(zip(request.logprobs, request.lengths))

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        pairs: list[Scores | CallFailed | None] = [self._carried(r) for r in requests]
        todo = [i for i, p in enumerate(pairs) if p is None]
        if todo:
            tokenizer = self.chat_tokenizer if self.config.template == "chat" else None
            prompts = [request_prompt(requests[i], self.config.template, self.name, tokenizer) for i in todo]
            for i, scored in zip(todo, self._score(prompts, [requests[i].candidates for i in todo])):
                pairs[i] = scored
        failed = sum(isinstance(pairs[i], CallFailed) for i in todo)
        self.scored += len(todo) - failed
        self.failed += failed
        self.precomputed += len(requests) - len(todo)
        scored = set(todo)
        return [self._ranking(p, source=self.config.engine if i in scored else "request")
                for i, p in enumerate(pairs)]

    def _score(self, prompts: list[str], candidates: list[list[str]]) -> list[Scores | CallFailed]:
        """The engine's scores per request; an engine with ``score_each`` gives a failed request's error instead."""
        scorer = self.scorer
        return getattr(scorer, "score_each", scorer.score)(prompts, candidates)

    def _ranking(self, pairs: Scores | CallFailed | None, source: str) -> Ranking:
        assert pairs is not None  # every request was either carried or scored
        if isinstance(pairs, CallFailed):
            return Ranking.failure(f"call failed: {pairs}", source=source)
        scores = [lp / max(n, 1) ** self.config.lenpen for lp, n in pairs]
        return Ranking(order=order_from_scores(scores), scores=scores,
                       metadata={"logprobs": [lp for lp, _ in pairs], "lengths": [n for _, n in pairs],
                                 "source": source})

    @property
    def stats(self) -> dict[str, Any]:
        return {"scored_requests": self.scored, "precomputed_requests": self.precomputed,
                "failed_requests": self.failed, **getattr(self._scorer, "stats", {})}

    def close(self) -> None:
        close_if_closable(self._scorer)


def build(config: Config) -> TeacherLogprobRanker:
    return TeacherLogprobRanker(config)
