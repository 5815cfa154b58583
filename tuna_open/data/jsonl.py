"""JSONL artifacts: atomic whole-file writes, and append-only writers that make a killed stage resumable.

Why two modes: a finished artifact must never be seen half-written (``rankers.atomic.atomic_write_text``: temp
file + ``os.replace``), while a long sampling or ranking stage must not lose finished records when killed. The
resumable writer appends one flushed+fsynced line per record to ``<path>.partial``; on restart the complete lines
are kept, a torn last line is dropped, and ``finalize`` renames the partial file into place only when the stage
is done.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from rankers.atomic import atomic_write_text


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read every record; a malformed line raises ValueError naming ``file:line``."""
    return list(iter_jsonl(path))


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    for _, record in iter_jsonl_lines(path):
        yield record


def iter_jsonl_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` of every non-blank line; bad bytes or JSON raise ValueError naming
    ``file:line`` (decoding per line, so a non-UTF-8 byte is located, not just reported)."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = decode_utf8(raw, path, lineno)
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None


def decode_utf8(data: bytes, path: str | os.PathLike[str], lineno: int | None = None) -> str:
    """``data`` as UTF-8 text; otherwise ValueError naming ``file:line`` (``lineno`` of a single line, else
    counted in ``data``)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = lineno if lineno is not None else data.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x})") from None


def read_text(path: str | os.PathLike[str]) -> str:
    """A UTF-8 text file; non-UTF-8 bytes raise ValueError naming ``file:line``."""
    return decode_utf8(Path(path).read_bytes(), str(path))


def write_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> int:
    """Atomically write all records; returns how many."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


class ResumableJsonlWriter:
    """Append-only record writer keyed by ``id`` that survives being killed.

    Usage::

        with ResumableJsonlWriter(out) as w:
            todo = [r for r in inputs if r["id"] not in w.done]
            for rec in work(todo):
                w.write(rec)
            w.finalize()
    """

    def __init__(self, path: str | os.PathLike[str], key: str = "id",
                 keep: Callable[[dict[str, Any]], bool] = lambda record: True) -> None:
        """``keep`` decides which recovered records count as done; the others (e.g. failed judgements, which
        a later try may get right) are dropped from the partial file and redone, counted in ``dropped``."""
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.key = key
        self.keep = keep
        self.records: list[dict[str, Any]] = []
        self.dropped = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._recover()
        self._fh = open(self.partial, "a", encoding="utf-8")

    def _recover(self) -> None:
        if not self.partial.exists():
            return
        good: list[str] = []
        with open(self.partial, encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break  # torn write from a kill: drop it, the record is redone
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break
                if not self.keep(record):
                    self.dropped += 1
                    continue
                self.records.append(record)
                good.append(line)
        # Rewrite the partial file without the torn tail (or dropped records) so appends start on a clean line.
        atomic_write_text(self.partial, "".join(good))

    @property
    def done(self) -> set[Any]:
        return {r[self.key] for r in self.records}

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.records.append(record)

    def finalize(self, records: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Atomically write the final artifact (default: every record written) and drop the partial file.

        A stage may pass a filtered or re-ordered list: the partial file keeps raw per-record work for resume,
        the artifact holds what downstream stages should see.
        """
        self._fh.close()
        records = self.records if records is None else records
        write_jsonl(self.path, records)
        self.partial.unlink(missing_ok=True)
        return records

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "ResumableJsonlWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
