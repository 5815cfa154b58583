"""Super-NaturalInstructions, the paper's main benchmark: 119 unseen test tasks, zero-shot, scored by ROUGE-L.

What is official here, and where it comes from:

- **Data.** From a task-directory checkout of allenai/natural-instructions (or a hub copy that keeps every
  acceptable output of an instance; flat copies with one target string per row are refused, see
  ``SuperNIConfig.single_references``). Task files ``tasks/<task>.json`` (``Definition``, ``Positive Examples``,
  ``Instances`` with a list of acceptable ``output`` strings, ``Categories``, ``Output_language``) and the split
  ``splits/default/test_tasks.txt``. Per test task the *first* ``max_instances`` instances are used:
  the Tk-Instruct loader (``src/ni_dataset.py``) takes ``Instances[:100]`` because the curators put 100
  label-balanced instances first for reproducible evaluation.
- **Prompt.** ``template="tk"`` renders Tk-Instruct's ``DataCollatorForNI`` text (definition, optional positive
  examples, "Now complete the following example -", ``Input:``/``Output:``; stripped as its GPT-3 runner does).
  The default renders the same definition/examples as the instruction and the instance input as the input of the
  project's Alpaca template, which is what an Alpaca-tuned model (the paper's setting) is evaluated under.
- **Metrics.** Tk-Instruct's ``compute_metrics.py``: per instance, the best score over the acceptable outputs of
  rouge_score ``rougeL`` F-measure (Porter stemmer; for non-English outputs whitespace tokens, because
  rouge_score's default tokenizer drops every non-ASCII character) and exact match of ``normalise_answer``
  (its ``normalize_answer``: lower-cased, ASCII punctuation removed, whitespace collapsed; articles kept); the
  instance mean times 100.
  The later natural-instructions leaderboard tokenises non-English text with GPT-2's BPE instead; that needs a
  downloaded tokenizer, so whitespace is used, as the shared data README specifies.
"""

from __future__ import annotations

import json
import string
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator
from rouge_score import rouge_scorer

from rankers.llm.templates import TEMPLATES, format_prompt

GenerateFn = Callable[[list[str]], list[str]]
"""Prompts in, one greedy completion per prompt out (the caller owns the model and decoding)."""


def generate_all(generate_fn: GenerateFn, prompts: list[str]) -> list[str]:
    """Call ``generate_fn`` once for all prompts; a wrong number of completions is a bug in the caller's wiring."""
    completions = generate_fn(prompts)
    if len(completions) != len(prompts):
        raise ValueError(f"generate_fn returned {len(completions)} completions for {len(prompts)} prompts")
    return completions

HF_PREFIX = "hf:"


class SuperNIConfig(BaseModel):
    """Which Super-NaturalInstructions data to evaluate on and how to prompt for it."""

    model_config = ConfigDict(extra="forbid")

    source: str
    """A local natural-instructions checkout (``tasks/``, ``splits/``) or ``hf:DATASET_ID`` (cached locally)."""
    split_file: str = "splits/default/test_tasks.txt"
    """Local source: the task list, relative to ``source``."""
    hf_split: str = "test"
    """``hf:`` source: the dataset split holding the test tasks."""
    single_references: bool = False
    """Accept an ``hf:`` copy in the flat layout whose rows hold one ``targets`` string each. Such a copy may have
    dropped an instance's other acceptable outputs (the best-over-references score then reads lower than the
    official one) and its row order need not be the task files' balanced first 100, so it is refused unless
    this is set; rows that share a task and ``id`` are merged into one instance with all their targets."""
    tasks: list[str] | None = None
    """Evaluate only these tasks (default: every task of the split)."""
    max_instances: int = Field(default=100, ge=1)
    """Instances per task, taken from the start of the task's list (100 in the paper)."""
    num_pos_examples: int = Field(default=0, ge=0)
    """Demonstrations from the task's positive examples (0 = the paper's zero-shot setting)."""
    template: str = "alpaca"
    """``tk`` for Tk-Instruct's plain-text prompt, or a ``rankers.llm.templates`` name (``alpaca``, ``raw``)."""

    @field_validator("template")
    @classmethod
    def _known_template(cls, value: str) -> str:
        if value != "tk" and value not in TEMPLATES:
            raise ValueError(f"unknown template {value!r} (known: tk, {', '.join(TEMPLATES)})")
        return value


@dataclass(frozen=True)
class Instance:
    id: str
    input: str
    outputs: list[str]


@dataclass(frozen=True)
class Task:
    name: str
    definition: str
    positive_examples: list[dict[str, str]]
    category: str
    output_language: str
    instances: list[Instance]

    @property
    def xlingual(self) -> bool:
        """Non-English outputs are scored on whitespace tokens (the stemming tokenizer would erase them)."""
        return self.output_language.lower() != "english"


# ---------------------------------------------------------------------------------------------------- loading


