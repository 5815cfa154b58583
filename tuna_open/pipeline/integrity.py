"""Integrity of a run directory: one run at a time, and finished artifacts checked before they are trusted.

Why an OS lock (``fcntl.flock``) and not a pid file: the kernel releases a flock when its process dies, however
it dies (kill -9 included), so a stale lock never needs guessing; the pid written into the lock file only names
the holder in the error. Two runs on one directory would both pay for every judgement and overwrite each
other's artifacts, so the second one stops at once (exit 2) instead.

Why per-file sha256 with a size+mtime fast path: a stage's manifest records, for every file of its output (one
records file, or each file of a model directory), its size, ``mtime_ns`` and sha256. A cached stage is reused only
when its files are still those: a file whose size differs is changed; one whose size and mtime are unchanged is
taken as unchanged without reading it (re-hashing a 14 GB model on every run would cost more than the check is
worth); any other file is re-hashed and compared. A truncated records file or a garbage ``model.safetensors``
therefore re-runs its stage with a warning instead of surfacing later as a traceback in another stage.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from rich.console import Console

from tuna_open import distributed
from tuna_open.data.digest import file_digest
from tuna_open.errors import UserError
from tuna_open.pipeline import outputs

LOCK_NAME = outputs.RUN_LOCK
F = TypeVar("F", bound=Callable[..., Any])


class RunDirLock:
    """An exclusive, non-blocking lock on ``run_dir/.lock``, held from ``acquire`` to ``release`` (or death).

    ``name`` and ``hint`` serve ``tuna-open rank``, which locks its output file's own lock file beside it: two
    commands ranking into one file would pay for every judgement twice. That lock file sits in a user's folder, so
    ``transient`` removes it on release. It is unlinked while still held, and ``acquire`` takes a lock only on the
    file that is still at the path. A process that opened the old file before the unlink, and locked it after,
    sees the file is gone and tries again, so two processes never both hold "the" lock.
    """

    def __init__(self, run_dir: Path, name: str = LOCK_NAME, hint: str = "use another --run-dir",
                 transient: bool = False) -> None:
        self.path = run_dir / name
        self.hint = hint
        self.transient = transient
        self._fd: int | None = None

    def __enter__(self) -> "RunDirLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def in_use(self) -> bool:
        """Whether another process holds the lock now (probed without creating the lock file)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # releases the probe's own lock
        return False

    def acquire(self) -> None:
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:  # a file where the directory should be, no permission, ...
                raise UserError(f"run dir {self.path.parent}: {err.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise UserError(f"run dir {self.path.parent} is in use by another run (pid {holder}); "
                                f"wait for it or {self.hint}") from None
            if self._still_at_path(fd):
                break
            os.close(fd)  # a transient holder removed this file as it released it: lock the file there now
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def _still_at_path(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd is not None:
            if self.transient:
                self.path.unlink(missing_ok=True)  # while held: see the class docstring
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def locked_run_dir(run: F) -> F:
    """Decorate ``run_recipe(recipe, run_dir, *, dry_run=False, ...)``: hold the run-dir lock for the whole run.

    Before anything is written the directory must be a run's (``outputs.check_run_dir``: a user's folder given
    as ``--run-dir`` is refused, not overwritten), unless a run holds it right now (the lock then names it); it
    is marked as one before it is locked, so a second run never finds it locked but unmarked. A dry run writes
    nothing and takes no lock.
    """

    @functools.wraps(run)
    def wrapper(recipe: Any, run_dir: Path, *args: Any, **kwargs: Any) -> Any:
        if not distributed.is_main():  # other ranks are part of rank 0's run
            return run(recipe, run_dir, *args, **kwargs)
        lock = RunDirLock(Path(run_dir))
        if not lock.in_use():
            outputs.check_run_dir(Path(run_dir))
        if kwargs.get("dry_run"):
            return run(recipe, run_dir, *args, **kwargs)
        outputs.mark(Path(run_dir), outputs.RUN_MARKER)
        with lock:
            return run(recipe, run_dir, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _files(output: Path) -> list[tuple[str, Path]]:
    if output.is_dir():
        return sorted((p.relative_to(output).as_posix(), p) for p in output.rglob("*") if p.is_file())
    return [(output.name, output)]


def output_digest(output: Path) -> dict[str, dict[str, Any]]:
    """``{relative file: {"size", "mtime_ns", "sha256"}}`` of a stage's output file or directory."""
    out = {}
    for name, path in _files(output) if output.exists() else []:
        st = path.stat()
        out[name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_digest(path)}
    return out


def output_problem(output: Path, recorded: dict[str, dict[str, Any]]) -> str | None:
    """Why ``output`` is no longer what the manifest recorded (None: it is)."""
    if not output.exists():
        return f"{output.name} is missing"
    files = dict(_files(output))
    for name in sorted(set(recorded) | set(files)):
        want, path = recorded.get(name), files.get(name)
        if want is None:
            return f"{name} was not written by the stage"
        if path is None:
            return f"{name} is missing"
        st = path.stat()
        if st.st_size != want["size"]:
            return f"{name} has {st.st_size} bytes, {want['size']} were written"
        if st.st_mtime_ns != want["mtime_ns"] and file_digest(path) != want["sha256"]:
            return f"{name} was modified (content hash differs)"
    return None


def _outputs_id(recorded: dict[str, dict[str, Any]] | None) -> str | None:
    """One hash of a stage's recorded outputs: what the stages that read them consumed."""
    if recorded is None:
        return None
    contents = {name: entry["sha256"] for name, entry in recorded.items()}
    return hashlib.sha256(json.dumps(contents, sort_keys=True).encode()).hexdigest()[:16]


class Ledger:
    """What each stage of a run produced, so a cached stage is reused only if its outputs, and the outputs it read,
    are still the ones of its manifest.

    Fingerprints say a stage's *config* is unchanged; this says its *files* are. A stage re-made because its files
    were damaged usually comes out identical (same seed), and then everything downstream stays cached; if it comes
    out different (a nondeterministic sampler, another GPU), the stages that read it re-run too.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.produced: dict[str, str | None] = {}

    def _consumed(self, refs: Iterable[str]) -> dict[str, str | None]:
        return {ref: self.produced.get(ref) for ref in sorted(set(refs))}

    def reusable(self, name: str, output: Path, manifest: dict[str, Any], refs: Iterable[str]) -> bool:
        """Whether a finished stage (fingerprint matched) may be reused; one warning line when it may not.

        Manifests written before outputs were recorded are trusted as before (re-running would discard work).
        """
        recorded = manifest.get("outputs")
        if recorded is None:
            problem = None if output.exists() else f"{output.name} is missing"
        else:
            problem = output_problem(output, recorded)
            if problem is not None:
                problem = f"cached output changed since it was written ({problem})"
        consumed = self._consumed(refs)
        changed = [f"@{ref}" for ref, made in manifest.get("consumed", consumed).items() if consumed.get(ref) != made]
        if problem is None and changed:
            problem = f"{', '.join(changed)} was re-made with different content"
        if problem is not None:
            self.console.print(f"[yellow]warning: {name}: {problem}; re-running the stage[/yellow]")
            return False
        self.produced[name] = _outputs_id(recorded)
        return True

    def record(self, name: str, output: Path, refs: Iterable[str]) -> dict[str, Any]:
        """The manifest entries of a stage that just finished: its outputs, and what it read."""
        recorded = output_digest(output)
        self.produced[name] = _outputs_id(recorded)
        return {"outputs": recorded, "consumed": self._consumed(refs)}


def clear_unfinished(stage_dir: Path, output: Path) -> list[str]:
    """Delete what an interrupted run of a stage left besides its resumable records: temporary files and
    directories (``*.tmp``, e.g. a half-trained ``.model.*.tmp``) and an output written without a manifest
    (killed between the two), which would block or be mistaken for the new one.

    Safe because the run-dir lock guarantees no other run is writing them; ``*.partial`` records are kept, so
    sampling and ranking still resume. Returns the names removed.
    """
    removed = []
    stale = [*sorted(stage_dir.glob("*.tmp")), output] if stage_dir.is_dir() else []
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(path.name)
    return removed
