"""Instruction data loaders: the builtin suite, local files (JSON, JSONL, CSV, Parquet) and Hugging Face datasets.

Everything is normalised to ``Instruction`` records (``id``, ``instruction``, ``input``, ``output``, ``task``,
and ``messages`` for conversations) so stages never care where data came from or which schema it used:

- ``alpaca``: ``instruction``, ``input``, ``output`` (column names remappable with ``fields``);
- ``messages`` (TRL conversational): ``messages`` = ``[{"role", "content"}, ...]``;
- ``prompt_completion`` (TRL): ``prompt`` and ``completion``, both strings or both message lists;
- ``sharegpt``: ``conversations`` = ``[{"from": "human"|"gpt"|"system", "value"}, ...]`` (and an optional
  top-level ``system``).

In a conversation the last assistant turn is the response (the SFT target and the reference), the turns before
it are the prompt context (``messages``, ending with a user turn) and ``instruction`` is that last user turn.
A conversation that ends with a user turn is a prompt without a reference (enough to sample and rank).

Every row is read with its location (``file:line`` for JSONL/CSV, ``file: record i`` otherwise, 1-based), so a
schema error names the file, the row and the field in one line, at ``validate`` time (``check_source`` reads the
first rows of a local file) as well as when a stage loads the whole source.

Ids are unique: stages resume and join by id, so two records sharing one would silently become one. A duplicate
is an error naming both places; a record without an id gets one from its position and content (``content_id``).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import unicodedata
from pathlib import Path
from typing import Any, Iterator

from rankers.llm.templates import Message
from tuna_open.data.jsonl import iter_jsonl_lines, read_text
from tuna_open.data.records import Instruction, check_unique_ids
from tuna_open.data.schema import DataSource
from tuna_open.errors import UserError

Row = tuple[str, Any]
"""(location for error messages, the raw record)."""

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "system": "system"}
CHECK_ROWS = 20
"""Rows ``check_source`` reads: enough to catch a wrong schema without reading a big file."""


def load_instructions(src: DataSource, base_dir: Path, default_seed: int = 0) -> list[Instruction]:
    if src.source == "builtin:tasks":
        from tuna_open.builtin import tasks

        n = src.offset + (src.limit or 1000)
        seed = src.seed if src.seed is not None else default_seed
        rows: Iterator[Row] = (("builtin:tasks", r) for r in tasks.generate(src.split or "train", n, seed))
    elif src.source.startswith("hf:"):
        rows = _hf_rows(src)
    else:
        rows = _file_rows(_path(src, base_dir))
    stop = None if src.limit is None else src.offset + src.limit
    selected = list(itertools.islice(rows, src.offset, stop))
    if not selected:
        raise UserError(f"{src.source}: no records" + (f" after offset {src.offset}" if src.offset else ""))
    fmt = detect_format(src, selected[0])
    located = [(where, normalise(row, src, fmt, where, i + src.offset)) for i, (where, row) in enumerate(selected)]
    check_unique_ids(located)
    return [rec for _, rec in located]


def check_source(src: DataSource, base_dir: Path, prefix: str) -> None:
    """Read and normalise the first ``CHECK_ROWS`` rows of a local file source; a bad one is one UserError line."""
    try:
        rows = list(itertools.islice(_file_rows(_path(src, base_dir)), CHECK_ROWS))
        if rows:
            fmt = detect_format(src, rows[0])
            for i, (where, row) in enumerate(rows):
                normalise(row, src, fmt, where, i)
    except UserError as err:
        raise UserError(f"{prefix}: {err}") from None


def _path(src: DataSource, base_dir: Path) -> Path:
    path = Path(src.source).expanduser()
    return path if path.is_absolute() else base_dir / path


def _file_rows(path: Path) -> Iterator[Row]:
    """Rows of a local file, by suffix, each with its location; malformed files raise UserError naming it."""
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a .json, .jsonl, .csv or .parquet file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _jsonl_rows(path)
    elif suffix == ".csv":
        yield from _csv_rows(path)
    elif suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        try:
            data = json.loads(read_text(path))
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
        except ValueError as err:  # not UTF-8
            raise UserError(str(err)) from None
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON list of records (or a .jsonl, .csv or .parquet file)")
        yield from ((f"{path}: record {i}", row) for i, row in enumerate(data, 1))


def _jsonl_rows(path: Path) -> Iterator[Row]:
    try:
        for lineno, record in iter_jsonl_lines(path):
            yield f"{path}:{lineno}", record
    except ValueError as err:
        raise UserError(str(err)) from None


def _invisible(text: str) -> str | None:
    """The first invisible character in ``text`` (a format character: zero-width space or joiner, BOM, word
    joiner, ...) as ``U+XXXX NAME``; None when there is none."""
    for char in text:
        if unicodedata.category(char) == "Cf":
            return f"U+{ord(char):04X} {unicodedata.name(char, 'format character')}"
    return None


def _csv_rows(path: Path) -> Iterator[Row]:
    """CSV rows as string columns (an empty cell is a missing field); a conversation column holds JSON.

    A byte-order mark at the start (Excel writes one) is the encoding's, not the header's. An invisible
    character inside a header name, or a row with more cells than the header has columns (an unquoted comma),
    is an error naming it: the first made ``instruction`` a different column, the second silently dropped
    the row's extra text. So are a column named twice (the last silently won) and broken quoting (strict: an
    unterminated quote swallowed the rest of the file into one cell).
    """
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh, strict=True)
        start = 2
        try:
            names = reader.fieldnames or []
            for i, name in enumerate(names):
                char = _invisible(name)
                if char:
                    raise UserError(f"{path}:1: header {name!r} contains an invisible character ({char}); "
                                    "remove it")
                if name in names[:i]:
                    raise UserError(f"{path}:1: column {name!r} appears twice in the header")
            for row in reader:
                if None in row:
                    raise UserError(f"{path}:{start}: {len(reader.fieldnames or []) + len(row[None])} cells, but "
                                    f"the header has {len(reader.fieldnames or [])} columns (a cell holding a "
                                    "comma needs quotes)")
                yield f"{path}:{start}", {k: v for k, v in row.items() if v not in ("", None)}
                start = reader.line_num + 1
        except UnicodeDecodeError:
            raise UserError(f"{path}:{reader.line_num + 1}: not UTF-8 text") from None
        except csv.Error as err:
            raise UserError(f"{path}:{start}: invalid CSV ({err}; a cell with a quote needs it doubled)") from None


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a file that is not Parquet
        raise UserError(f"{path}: cannot read Parquet ({type(err).__name__}: {err})") from None
    index = 0
    for batch in parquet.iter_batches(batch_size=256):
        for row in batch.to_pylist():
            index += 1
            yield f"{path}: row {index}", row


def _hf_rows(src: DataSource) -> Iterator[Row]:
    import datasets

    name, split = src.source[3:], src.split or "train"
    try:
        data = datasets.load_dataset(name, src.config, split=split, revision=src.revision)
    except Exception as err:  # noqa: BLE001 - any loading failure is the user's data reference
        raise UserError(f"{src.source} (config {src.config}, split {split}): cannot load dataset "
                        f"({type(err).__name__}: {err})") from None
    yield from ((f"{src.source} ({split}): row {i}", row) for i, row in enumerate(data, 1))


def detect_format(src: DataSource, first: Row) -> str:
    """``src.format``, or the schema the first record's keys say (conversation columns win over Alpaca's)."""
    if src.format != "auto":
        return src.format
    where, row = first
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a record (a JSON object), got {type(row).__name__}")
    if src.fields.messages:
        return "sharegpt" if _looks_sharegpt(row.get(src.fields.messages)) else "messages"
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "prompt" in row and "completion" in row and src.fields.instruction not in row:
        return "prompt_completion"
    if src.fields.instruction in row:
        return "alpaca"
    raise UserError(f"{where}: unknown record schema (keys: {', '.join(map(str, row)) or 'none'}); expected "
                    f"{src.fields.instruction!r} (alpaca), 'messages', 'prompt'+'completion' or 'conversations' "
                    "(sharegpt), or set the source's format")


def _looks_sharegpt(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "from" in value[0]


def normalise(row: Any, src: DataSource, fmt: str, where: str, index: int) -> Instruction:
    """One raw record of schema ``fmt`` as an ``Instruction``; a schema error names ``where`` and the field."""
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a record (a JSON object), got {type(row).__name__}")
    f = src.fields
    if fmt == "alpaca":
        if row.get(f.instruction) is None:
            hint = "" if not ({"messages", "conversations", "prompt"} & set(row)) else \
                " (a conversation or prompt/completion record: remove the source's format or set the right one)"
            state = "is null" if f.instruction in row else "is missing"
            raise UserError(f"{where}: field {f.instruction!r} {state}{hint}")
        rec: Instruction = {"id": "", "instruction": _text(row, f.instruction, where),
                            "input": _text(row, f.input, where) if row.get(f.input) is not None else ""}
        if row.get(f.output) not in (None, ""):
            rec["output"] = _text(row, f.output, where)
    elif fmt == "prompt_completion":
        rec = _prompt_completion(row, where)
    else:
        column = f.messages or ("messages" if fmt == "messages" else "conversations")
        turns = _turns(row, column, fmt, where)
        if fmt == "sharegpt" and isinstance(row.get("system"), str) and row["system"]:
            turns.insert(0, {"role": "system", "content": row["system"]})
        rec = _from_conversation(turns, where, column)
    rid = row.get(f.id or "id")  # columnar formats (Parquet, hf) give None for a missing field
    if rid is None and f.id:
        raise UserError(f"{where}: field {f.id!r} is missing")
    task = row.get(f.task) if f.task else row.get("task")
    if task is not None:
        rec["task"] = str(task)
    rec["id"] = content_id(rec, index) if rid is None else str(rid)
    return rec


def _text(row: dict[str, Any], name: str, where: str) -> str:
    """A text field: a string (a number is taken as its text); a list, mapping or boolean is an error, not
    ``str()`` of it."""
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f"{where}: field {name!r} must be a string, got {json.dumps(value, default=str)[:60]}")
    return str(value)


def content_id(record: Instruction, position: int) -> str:
    """The id of a record its source gives none: its 0-based position plus a hash of its normalised content.

    The position makes it unique within the source; the hash keeps it from equalling an explicit id of another
    record (a source mixing records with and without ids), which ``check_unique_ids`` would then reject. Hashing
    the normalised record, not the raw row, gives the same id whatever file format holds the record.
    """
    content = {k: v for k, v in record.items() if k != "id"}
    return f"{position}-{hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:8]}"


def _turns(row: dict[str, Any], column: str, fmt: str, where: str) -> list[Message]:
    """The messages of a conversation column (a JSON string in CSV), roles mapped to system/user/assistant."""
    value = row.get(column)
    if value is None:
        raise UserError(f"{where}: field {column!r} is missing")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(f"{where}: field {column!r}: expected a list of messages, got a string") from None
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: field {column!r}: expected a non-empty list of messages")
    role_key, text_key = ("from", "value") if fmt == "sharegpt" else ("role", "content")
    turns: list[Message] = []
    for i, message in enumerate(value):
        field = f"{column}[{i}]"
        if not isinstance(message, dict) or not isinstance(message.get(text_key), str):
            raise UserError(f"{where}: field {field!r}: expected {{{role_key!r}, {text_key!r}: string}}")
        role = message.get(role_key)
        role = SHAREGPT_ROLES.get(role, role) if fmt == "sharegpt" else role
        if role not in ROLES:
            raise UserError(f"{where}: field '{field}.{role_key}': unknown role {message.get(role_key)!r}")
        turns.append({"role": role, "content": message[text_key]})
    return turns


def _from_conversation(turns: list[Message], where: str, field: str) -> Instruction:
    """Split a conversation into prompt context (ending with a user turn) and response (the last assistant turn)."""
    response = turns.pop()["content"] if turns[-1]["role"] == "assistant" else None
    if not turns or turns[-1]["role"] != "user":
        raise UserError(f"{where}: field {field!r}: the turn before the response must be a user turn")
    rec: Instruction = {"id": "", "instruction": turns[-1]["content"], "input": "", "messages": turns}
    if response is not None:
        rec["output"] = response
    return rec


def _prompt_completion(row: dict[str, Any], where: str) -> Instruction:
    """TRL's prompt/completion: plain strings, or message lists (the completion's last turn is the response)."""
    prompt, completion = row.get("prompt"), row.get("completion")
    if isinstance(prompt, str):
        if completion is not None and not isinstance(completion, str):
            raise UserError(f"{where}: field 'completion': expected a string like the prompt")
        rec: Instruction = {"id": "", "instruction": prompt, "input": ""}
        if completion:
            rec["output"] = completion
        return rec
    if prompt is None:
        raise UserError(f"{where}: field 'prompt' is missing")
    turns = _turns(row, "prompt", "messages", where)
    if completion is not None:
        turns += _turns(row, "completion", "messages", where)
        if turns[-1]["role"] != "assistant":
            raise UserError(f"{where}: field 'completion': the last turn must be an assistant turn")
    return _from_conversation(turns, where, "prompt")
