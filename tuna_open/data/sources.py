"""Instruction data loaders: builtin suite, Alpaca-format JSON/JSONL files, and Hugging Face datasets.

Everything is normalised to ``Instruction`` records (``id``, ``instruction``, ``input``, ``output``, ``task``)
so stages never care where data came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuna_open.data.jsonl import read_jsonl
from tuna_open.data.records import Instruction
from tuna_open.errors import UserError
from tuna_open.recipe import DataSource


def load_instructions(src: DataSource, base_dir: Path, default_seed: int = 0) -> list[Instruction]:
    if src.source == "builtin:tasks":
        from tuna_open.builtin import tasks

        n = src.offset + (src.limit or 1000)
        rows: list[dict[str, Any]] = tasks.generate(src.split or "train", n, src.seed if src.seed is not None else default_seed)
    elif src.source.startswith("hf:"):
        rows = _load_hf(src.source[3:], src.split or "train")
    else:
        rows = _load_file(base_dir / src.source if not Path(src.source).is_absolute() else Path(src.source))
    rows = rows[src.offset:]
    if src.limit is not None:
        rows = rows[: src.limit]
    return [_normalise(row, src, i) for i, row in enumerate(rows)]


def _load_file(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        try:
            return read_jsonl(path)
        except ValueError as err:
            raise UserError(str(err)) from None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of Alpaca-format records")
    return data


def _load_hf(name: str, split: str) -> list[dict[str, Any]]:
    import datasets

    try:
        return list(datasets.load_dataset(name, split=split))
    except Exception as err:  # noqa: BLE001 - any loading failure is the user's data reference
        raise UserError(f"hf:{name} (split {split}): cannot load dataset ({type(err).__name__}: {err})") from None


def _normalise(row: dict[str, Any], src: DataSource, index: int) -> Instruction:
    f = src.fields
    if not isinstance(row, dict) or f.instruction not in row:
        raise UserError(f"{src.source}: record {index + src.offset} has no {f.instruction!r} field")
    rec: Instruction = {
        "id": str(row[f.id]) if f.id else str(row.get("id", index + src.offset)),
        "instruction": str(row[f.instruction]),
        "input": str(row.get(f.input) or ""),
    }
    if row.get(f.output) is not None:
        rec["output"] = str(row[f.output])
    task = row.get(f.task) if f.task else row.get("task")
    if task is not None:
        rec["task"] = str(task)
    return rec