def load_tasks(config: SuperNIConfig) -> list[Task]:
    """The configured test tasks, each cut to ``max_instances`` instances, in split-file order."""
    if config.source.startswith(HF_PREFIX):
        tasks = _load_hf(config.source[len(HF_PREFIX):], config.hf_split, config.max_instances,
                         config.single_references)
    else:
        tasks = _load_local(Path(config.source), config.split_file, config.tasks, config.max_instances)
    if config.tasks is not None:
        by_name = {t.name: t for t in tasks}
        missing = [name for name in config.tasks if name not in by_name]
        if missing:
            raise ValueError(f"{config.source}: no task(s) {', '.join(missing)}")
        tasks = [by_name[name] for name in config.tasks]
    return tasks


def _load_local(root: Path, split_file: str, only: list[str] | None, max_instances: int) -> list[Task]:
    if not root.is_dir():
        raise ValueError(f"{root}: Super-NaturalInstructions directory not found")
    if only is None:
        split_path = root / split_file
        if not split_path.is_file():
            raise ValueError(f"{split_path}: split file not found")
        names = [line.strip() for line in split_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        names = list(only)
    return [_read_task_file(root / "tasks" / f"{name}.json", max_instances) for name in names]


def _read_task_file(path: Path, max_instances: int) -> Task:
    if not path.is_file():
        raise ValueError(f"{path}: task file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Task(
            name=path.stem,
            definition=_first(data["Definition"]),
            positive_examples=[{"input": e["input"], "output": e["output"]} for e in data.get("Positive Examples", [])],
            category=_first(data.get("Categories") or ["unknown"]),
            output_language=_first(data.get("Output_language") or ["English"]),
            instances=[Instance(str(i["id"]), i["input"], _outputs(i["output"]))
                       for i in data["Instances"][:max_instances]],
        )
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(f"{path}: not a Super-NaturalInstructions task file (missing or malformed {err})") from None


def _load_hf(dataset_id: str, split: str, max_instances: int, single_references: bool = False) -> list[Task]:
    """Rows of a Hugging Face copy, one instance per row, grouped into tasks in first-seen order.

    Two row layouts are published: the Tk-Instruct builder's (``Task``, ``Definition``, ``Instance``,
    ``Categories``, ``Output_language``, ``Positive Examples``), which keeps every acceptable output, and the
    flat one (``task_name``, ``definition``, ``inputs``, ``targets``) without categories or languages, which
    then count as ``unknown`` and English. A flat copy whose ``targets`` are single strings needs
    ``single_references`` (see ``SuperNIConfig``); its rows sharing a task and ``id`` become one instance.
    """
    import datasets

    try:
        rows: Iterable[dict[str, Any]] = datasets.load_dataset(dataset_id, split=split)
    except Exception as err:  # noqa: BLE001 - any loading failure is a wrong dataset reference
        raise ValueError(f"hf:{dataset_id} (split {split}): cannot load dataset "
                         f"({type(err).__name__}: {err})") from None
    grouped: dict[str, dict[str, Any]] = {}
    for index, row in enumerate(rows):
        try:
            flat = "Instance" not in row
            name = row["task_name"] if flat else row["Task"]
            task = grouped.setdefault(name, {
                "definition": _first(row["definition"] if flat else row["Definition"]),
                "positive_examples": [] if flat else [{"input": e["input"], "output": e["output"]}
                                                      for e in row.get("Positive Examples") or []],
                "category": "unknown" if flat else _first(row.get("Categories") or ["unknown"]),
                "output_language": "English" if flat else _first(row.get("Output_language") or ["English"]),
                "instances": [],
            })
            instance = row if flat else row["Instance"]
            outputs = instance["targets"] if flat else instance["output"]
            if isinstance(outputs, str) and not single_references:
                raise ValueError(
                    f"hf:{dataset_id}: row {index} holds one target string, so other acceptable outputs may be "
                    f"missing and the balanced first-100 subset cannot be checked; use a task-directory checkout "
                    f"of allenai/natural-instructions (source: DIR) or set single_references: true")
            key = str(row.get("id", f"{name}-{index}"))
            same = next((i for i in task["instances"] if i.id == key), None)
            if same is not None:  # another row of the same instance: one more acceptable output
                same.outputs.extend(o for o in _outputs(outputs) if o not in same.outputs)
            elif len(task["instances"]) < max_instances:
                task["instances"].append(Instance(key, instance["inputs"] if flat else instance["input"],
                                                  _outputs(outputs)))
        except (KeyError, IndexError, TypeError) as err:
            raise ValueError(f"hf:{dataset_id}: row {index} is not a Super-NaturalInstructions instance "
                             f"(missing or malformed {err})") from None
    return [Task(name=name, **fields) for name, fields in grouped.items()]


def _first(value: str | Sequence[str]) -> str:
    """Task files hold most fields as one-element lists; the Tk-Instruct collator uses the first element."""
    return value if isinstance(value, str) else str(value[0])


def _outputs(value: str | Sequence[str]) -> list[str]:
    outputs = [value] if isinstance(value, str) else [str(v) for v in value]
    if not outputs:
        raise TypeError("'output' (empty list of acceptable outputs)")
    return outputs


# ---------------------------------------------------------------------------------------------------- prompts


def _end_with_punctuation(text: str) -> str:
    """Tk-Instruct appends a period to a field that does not already end in punctuation."""
    text = text.strip()
    return text if text and text[-1] in string.punctuation else text + "."


def _instruction(task: Task, num_pos_examples: int) -> str:
    """The task definition followed by up to ``num_pos_examples`` demonstrations, in Tk-Instruct's wording."""
    blocks = [f"Definition: {_end_with_punctuation(task.definition)}"]
    for k, example in enumerate(task.positive_examples[:num_pos_examples], 1):
        blocks.append(f" Positive Example {k} -\nInput: {_end_with_punctuation(example['input'])}\n"
                      f" Output: {_end_with_punctuation(example['output'])}")
    return "\n\n".join(blocks)


def instance_prompt(task: Task, instance: Instance, num_pos_examples: int = 0, template: str = "alpaca") -> str:
    """The model-facing prompt for one instance (see the module docstring for the two formats)."""
    instruction = _instruction(task, num_pos_examples)
    if template == "tk":
        return (f"{instruction}\n\nNow complete the following example -\n"
                f"Input: {_end_with_punctuation(instance.input)}\nOutput:")
    return format_prompt(instruction, instance.input.strip(), template)


# ---------------------------------------------------------------------------------------------------- metrics


def normalise_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, collapse whitespace (SQuAD's normaliser without article removal)."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(text.split())


class _WhitespaceTokenizer:
    """Tokens for non-English text: split on whitespace, nothing removed (rouge_score's ``tokenize`` interface)."""

    def tokenize(self, text: str) -> list[str]:
        return text.split()


@lru_cache(maxsize=2)
def _scorer(xlingual: bool) -> rouge_scorer.RougeScorer:
    if xlingual:
        return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_WhitespaceTokenizer())
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str, xlingual: bool = False) -> float:
    """ROUGE-L F-measure in [0, 1]."""
    return _scorer(xlingual).score(target=reference, prediction=prediction)["rougeL"].fmeasure


