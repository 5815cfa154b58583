"""Record schemas of the artifacts passed between stages (one JSON object per JSONL line).

TypedDicts rather than classes: records are written and read as plain JSON, and these types document the
fields for readers and type checkers without a conversion layer.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from rankers.templates import Message


class Instruction(TypedDict):
    id: str
    instruction: str
    input: str
    output: NotRequired[str]
    """Reference response (SFT target; verifiers and judges may use it)."""
    task: NotRequired[str]
    """Task family (builtin suite) or category, for per-category metrics."""
    messages: NotRequired[list[Message]]
    """A conversation's turns before the response (ending with the user turn ``instruction`` holds); rendered
    by ``template: chat``."""


class Candidates(TypedDict):
    id: str
    instruction: str
    input: str
    prompt: str
    """The model-facing prompt (template applied) the candidates were sampled with."""
    candidates: list[str]
    messages: NotRequired[list[Message]]
    output: NotRequired[str]
    task: NotRequired[str]
    logprobs: NotRequired[list[float]]
    """Summed token log-probability of each candidate under the sampler (the Tuna_p teacher)."""
    lengths: NotRequired[list[int]]
    """Token count of each candidate."""
    source: str


class RankingRecord(TypedDict):
    id: str
    order: list[int]
    scores: NotRequired[list[float] | None]
    ranker: str
    raw: NotRequired[str | None]
    failed: NotRequired[bool]
    error: NotRequired[str | None]
