"""Which process does what under ``accelerate launch`` / torchrun: the one place that knows about ranks.

Why: a launcher starts the whole program N times. Training wants all N (data parallelism), but sampling,
judging, evaluation and every file the runner writes must happen once, or a run pays N× for its API calls and N
processes race on the same files. So the runner runs such work on the main process (``on_main``) while the
others wait, and every trainer publishes its model through one rank-aware ``atomic_output_dir``.

The waiting happens on a separate gloo group with a long timeout: a main-process stage may sample or judge for
hours, far beyond the default process-group timeout, and under NCCL a CPU-side wait keeps the GPUs idle rather
than spinning in a collective. Single-process every helper is a no-op (``on_main`` just calls the function).
Outputs are exchanged through the run directory, so a multi-node launch needs a filesystem shared by all nodes.
"""

from __future__ import annotations

import atexit
import shutil
from contextlib import contextmanager
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from tuna_open.errors import UserError, number_from_env

T = TypeVar("T")

WAIT_TIMEOUT = timedelta(days=3)
"""How long a process waits for the main one to finish a stage (a long judging run) before giving up."""


def launched_processes() -> int:
    """Processes the launcher started (``WORLD_SIZE``; 1 when run as a plain program)."""
    return number_from_env("WORLD_SIZE", 1, int)


def _initialised() -> bool:
    if launched_processes() <= 1:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def init() -> None:
    """Join the launcher's process group (accelerate picks the backend: NCCL on GPUs, gloo on CPU); idempotent."""
    if launched_processes() > 1 and not _initialised():
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())
        atexit.register(_leave)


def _leave() -> None:
    """Leave the process group before the interpreter exits: left to the interpreter's teardown, gloo's threads
    were destroyed while still joinable now and then ("terminate called without an active exception", exit -6,
    seen on a loaded 2-core machine after every result had been written)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    """This process's global rank (0 single-process); readable before the process group exists."""
    return number_from_env("RANK", 0, int)


def is_main() -> bool:
    return rank() == 0


@lru_cache(maxsize=1)
def _control_group() -> Any:
    """A gloo group with a long timeout for waiting and exchanging small Python objects; created collectively,
    on first use, which every process reaches in the same order (the runner's stage loop)."""
    import torch.distributed as dist

    return dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT)


def barrier() -> None:
    """Wait until every process gets here (no-op single-process)."""
    init()
    if _initialised():
        import torch.distributed as dist

        dist.barrier(group=_control_group())


def broadcast(value: T) -> T:
    """The main process's ``value`` on every process (pickled; keep it small)."""
    init()
    if not _initialised():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, group=_control_group())
    return box[0]


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the main process only; every process returns its result once it is done.

    An exception on the main process is raised on every process (a ``UserError`` as itself, anything else as a
    ``RuntimeError`` naming it), so no process is left waiting for a stage that has failed.
    """
    if launched_processes() <= 1:
        return fn()
    if is_main():
        try:
            outcome: tuple[str, Any] = ("ok", fn())
        except UserError as err:
            broadcast(("user_error", str(err)))
            raise
        except BaseException as err:
            broadcast(("error", f"{type(err).__name__}: {err}"))
            raise
        return broadcast(outcome)[1]
    kind, value = broadcast(("", None))
    if kind == "user_error":
        raise UserError(value)
    if kind == "error":
        raise RuntimeError(f"the main process failed: {value}")
    return value


@contextmanager
def atomic_output_dir(output_dir: str | Path) -> Iterator[Path]:
    """Yield a scratch directory next to ``output_dir`` that replaces it only when the block succeeds everywhere.

    The one save path of every trainer. All processes get the same scratch directory (sharded saves write parts
    from several ranks); the main process clears one left by a killed run before anyone writes to it, and after
    every process has finished the block, it swaps the result into place. So a crashed or killed training run
    never leaves a half-written model where a later stage (or a cached re-run) would load it, and N processes
    never race on the rename. On failure the scratch directory is removed (by the main process).
    """
    output_dir = Path(output_dir)
    tmp = output_dir.with_name(f".{output_dir.name}.tmp")
    if is_main():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    try:
        yield tmp
    except BaseException:
        if is_main():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    barrier()
    if is_main():
        replace_dir(tmp, output_dir)
    barrier()


def replace_dir(src: Path, dst: Path) -> None:
    """Move the directory ``src`` to ``dst``, replacing what is there; ``dst`` is never missing a model for
    longer than between two renames, and never holds a partial one."""
    if dst.exists():
        stale = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(stale, ignore_errors=True)
        dst.rename(stale)
        src.rename(dst)
        shutil.rmtree(stale)
    else:
        src.rename(dst)
