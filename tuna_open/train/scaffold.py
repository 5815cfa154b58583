"""The one way every trainer runs: build → train (resuming) → save → clean up, each trainer supplying only the build.

Each trainer module says what is its own (settings, dataset, models, trainer class); this module does the rest
the same way for all of them: an atomic output directory, a stable working directory next to it (so an
interrupted run's checkpoints are found again), quiet library progress bars, our progress display, resuming from
the last complete checkpoint, saving a plain model (LoRA merged), and the log-history rows the report plots.
"""

from __future__ import annotations

import io
import shutil
import time
from contextlib import contextmanager, nullcontext, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, TypeVar

from tuna_open.distributed import atomic_output_dir
from tuna_open.train.settings import TrainSettings

if TYPE_CHECKING:
    from transformers import Trainer

TrainerT = TypeVar("TrainerT", bound="Trainer")


def train_into(output_dir: str | Path, settings: TrainSettings, history_fields: Mapping[str, str],
               build: Callable[[Path], TrainerT], *, quiet_stdout: bool = False,
               extra: Callable[[TrainerT], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Build a trainer with ``build(workdir)``, train it, save a plain model + tokenizer into ``output_dir``
    atomically, drop the working directory (checkpoints included), return the record.

    ``quiet_stdout`` swallows what the training loop prints to stdout (TRL's PPO banner): the stage prints its own
    summary line. ``extra(trainer)``, taken before training, adds to (or overrides) the record.

    The returned dict is what stages put in their result: ``history`` (one row per logging step, keys from
    ``history_fields``), ``train_seconds`` (training only, not loading or saving), ``examples`` (training rows
    left after the trainer's own length filtering), ``resumed_from_step`` (0 for a fresh start) and ``extra``.
    """
    with atomic_output_dir(output_dir) as out, quiet_progress():
        trainer = build(trainer_dir(output_dir))
        record = extra(trainer) if extra else {}
        examples = len(trainer.train_dataset)
        if examples == 0:
            raise ValueError("no training examples left after the trainer's length filter; raise max_length")
        with redirect_stdout(io.StringIO()) if quiet_stdout else nullcontext():
            seconds, resumed = run_training(trainer, settings.progress_bar)
            save_plain_model(trainer, out)
            if trainer.accelerator.is_main_process:
                discard_workdir(trainer.args.output_dir)
        return {"history": log_history(trainer.state.log_history, history_fields), "train_seconds": seconds,
                "examples": examples, "resumed_from_step": resumed, **record}


def trainer_dir(output_dir: str | Path) -> Path:
    """The trainer's working directory (checkpoints) for a model saved to ``output_dir``.

    A stable path next to the output, not a temporary one: an interrupted run's checkpoints must still be there
    when the stage is re-run. The runner deletes the stage directory when the fingerprint changed, so a resumed
    checkpoint always belongs to the same configuration.
    """
    output_dir = Path(output_dir)
    return output_dir.with_name(f"{output_dir.name}.trainer")


@contextmanager
def quiet_progress() -> Iterator[None]:
    """Silence the datasets (tokenizing, filtering) and transformers (loading, saving) progress bars for a block.

    A stage prints one summary line and the trainer's own progress; a dozen library bars per training run would
    bury them. Previous states are restored.
    """
    import datasets
    from transformers.utils import logging as hf_logging

    datasets_off, transformers_on = datasets.are_progress_bars_disabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not datasets_off:
            datasets.enable_progress_bars()
        if transformers_on:
            hf_logging.enable_progress_bar()


def run_training(trainer: "Trainer", progress: bool) -> tuple[float, int]:
    """``trainer.train()`` with our progress display, resumed from the last complete checkpoint in its
    ``output_dir`` when there is one; returns (training seconds, step resumed from or 0).

    TRL's experimental PPO loop takes no ``resume_from_checkpoint`` and always starts afresh.
    """
    import inspect

    from transformers import PrinterCallback

    from tuna_open.progress import training_progress_callback

    trainer.remove_callback(PrinterCallback)  # its per-step dict dumps would drown the stage's summary line
    if progress:
        trainer.add_callback(training_progress_callback())
    checkpoint = last_checkpoint(trainer.args.output_dir)
    if "resume_from_checkpoint" not in inspect.signature(trainer.train).parameters:
        checkpoint = None
    start = time.perf_counter()
    trainer.train(**({"resume_from_checkpoint": checkpoint} if checkpoint else {}))
    return time.perf_counter() - start, int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0


def discard_workdir(workdir: str | Path) -> None:
    """Delete the trainer's working directory once the model is saved, keeping TensorBoard's event files.

    transformers 5 writes them under ``output_dir/runs`` (it has no ``logging_dir`` any more); they move to
    ``logs/`` beside the working directory (the stage directory), where a re-run does not clobber them.
    """
    workdir = Path(workdir)
    events = workdir / "runs"
    if events.is_dir():
        logs = workdir.parent / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for run in events.iterdir():
            shutil.move(str(run), str(logs / run.name))
    shutil.rmtree(workdir, ignore_errors=True)


def last_checkpoint(workdir: str | Path) -> str | None:
    """The newest *complete* ``checkpoint-N`` in ``workdir``, or None.

    transformers writes ``trainer_state.json`` after the weights, optimizer and RNG states, so a checkpoint a
    kill interrupted mid-save lacks it and is passed over for the one before.
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        return None
    complete = [c for c in workdir.glob("checkpoint-*")
                if c.name.rsplit("-", 1)[1].isdigit() and (c / "trainer_state.json").is_file()]
    return str(max(complete, key=lambda c: int(c.name.rsplit("-", 1)[1]))) if complete else None


def save_plain_model(trainer: "Trainer", out: Path) -> None:
    """Save model and tokenizer so ``from_pretrained`` loads them without PEFT (LoRA adapters merged first).

    Every process calls it: ``save_model`` gathers sharded (ZeRO-3 / FSDP) weights from all of them, and the
    files are written by the main process only, so N processes never write the same file.
    """
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    main = trainer.accelerator.is_main_process
    if isinstance(model, PeftModel):
        if main:
            model.merge_and_unload().save_pretrained(str(out))
    else:
        trainer.save_model(str(out))
    if main:
        trainer.processing_class.save_pretrained(str(out))
    trainer.accelerator.wait_for_everyone()


def log_history(entries: list[dict[str, Any]], fields: Mapping[str, str]) -> list[dict[str, float]]:
    """Rows ``{"step", name: entry[key] ...}`` for each logging step that has every mapped key.

    ``fields`` maps our names to the trainer's log keys; requiring all keys skips the end-of-training summary
    entry, whose keys (``train_loss``, ``train_runtime``) differ.
    """
    return [{"step": float(e["step"]), **{name: float(e[key]) for name, key in fields.items()}}
            for e in entries if all(key in e for key in fields.values())]