def score_instance(prediction: str, references: Sequence[str], xlingual: bool = False) -> tuple[float, float]:
    """(ROUGE-L, exact match), each in [0, 1] and the best over the acceptable references."""
    if not references:
        raise ValueError("an instance needs at least one reference output")
    rouge = max(rouge_l(prediction, ref, xlingual) for ref in references)
    em = float(any(normalise_answer(prediction) == normalise_answer(ref) for ref in references))
    return rouge, em


def _aggregate(scores: Sequence[tuple[float, float]]) -> dict[str, float]:
    n = len(scores)
    return {"rougeL": 100.0 * sum(s[0] for s in scores) / n, "exact_match": 100.0 * sum(s[1] for s in scores) / n}


def compute_metrics(predictions: list[str], references: list[list[str]], xlingual: bool = False) -> dict[str, float]:
    """Mean ``rougeL`` and ``exact_match`` over instances, on a 0-100 scale."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} reference lists")
    if not predictions:
        raise ValueError("no predictions to score")
    return _aggregate([score_instance(p, refs, xlingual) for p, refs in zip(predictions, references)])


def _group_metrics(scores: Sequence[tuple[float, float]]) -> dict[str, float]:
    return {**_aggregate(scores), "n": len(scores)}


# ---------------------------------------------------------------------------------------------------- evaluation


def evaluate(generate_fn: GenerateFn, config: SuperNIConfig) -> dict[str, Any]:
    """Generate for every instance and score it: overall, per task, per category, and every prediction.

    Overall and per-category numbers are means over instances, as in Tk-Instruct (each test task has the same
    number of instances, so this also equals the task macro-average there).
    """
    tasks = load_tasks(config)
    pairs = [(task, instance) for task in tasks for instance in task.instances]
    if not pairs:
        raise ValueError(f"{config.source}: no instances to evaluate")
    prompts = [instance_prompt(task, inst, config.num_pos_examples, config.template) for task, inst in pairs]
    predictions = generate_all(generate_fn, prompts)
    scores = [score_instance(pred, inst.outputs, task.xlingual)
              for pred, (task, inst) in zip(predictions, pairs)]
    by_task: dict[str, list[tuple[float, float]]] = defaultdict(list)
    by_category: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for score, (task, _) in zip(scores, pairs):
        by_task[task.name].append(score)
        by_category[task.category].append(score)
    task_info = {t.name: t for t in tasks}
    return {
        "overall": {**_group_metrics(scores), "tasks": len(tasks)},
        "per_task": {name: {**_group_metrics(s), "category": task_info[name].category,
                            "xlingual": task_info[name].xlingual} for name, s in by_task.items()},
        "per_category": {name: _group_metrics(s) for name, s in sorted(by_category.items())},
        "predictions": [{"task": task.name, "id": inst.id, "prediction": pred, "references": inst.outputs,
                         "rougeL": 100.0 * score[0], "exact_match": 100.0 * score[1]}
                        for pred, (task, inst), score in zip(predictions, pairs, scores)],
    }


def summarize(result: dict[str, Any]) -> dict[str, float]:
    """The flat numbers for a run report's ``models[name]``."""
    return {"superni_rougeL": result["overall"]["rougeL"], "superni_exact_match": result["overall"]["exact_match"]}
