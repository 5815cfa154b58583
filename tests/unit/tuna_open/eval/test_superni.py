"""Super-NaturalInstructions: the official metric on tricky inputs, the loader, the prompts, and evaluate()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from tuna_open.eval.superni import (
    SuperNIConfig,
    compute_metrics,
    evaluate,
    instance_prompt,
    load_tasks,
    normalise_answer,
    rouge_l,
    summarize,
)

# ---------------------------------------------------------------------------------------------------- metric


def test_case_punctuation_and_whitespace_do_not_matter_for_exact_match() -> None:
    assert normalise_answer("  The  Answer,\tis: 'Yes'! ") == "the answer is yes"
    metrics = compute_metrics(["The answer is YES!"], [["the answer is yes"]])
    assert metrics == {"rougeL": 100.0, "exact_match": 100.0}


def test_articles_are_kept_so_they_break_exact_match_but_not_rouge_entirely() -> None:
    metrics = compute_metrics(["a cat"], [["cat"]])
    assert metrics["exact_match"] == 0.0
    assert metrics["rougeL"] == pytest.approx(100 * 2 * (1 / 2 * 1) / (1 / 2 + 1))  # P=1/2, R=1


def test_rouge_l_is_the_lcs_f_measure() -> None:
    # LCS of "the cat sat on the mat" / "the cat is on the mat" is "the cat on the mat": P = R = 5/6.
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)


def test_english_rouge_uses_the_porter_stemmer() -> None:
    assert rouge_l("Running cats", "run cat") == pytest.approx(1.0)
    assert compute_metrics(["Running cats"], [["run cat"]])["exact_match"] == 0.0


def test_best_reference_counts() -> None:
    metrics = compute_metrics(["positive", "blue sky"], [["negative", "Positive."], ["red sea", "the blue sky"]])
    assert metrics["exact_match"] == 50.0
    assert metrics["rougeL"] == pytest.approx((100 + 100 * 0.8) / 2)  # second: P=1, R=2/3 -> F=0.8


def test_empty_prediction_scores_zero() -> None:
    assert compute_metrics(["", "   "], [["yes"], ["no"]]) == {"rougeL": 0.0, "exact_match": 0.0}


def test_non_english_needs_the_xlingual_whitespace_tokens() -> None:
    pred, ref = "Привет, мир", "Привет, мир"
    assert compute_metrics([pred], [[ref]], xlingual=True)["rougeL"] == 100.0
    # rouge_score's default tokenizer keeps only [a-z0-9]: every Cyrillic token vanishes.
    assert compute_metrics([pred], [[ref]])["rougeL"] == 0.0
    assert compute_metrics(["мир привет"], [["привет мир"]], xlingual=True)["rougeL"] == pytest.approx(50.0)


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1"):
        compute_metrics(["a", "b"], [["a"]])


# ---------------------------------------------------------------------------------------------------- fake data


def _task(definition: str, instances: list[tuple[str, list[str]]], category: str = "Question Answering",
          language: str = "English") -> dict:
    return {
        "Definition": [definition],
        "Positive Examples": [{"input": "2 + 2", "output": "4", "explanation": "sum"},
                              {"input": "1 + 1?", "output": "2.", "explanation": "sum"}],
        "Negative Examples": [{"input": "3 + 3", "output": "7", "explanation": "wrong"}],
        "Categories": [category],
        "Input_language": [language], "Output_language": [language], "Instruction_language": ["English"],
        "Instances": [{"id": f"i{k}", "input": inp, "output": outs} for k, (inp, outs) in enumerate(instances)],
    }


@pytest.fixture()
def ni_dir(tmp_path: Path) -> Path:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "splits" / "default").mkdir(parents=True)
    tasks = {
        "task001_add": _task("Add the two numbers", [("3 + 4", ["7", "seven"]), ("5 + 5", ["10"]), ("9 + 0", ["9"])],
                             category="Arithmetic"),
        "task002_yesno": _task("Answer yes or no.", [("Is water wet?", ["Yes"]), ("Is fire cold?", ["No"])],
                               category="Question Answering"),
        "task003_es": _task("Traduce al español", [("good morning", ["buenos días"]), ("thank you", ["gracias"])],
                            category="Translation", language="Spanish"),
        "task999_train_only": _task("unused", [("x", ["y"])]),
    }
    for name, data in tasks.items():
        (tmp_path / "tasks" / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")
    (tmp_path / "splits" / "default" / "test_tasks.txt").write_text("task001_add\ntask002_yesno\ntask003_es\n")
    return tmp_path


def test_loader_reads_the_split_and_takes_the_first_instances(ni_dir: Path) -> None:
    tasks = load_tasks(SuperNIConfig(source=str(ni_dir), max_instances=2))
    assert [t.name for t in tasks] == ["task001_add", "task002_yesno", "task003_es"]
    add = tasks[0]
    assert [i.id for i in add.instances] == ["i0", "i1"] and add.instances[0].outputs == ["7", "seven"]
    assert add.category == "Arithmetic" and not add.xlingual and tasks[2].xlingual
    only = load_tasks(SuperNIConfig(source=str(ni_dir), tasks=["task003_es"]))
    assert [t.name for t in only] == ["task003_es"]


def test_tk_prompt_is_tk_instructs_text(ni_dir: Path) -> None:
    task = load_tasks(SuperNIConfig(source=str(ni_dir)))[0]
    assert instance_prompt(task, task.instances[0], template="tk") == (
        "Definition: Add the two numbers.\n\nNow complete the following example -\nInput: 3 + 4.\nOutput:")
    assert instance_prompt(task, task.instances[0], num_pos_examples=2, template="tk") == (
        "Definition: Add the two numbers.\n\n"
        " Positive Example 1 -\nInput: 2 + 2.\n Output: 4.\n\n"
        " Positive Example 2 -\nInput: 1 + 1?\n Output: 2.\n\n"
        "Now complete the following example -\nInput: 3 + 4.\nOutput:")


def test_alpaca_prompt_puts_the_definition_in_the_instruction(ni_dir: Path) -> None:
    task = load_tasks(SuperNIConfig(source=str(ni_dir)))[1]
    prompt = instance_prompt(task, task.instances[0])
    assert "### Instruction:\nDefinition: Answer yes or no.\n\n### Input:\nIs water wet?\n\n### Response:\n" in prompt


def test_evaluate_scores_per_task_category_and_language(ni_dir: Path) -> None:
    answers = {"3 + 4": "Seven.", "5 + 5": "ten", "9 + 0": "9", "Is water wet?": "yes", "Is fire cold?": "Yes",
               "good morning": "buenos días", "thank you": "muchas gracias"}
    seen: list[str] = []

    def generate(prompts: list[str]) -> list[str]:
        seen.extend(prompts)
        return [answers[p.split("Input: ")[1].split("\n")[0].rstrip(".")] for p in prompts]

    result = evaluate(generate, SuperNIConfig(source=str(ni_dir), template="tk"))
    assert len(seen) == 7
    per_task = result["per_task"]
    assert per_task["task001_add"]["exact_match"] == pytest.approx(200 / 3)  # "Seven." matches "seven"
    assert per_task["task002_yesno"]["exact_match"] == 50.0
    es = per_task["task003_es"]
    assert es["xlingual"] and es["exact_match"] == 50.0
    assert es["rougeL"] == pytest.approx((100 + 100 * 2 / 3) / 2)  # "muchas gracias" vs "gracias": P=1/2, R=1
    assert result["overall"]["n"] == 7
    assert result["overall"]["exact_match"] == pytest.approx(100 * 4 / 7)
    assert set(result["per_category"]) == {"Arithmetic", "Question Answering", "Translation"}
    assert result["predictions"][0] == {"task": "task001_add", "id": "i0", "prediction": "Seven.",
                                        "references": ["7", "seven"], "rougeL": 100.0, "exact_match": 100.0}
    assert summarize(result) == {"superni_rougeL": result["overall"]["rougeL"],
                                 "superni_exact_match": result["overall"]["exact_match"]}


def test_generate_fn_returning_the_wrong_count_is_an_error(ni_dir: Path) -> None:
    with pytest.raises(ValueError, match="returned 1 completions for 7 prompts"):
        evaluate(lambda prompts: ["x"], SuperNIConfig(source=str(ni_dir)))


def test_user_mistakes_name_the_file(ni_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nowhere: Super-NaturalInstructions directory not found"):
        load_tasks(SuperNIConfig(source=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match=r"task404\.json: task file not found"):
        load_tasks(SuperNIConfig(source=str(ni_dir), tasks=["task404"]))
    (ni_dir / "tasks" / "task001_add.json").write_text('{"Definition": ["x"],\n "Instances": [}')
    with pytest.raises(ValueError, match=r"task001_add\.json:2: invalid JSON"):
        load_tasks(SuperNIConfig(source=str(ni_dir)))
    (ni_dir / "tasks" / "task001_add.json").write_text('{"Definition": ["x"]}')
    with pytest.raises(ValueError, match=r"task001_add\.json: not a Super-NaturalInstructions task file .*Instances"):
        load_tasks(SuperNIConfig(source=str(ni_dir)))
    with pytest.raises(ValidationError, match="unknown template 'chatml'"):
        SuperNIConfig(source=str(ni_dir), template="chatml")
    with pytest.raises(ValidationError, match="Extra inputs"):
        SuperNIConfig(source=str(ni_dir), max_instance=3)


def test_hf_source_groups_rows_into_tasks(tmp_path: Path) -> None:
    """The ``hf:`` path through ``datasets.load_dataset`` on a local data directory (no hub access)."""
    rows = [{"task_name": "task1", "id": f"t1-{k}", "definition": ["Copy the input."], "inputs": f"w{k}",
             "targets": f"w{k}"} for k in range(3)]
    rows.append({"task_name": "task2", "id": "t2-0", "definition": "Say hi.", "inputs": "x", "targets": "hi"})
    rows.insert(1, {**rows[0], "targets": "w0 again"})  # a second acceptable output of t1-0, on its own row
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="row 0 holds one target string.*single_references"):
        load_tasks(SuperNIConfig(source=f"hf:{tmp_path}"))
    tasks = load_tasks(SuperNIConfig(source=f"hf:{tmp_path}", max_instances=2, single_references=True))
    assert [(t.name, len(t.instances)) for t in tasks] == [("task1", 2), ("task2", 1)]
    assert tasks[0].definition == "Copy the input." and tasks[0].instances[1].outputs == ["w1"]
    assert tasks[0].instances[0].outputs == ["w0", "w0 again"]
    assert tasks[1].category == "unknown" and not tasks[1].xlingual


def test_hf_source_with_target_lists_keeps_every_reference(tmp_path: Path) -> None:
    rows = [{"task_name": "task1", "id": f"t1-{k}", "definition": "Copy.", "inputs": f"w{k}",
             "targets": [f"w{k}", f"W{k}!"]} for k in range(2)]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    [task] = load_tasks(SuperNIConfig(source=f"hf:{tmp_path}"))
    assert [i.outputs for i in task.instances] == [["w0", "W0!"], ["w1", "W1!"]]


def test_official_subset_is_the_first_100_instances_with_every_reference(ni_dir: Path) -> None:
    """A task file of 150 instances, as published: the curators' balanced 100 come first (Tk-Instruct's
    ``all_instances[:100]``); each keeps its whole ``output`` list, and the zero-shot prompt is definition + input."""
    instances = [(f"q{k}", [f"a{k}", f"alt{k}", f"third{k}"]) for k in range(150)]
    (ni_dir / "tasks" / "task050_big.json").write_text(json.dumps(_task("Answer the question", instances)))
    (ni_dir / "splits" / "default" / "test_tasks.txt").write_text("task050_big\ntask001_add\n")
    result = evaluate(lambda prompts: [p.split("### Input:\n")[1].split("\n")[0].replace("q", "third")
                                       for p in prompts], SuperNIConfig(source=str(ni_dir)))
    big = [p for p in result["predictions"] if p["task"] == "task050_big"]
    assert [p["id"] for p in big] == [f"i{k}" for k in range(100)]
    assert all(p["exact_match"] == 100.0 and len(p["references"]) == 3 for p in big)  # the third reference counts
    assert result["overall"]["tasks"] == 2 and result["per_task"]["task050_big"]["n"] == 100
