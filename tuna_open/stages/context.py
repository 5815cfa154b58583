"""What a stage sees of the run: its config's references resolved, its output path, data, progress bars."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tuna_open.data.records import Instruction, load_records
from tuna_open.data.sources import load_instructions
from tuna_open.errors import UserError
from tuna_open.models import resolve_model_refs
from tuna_open.progress import PeriodicLog
from tuna_open.recipe import REF, Recipe, substitute_refs


@dataclass
class StageResult:
    """What a stage reports back; the runner writes it into the manifest and the report."""

    summary: str
    """One line for the console, e.g. ``"4000 candidates for 1000 prompts"``."""
    counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    """``{model_name: {metric: value}}`` (eval stages)."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Training curve: ``[{"step", "loss", ...}]``."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    recipe: Recipe
    run_dir: Path
    stage_dir: Path
    output: Path
    """Where the stage's primary artifact goes (a model dir, records.jsonl or metrics.json)."""
    seed: int
    outputs: dict[str, Path]
    """Primary artifacts of the stages that ran before this one."""
    console: Console

    def resolve(self, value: Any) -> Any:
        """Replace ``@stage`` references with the paths of those stages' artifacts, and model references
        (``smollm2-135m-instruct``, ``gguf:PATH``) with their converted directories."""
        return resolve_model_refs(substitute_refs(value, {k: str(v) for k, v in self.outputs.items()}))

    def instructions(self, name: str) -> list[Instruction]:
        """Instruction records from a recipe data entry, or from an upstream stage's records (``@stage``)."""
        m = REF.match(name)
        if m:
            return load_records(self.outputs[m.group(1)], ("id", ("instruction", "messages")))  # type: ignore[return-value]
        src = self.recipe.data.get(name)
        if src is None:
            raise UserError(f"unknown data {name!r}")
        return load_instructions(src, self.recipe.base_dir, self.recipe.seed)

    def records(self, ref: str, required: Sequence[str | tuple[str, ...]] = ("id",)) -> list[dict[str, Any]]:
        """An upstream stage's records, each with the ``required`` fields, ids unique (else one error line)."""
        m = REF.match(ref)
        if not m:
            raise UserError(f"expected an @stage reference, got {ref!r}")
        return load_records(self.outputs[m.group(1)], required)

    def progress(self, total: int, description: str) -> ContextManager[Callable[[int], None]]:
        """A progress bar for long record-level work; yields ``advance(n)``."""
        return track(self.console, total, description)


@contextlib.contextmanager
def track(console: Console, total: int, description: str) -> Iterator[Callable[[int], None]]:
    """Progress of ``total`` records; yields ``advance(n)``.

    On a terminal, a transient rich bar with elapsed time and ETA; otherwise (Slurm, nohup, a pipe) plain
    ``PeriodicLog`` lines, because a bar would print nothing there and a long stage would look hung.
    """
    if not console.is_terminal:
        log = PeriodicLog(lambda line: console.print(line, markup=False, highlight=False), total, description)
        yield log.advance
        return
    columns = (TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
