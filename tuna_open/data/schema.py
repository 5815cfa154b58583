"""The schema of a recipe's ``data`` entries: where instruction records come from and how their columns are named.

It lives in the data layer, beside the loaders that read it (``tuna_open.data.sources``), so the loaders never
import the recipe; the recipe (``tuna_open.recipe``) imports it to type its ``data`` mapping.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FieldMap(BaseModel):
    """Column names of an instruction dataset (Alpaca's by default)."""

    model_config = ConfigDict(extra="forbid")

    instruction: str = "instruction"
    input: str = "input"
    output: str = "output"
    id: str | None = None
    task: str | None = None
    messages: str | None = None
    """The conversation column of ``messages`` / ``sharegpt`` data (default ``messages`` / ``conversations``)."""


DataFormat = Literal["auto", "alpaca", "messages", "prompt_completion", "sharegpt"]


class DataSource(BaseModel):
    """Instruction data: ``builtin:tasks``, a ``.json``/``.jsonl``/``.csv``/``.parquet`` file, or ``hf:DATASET_ID``.

    Records may be Alpaca (``instruction``/``input``/``output``), TRL conversational (``messages``), TRL
    prompt/completion (strings or message lists) or ShareGPT (``conversations`` of ``from``/``value``). In a
    conversation the last assistant turn is the response (SFT target, reference); the turns before it are the
    prompt, rendered by ``template: chat``.
    """

    model_config = ConfigDict(extra="forbid")

    source: str
    format: DataFormat = "auto"
    """The record schema; ``auto`` detects it from the first record's keys."""
    split: str | None = None
    """builtin: train|heldout; hf: the dataset split (default train)."""
    config: str | None = None
    """hf: the dataset configuration (subset) name."""
    revision: str | None = None
    """hf: a branch, tag or commit of the dataset repository."""
    limit: int | None = Field(default=None, ge=1)
    offset: int = Field(default=0, ge=0)
    seed: int | None = None
    """builtin: which world to draw (defaults to the recipe seed)."""
    fields: FieldMap = FieldMap()
