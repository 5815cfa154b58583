"""The judging keys of the contextual judges (``openai``, ``vllm``; ``pairwise`` reuses them) and what they imply
for one request: the scores parser of the chosen prompt, the decoding regex and the completion budget.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rankers.judging.constraints import rank_line_regex, rank_line_tokens
from rankers.judging.parsing import ScoresParser, parse_lmops_scores, parse_scores


class JudgeSettings(BaseModel):
    """Judging keys of the contextual judges, mixed in first (``Config(JudgeSettings, RankerConfig, ...)``)
    so that ``model`` and these keys follow the common ones, as a backend's own keys do."""

    model_config = ConfigDict(extra="forbid")

    model: str
    """The judge (each backend says how it is named)."""
    prompt: Literal["lmops", "strict"] = "lmops"
    """``lmops``: LMOps ``gpt-eval.py`` word for word (the paper's judge prompt); ``strict``: this project's
    stricter wording (``rankers.judging.prompts``)."""
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
