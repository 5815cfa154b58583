"""Record schemas of the artifacts passed between stages (one JSON object per JSONL line).

TypedDicts rather than classes: records are written and read as plain JSON, and these types document the
fields for readers and type checkers without a conversion layer. What is checked when a file is read (fields a
reader needs, their types, unique ids) is checked by ``load_records``, once, where the file and line are known.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable, Mapping, NotRequired, Sequence, TypedDict

from rankers.llm.templates import Message
from tuna_open.data.jsonl import iter_jsonl_lines
from tuna_open.errors import UserError


class Instruction(TypedDict):
    id: str
    instruction: str
    input: str
    output: NotRequired[str]
    """Reference response (SFT target; verifiers and judges may use it)."""
    task: NotRequired[str]
    """Task family (builtin suite) or category, for per-category metrics."""
    messages: NotRequired[list[Message]]
    """A conversation's turns before the response (ending with the user turn ``instruction`` holds); rendered
    by ``template: chat``."""


class Candidates(TypedDict):
    id: str
    instruction: str
    input: str
    prompt: str
    """The model-facing prompt (template applied) the candidates were sampled with."""
    candidates: list[str]
    messages: NotRequired[list[Message]]
    output: NotRequired[str]
    task: NotRequired[str]
    logprobs: NotRequired[list[float]]
    """Summed token log-probability of each candidate under the sampler (the Tuna_p teacher)."""
    lengths: NotRequired[list[int]]
    """Token count of each candidate."""
    source: str


def _is_id(value: object) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_int_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


FIELD_TYPES: dict[str, tuple[str, Callable[[object], bool]]] = {
    "id": ("a string or integer", _is_id),
    "instruction": ("a string", lambda v: isinstance(v, str)),
    "input": ("a string", lambda v: isinstance(v, str)),
    "prompt": ("a string", lambda v: isinstance(v, str)),
    "candidates": ("a list of strings", _is_str_list),
    "order": ("a list of integers", _is_int_list),
}
"""How each checked field must look: ``(description for the error, predicate)``."""

CANDIDATES_FIELDS = ("id", "candidates")
"""What every reader of a candidates record needs (``instruction``, ``input``, ``prompt`` are checked when
present). Ranking records need only an ``id`` here (a failed one may carry no ``order``): ``join_rankings`` checks
each order against its candidates."""
RANK_INPUT_FIELDS = (*CANDIDATES_FIELDS, ("instruction", "messages"))
"""What ranking a candidates record needs: the question is its ``instruction`` or its conversation."""


def check_unique_ids(located: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
    """Raise a UserError naming both places when two records share an id (``located``: (where, record) pairs).

    Ids are compared as strings, the way every join compares them: ``7`` and ``"7"`` are the same record.
    """
    seen: dict[str, str] = {}
    for where, rec in located:
        key = str(rec["id"])
        if key in seen:
            raise UserError(f"{where}: duplicate id {key!r} (first at {seen[key]})")
        seen[key] = where


def load_records(path: str | os.PathLike[str],
                 required: Sequence[str | tuple[str, ...]] = ("id",)) -> list[dict[str, Any]]:
    """Read a records JSONL file whose every line is an object with the ``required`` fields, ids unique.

    A tuple in ``required`` means one of those fields.

    Any problem is a UserError naming ``file:line`` and the field, so a torn or hand-edited artifact is one
    clear line instead of a traceback in whichever stage reads it. An empty file is an error: a stage over
    zero records would finish "successfully" with nothing.
    """
    located: list[tuple[str, dict[str, Any]]] = []
    try:
        for lineno, rec in iter_jsonl_lines(path):
            where = f"{path}:{lineno}"
            if not isinstance(rec, dict):
                raise UserError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            for alternatives in (a for a in required if isinstance(a, tuple) and not any(f in rec for f in a)):
                raise UserError(f"{where}: field {' or '.join(map(repr, alternatives))} is missing")
            for name in (*(f for f in required if isinstance(f, str)), *(f for f in FIELD_TYPES if f in rec)):
                if name not in rec:
                    raise UserError(f"{where}: field {name!r} is missing")
                description, ok = FIELD_TYPES.get(name, ("", lambda v: True))
                if not ok(rec[name]):
                    raise UserError(f"{where}: field {name!r} must be {description}, got {json.dumps(rec[name])[:60]}")
            located.append((where, rec))
    except ValueError as err:
        raise UserError(str(err)) from None
    if not located:
        raise UserError(f"{path}: no records")
    check_unique_ids(located)
    return [rec for _, rec in located]
