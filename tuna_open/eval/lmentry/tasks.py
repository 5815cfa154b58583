"""LMentry's tasks: the 25 core tasks, the analysis variants and groups the robustness aspects compare, and the
task files (``<task>.json``, as in a checkout's ``data/``)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

CORE_TASKS: tuple[str, ...] = (
    "sentence_containing", "sentence_not_containing", "word_containing", "word_not_containing",
    "most_associated_word", "least_associated_word", "any_words_from_category", "all_words_from_category",
    "first_alphabetically", "more_letters", "less_letters", "bigger_number", "smaller_number", "rhyming_word",
    "homophones", "word_after", "word_before", "starts_with_word", "ends_with_word", "starts_with_letter",
    "ends_with_letter", "first_word", "last_word", "first_letter", "last_letter",
)
ARGUMENT_ORDER_TASKS: tuple[str, ...] = (
    "more_letters", "less_letters", "first_alphabetically", "rhyming_word", "homophones", "bigger_number",
    "smaller_number",
)
ARGUMENT_CONTENT_GROUPS: dict[str, tuple[str, ...]] = {
    "first_alphabetically": ("far_first_letter", "different_first_letter", "consecutive_first_letter",
                             "same_first_letter"),
    "all_words_from_category": ("0_distractors", "1_distractors", "2_distractors"),
    "any_words_from_category": ("5_distractors", "4_distractors", "3_distractors"),
    "rhyming_word": ("orthographically_similar", "orthographically_different"),
    "more_letters": ("length_diff_3plus", "length_diff_1"),
    "less_letters": ("length_diff_3plus", "length_diff_1"),
}
ANALYSIS_TASKS: tuple[str, ...] = tuple(f"{task}_{variant}" for task, variants in ARGUMENT_CONTENT_GROUPS.items()
                                        for variant in variants)
ADJACENT_TASK_PAIRS: tuple[tuple[str, str], ...] = (
    ("bigger_number", "smaller_number"), ("more_letters", "less_letters"), ("word_after", "word_before"),
    ("most_associated_word", "least_associated_word"), ("any_words_from_category", "all_words_from_category"),
    ("sentence_containing", "sentence_not_containing"), ("word_containing", "word_not_containing"),
    ("starts_with_word", "starts_with_letter"), ("ends_with_word", "ends_with_letter"),
    ("sentence_containing", "word_containing"), ("sentence_not_containing", "word_not_containing"),
    ("first_word", "first_letter"), ("last_word", "last_letter"), ("starts_with_word", "ends_with_word"),
    ("starts_with_letter", "ends_with_letter"), ("first_word", "last_word"), ("first_letter", "last_letter"),
)
ALL_TASKS: tuple[str, ...] = CORE_TASKS + ANALYSIS_TASKS


@dataclass(frozen=True)
class Example:
    task: str
    id: str
    input: str
    metadata: dict[str, Any]


def base_task(task: str) -> str:
    """The core task whose scoring rule a task uses (an analysis variant uses its core task's)."""
    for core in sorted(CORE_TASKS, key=len, reverse=True):
        if task == core or task.startswith(core + "_"):
            return core
    raise ValueError(f"unknown LMentry task {task!r}")
def load_task(path: Path, limit: int | None = None) -> list[Example]:
    """A task file's examples; with ``limit``, taken round-robin over templates so each template keeps a share."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        examples = [Example(path.stem, str(key), value["input"], value["metadata"])
                    for key, value in data["examples"].items()]
        for example in examples:
            int(example.metadata["template_id"])
    except FileNotFoundError:
        raise ValueError(f"{path}: LMentry task file not found") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise ValueError(f"{path}: not an LMentry task file (missing or malformed {err})") from None
    if limit is None or limit >= len(examples):
        return examples
    by_template: dict[int, list[Example]] = defaultdict(list)
    for example in examples:
        by_template[example.metadata["template_id"]].append(example)
    queues = [by_template[t] for t in sorted(by_template)]
    picked: list[Example] = []
    for rank in range(max(len(q) for q in queues)):
        picked.extend(q[rank] for q in queues if rank < len(q))
    return picked[:limit]


def load_tasks(data_dir: str | Path, tasks: Sequence[str] | None = None,
               limit: int | None = None) -> dict[str, list[Example]]:
    """The named tasks (default: every LMentry task with a file in ``data_dir``); an unknown name fails before
    any file is read."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: LMentry data directory not found")
    names = list(tasks) if tasks is not None else [t for t in ALL_TASKS if (root / f"{t}.json").is_file()]
    if not names:
        raise ValueError(f"{root}: no LMentry task files (<task>.json)")
    for name in names:
        base_task(name)
    return {name: load_task(root / f"{name}.json", limit) for name in names}
