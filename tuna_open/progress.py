"""Progress that survives a log file: plain periodic lines with an ETA when no terminal is attached.

A rich bar or tqdm bar redraws one line with carriage returns; under Slurm or nohup that is either nothing (rich
disables itself) or an unreadable smear. ``PeriodicLog`` prints one self-contained line at the start, then at most
every ``TUNA_PROGRESS_INTERVAL`` seconds (default 30), and at the end. Used by the record-level stages
(``tuna_open.stages.context.track``) and by every trainer (``training_progress_callback``).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

from tuna_open.errors import number_from_env

INTERVAL_ENV = "TUNA_PROGRESS_INTERVAL"


def format_seconds(seconds: float) -> str:
    """``1h02m``, ``3m07s`` or ``12s``: short enough for one log line."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class PeriodicLog:
    """Counts work done towards ``total`` and writes ``description: done/total (pct), elapsed, ETA`` lines.

    The ETA extrapolates the rate of this process only (work done before ``start``, e.g. resumed records or
    steps restored from a checkpoint, is excluded from the rate), so a resumed run does not promise too much.
    """

    def __init__(self, write: Callable[[str], None], total: int, description: str, start: int = 0,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.write = write
        self.total = total
        self.description = description
        self.done = self.start = start
        self.interval = number_from_env(INTERVAL_ENV, 30.0, float) if interval is None else interval
        self.clock = clock
        self.began = clock()
        self.last = self.began
        self._emit()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            self._emit()

    def _emit(self) -> None:
        elapsed = self.clock() - self.began
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        line = f"  {self.description}: {self.done}/{self.total}{pct}, {format_seconds(elapsed)} elapsed"
        rate = (self.done - self.start) / elapsed if elapsed > 0 else 0.0
        if self.done >= self.total:
            line += ", done"
        elif rate > 0:
            line += f", ETA {format_seconds((self.total - self.done) / rate)}"
        self.write(line)


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def training_progress_callback() -> Any:
    """A transformers ``TrainerCallback`` showing optimizer steps on stderr: a tqdm bar on a terminal, else
    ``PeriodicLog`` lines. Only the bar: transformers' own ``ProgressCallback`` also dumps every log dict.

    Built on first use so importing this module does not import transformers.
    """
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class TrainingProgress(TrainerCallback):
        def __init__(self) -> None:
            self.bar: Any = None
            self.log: PeriodicLog | None = None

        def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if not state.is_world_process_zero:
                return
            if sys.stderr.isatty():
                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="  training steps",
                                dynamic_ncols=True, leave=False)
            else:
                self.log = PeriodicLog(_stderr_line, state.max_steps, "training steps", start=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)
            elif self.log is not None:
                self.log.advance(state.global_step - self.log.done)

        def on_train_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if self.bar is not None:
                self.bar.close()

    return TrainingProgress()
