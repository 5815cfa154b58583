"""The stage contract: everything the runner (``tuna_open.pipeline.runner``) knows of a stage kind.

Each stage module declares one ``STAGE``; ``tuna_open.stages.registry`` maps kinds to them. A stage is a function
from input artifacts to output artifacts, ``run(ctx, config) -> StageResult``: the runner owns fingerprints,
caching, resume and the run directory; a stage only reads its inputs through ``ctx`` and writes its output where
``ctx.output`` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Literal, TypeVar

from tuna_open.recipe import StageConfig
from tuna_open.stages.context import StageContext, StageResult

Output = Literal["model", "records", "metrics"]
"""The kind of artifact a stage writes: a model directory, ``records.jsonl`` or ``metrics.json``."""

ConfigT = TypeVar("ConfigT", bound=StageConfig)


@dataclass(frozen=True)
class Stage(Generic[ConfigT]):
    kind: str
    """The ``kind`` a recipe's stage entry names."""
    config: type[ConfigT]
    """The pydantic model a stage entry of this kind validates as."""
    output: Output
    run: Callable[[StageContext, ConfigT], StageResult]
    all_processes: bool = False
    """Under ``accelerate launch`` a stage runs on the main process only (the others wait), unless this is set:
    the training stages, whose trainers split the work across processes themselves."""
