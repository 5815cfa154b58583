"""Instruction data loaders: builtin suite, Alpaca-format JSON/JSONL files, and Hugging Face datasets.

Everything is normalised to ``Instruction`` records (``id``, ``instruction``, ``input``, ``output``, ``task``)
so stages never care where data came from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tuna_open.data.jsonl import iter_jsonl_lines, read_text
from tuna_open.data.records import Instruction, check_unique_ids
from tuna_open.errors import UserError
from tuna_open.recipe import DataSource


def load_instructions(src: DataSource, base_dir: Path, default_seed: int = 0) -> list[Instruction]:
    """Every record of ``src`` (after ``offset``/``limit``) as an ``Instruction``, ids unique.

    A problem in a record is a UserError naming where it is (``file:line`` of a JSONL file, ``file item N`` of a
    JSON list, 1-based) and the field. Two records with the same id are an error naming both places, never a
    silent overwrite downstream (stages resume and join by id).
    """
    if src.source == "builtin:tasks":
        from tuna_open.builtin import tasks

        n = src.offset + (src.limit or 1000)
        rows = _numbered(src.source, "record",
                         tasks.generate(src.split or "train", n, src.seed if src.seed is not None else default_seed))
    elif src.source.startswith("hf:"):
        rows = _numbered(src.source, "row", _load_hf(src.source[3:], src.split or "train"))
    else:
        rows = _load_file(base_dir / src.source if not Path(src.source).is_absolute() else Path(src.source))
    rows = rows[src.offset:]
    if src.limit is not None:
        rows = rows[: src.limit]
    if not rows:
        raise UserError(f"{src.source}: no records" + (f" after offset {src.offset}" if src.offset else ""))
    located = [(where, _normalise(row, src, where, src.offset + i)) for i, (where, row) in enumerate(rows)]
    check_unique_ids(located)
    return [rec for _, rec in located]


def _numbered(name: str, unit: str, rows: list[Any]) -> list[tuple[str, Any]]:
    return [(f"{name} {unit} {i}", row) for i, row in enumerate(rows, 1)]


def _load_file(path: Path) -> list[tuple[str, Any]]:
    """``(where, row)`` of every record of a JSONL file or a JSON list."""
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected an Alpaca-format .json or .jsonl file")
    try:
        if path.suffix == ".jsonl":
            return [(f"{path}:{lineno}", row) for lineno, row in iter_jsonl_lines(path)]
        text = read_text(path)
    except ValueError as err:
        raise UserError(str(err)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of Alpaca-format records")
    return _numbered(str(path), "item", data)


def _load_hf(name: str, split: str) -> list[dict[str, Any]]:
    import datasets

    try:
        return list(datasets.load_dataset(name, split=split))
    except Exception as err:  # noqa: BLE001 - any loading failure is the user's data reference
        raise UserError(f"hf:{name} (split {split}): cannot load dataset ({type(err).__name__}: {err})") from None


def content_id(row: dict[str, Any], position: int) -> str:
    """An id for a record its source gives none: its position in the source plus a hash of its content.

    The position makes it unique within the source; the hash keeps it from equalling an explicit id of another
    record (a source mixing records with and without ids), which ``check_unique_ids`` would then reject.
    """
    digest = hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{position}-{digest}"


def _text_field(row: dict[str, Any], name: str, where: str, required: bool) -> str | None:
    value = row.get(name)
    if value is None:
        if required:
            raise UserError(f"{where}: missing field {name!r}" if name not in row else f"{where}: field {name!r} is null")
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise UserError(f"{where}: field {name!r} must be a string, got {json.dumps(value, default=str)[:60]}")
    return str(value)


def _normalise(row: Any, src: DataSource, where: str, position: int) -> Instruction:
    f = src.fields
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")
    id_field = f.id or "id"
    if f.id and row.get(f.id) is None:
        raise UserError(f"{where}: missing field {f.id!r} (fields.id)")
    rec: Instruction = {
        "id": str(row[id_field]) if row.get(id_field) is not None else content_id(row, position),
        "instruction": _text_field(row, f.instruction, where, required=True) or "",
        "input": _text_field(row, f.input, where, required=False) or "",
    }
    output = _text_field(row, f.output, where, required=False)
    if output is not None:
        rec["output"] = output
    task = row.get(f.task) if f.task else row.get("task")
    if task is not None:
        rec["task"] = str(task)
    return rec
