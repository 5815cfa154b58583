"""The OpenAI-protocol engine of ``teacher_logprob``: candidate log-likelihoods from a completions server's echo.

A completions request with ``echo=True, logprobs=1, max_tokens=0`` returns the log-probability of every token
of the prompt it was sent, each given the tokens before it, so sending ``prompt + candidate`` and summing the
candidate's part scores the candidate under the served model. One request per ranking request carries all its
candidates (a list of prompts), ``max_concurrency`` requests in flight, with the shared client's retries and
usage accounting (``rankers.llm.openai_client``).

Two ways to find the candidate's part:

- **token ids** (when a tokenizer is at hand: ``tokenizer``, or ``model`` naming a local directory, as for a
  vLLM server started with ``--model DIR``): prompt and candidate are tokenized exactly as the other engines do
  (``rankers.logprob.encoding.encode_candidates``, the rule of ``rankers.llm.tokenization``), EOS appended,
  and sent as token ids; the candidate is the last ``len(candidate) + 1`` tokens. Same numbers as the ``hf`` engine,
  up to kernel round-off.
- **text offsets** (no tokenizer, e.g. a hosted model): ``prompt + candidate`` is sent as text and the tokens
  whose ``text_offset`` falls inside the candidate are summed. No EOS is scored (its text is unknown), and a
  token the server's tokenizer merged across the prompt/candidate boundary counts as the prompt's.

A vLLM server must run with ``--no-enable-prefix-caching`` for these numbers: with prefix caching, echoed prompt
log-probs of cached positions are stale (vllm-project/vllm#42019; on CPU they come back NaN, which the server
cannot even encode as JSON).

A request whose call still fails after the client's retries is reported per request by ``score_each`` (the
``teacher_logprob`` ranker records it as a failure and goes on); ``score`` raises its ``CallFailed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from rankers.llm.openai_client import CallFailed, OpenAIClient
from rankers.logprob.encoding import Scores, check_batch, encode_candidates

if TYPE_CHECKING:
    from rankers.backends.teacher_logprob import Config


def _choices_in_order(response: Any, expected: int) -> list[Any]:
    choices = sorted(response.choices, key=lambda c: c.index)
    if len(choices) != expected:
        raise ValueError(f"the server answered {len(choices)} choices for {expected} prompts")
    for choice in choices:
        if choice.logprobs is None or not choice.logprobs.token_logprobs:
            raise ValueError("the server returned no echoed logprobs (it must support completions with echo=True "
                             "and logprobs)")
    return choices


def _sum(logprobs: Sequence[float | None]) -> float:
    if any(lp is None for lp in logprobs):
        raise ValueError("the server returned no logprob for a candidate token")
    return float(sum(logprobs))  # type: ignore[arg-type]


class OpenAILogprobScorer:
    """A ``LogprobScorer`` over an OpenAI-protocol completions endpoint (see the module docstring)."""

    def __init__(self, client: OpenAIClient, model: str, tokenizer: Any | None = None) -> None:
        self.client = client
        self.model = model
        self.tokenizer = tokenizer

    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[Scores]:
        results = self.score_each(prompts, candidates)
        for result in results:
            if isinstance(result, CallFailed):
                raise result
        return results  # type: ignore[return-value]  # no CallFailed left

    def score_each(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[Scores | CallFailed]:
        """``score``, but a request whose call failed after the client's retries gives its ``CallFailed``."""
        check_batch(prompts, candidates)
        work = self._by_ids if self.tokenizer is not None else self._by_text

        def one(prompt: str, cands: Sequence[str]) -> Scores | CallFailed:
            try:
                return work(prompt, cands) if cands else []
            except CallFailed as err:
                return err

        return self.client.map(lambda job: one(*job), list(zip(prompts, candidates)))

    def _echo(self, prompt: Any, read: Callable[[Any], Scores]) -> Scores:
        """The scores ``read`` from the echo of ``prompt``, read inside the call: a reply not shaped as asked (no
        choices, no log-probs) is then the call's ``CallFailed``, not a crash."""
        scores, _ = self.client.call(lambda sdk: sdk.completions.create(
            model=self.model, prompt=prompt, echo=True, logprobs=1, max_tokens=0), read)
        return scores

    def _by_ids(self, prompt: str, candidates: Sequence[str]) -> Scores:
        encoded = encode_candidates(self.tokenizer, prompt, candidates)

        def read(response: Any) -> Scores:
            out = []
            for choice, (context, ids) in zip(_choices_in_order(response, len(candidates)), encoded):
                logprobs = choice.logprobs.token_logprobs
                start = len(context)
                if len(logprobs) < start + len(ids):
                    raise ValueError(f"the server echoed {len(logprobs)} tokens for a {start + len(ids)}-token "
                                     f"prompt")
                out.append((_sum(logprobs[start:start + len(ids)]), len(ids)))
            return out

        return self._echo([context + ids for context, ids in encoded], read)

    def _by_text(self, prompt: str, candidates: Sequence[str]) -> Scores:
        start = len(prompt)

        def read(response: Any) -> Scores:
            out = []
            for choice, candidate in zip(_choices_in_order(response, len(candidates)), candidates):
                end = start + len(candidate)
                logprobs = choice.logprobs
                span = [lp for lp, offset in zip(logprobs.token_logprobs, logprobs.text_offset)
                        if start <= offset < end]
                out.append((_sum(span), len(span)))
            return out

        return self._echo([prompt + c for c in candidates], read)

    @property
    def stats(self) -> dict[str, Any]:
        return self.client.meter.as_dict()

    def close(self) -> None:
        self.client.close()


def local_tokenizer_path(config: "Config") -> str | None:
    """The tokenizer to encode with: ``tokenizer`` if set, else ``model`` when it is a local directory."""
    if config.tokenizer is not None:
        return config.tokenizer
    return config.model if config.model is not None and Path(config.model).is_dir() else None


def make_scorer(config: "Config") -> OpenAILogprobScorer:
    from rankers.llm.hf import load_tokenizer

    assert config.model is not None  # the ranker checks before asking for an engine
    path = local_tokenizer_path(config)
    return OpenAILogprobScorer(OpenAIClient(config), config.model, load_tokenizer(path) if path else None)
