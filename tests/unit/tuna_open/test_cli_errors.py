"""Issue #20: a user's mistake or a machine's broken state is one ``error:`` line and exit 2, never a traceback,
and nothing finished is lost. One test per defect; each failed (a traceback or a silent success) before its fix."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import yaml
from helpers.cli import invoke, one_error

DATA = {"p": {"source": "builtin:tasks", "split": "train", "limit": 2}}
INIT = {"name": "init", "kind": "init_model", "vocab_size": 320, "tokenizer_corpus": 200}
RECIPE = {"name": "tiny", "data": DATA, "stages": [INIT]}


def write_recipe(tmp_path: Path, recipe: dict | str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(recipe if isinstance(recipe, str) else yaml.safe_dump(recipe))
    return path


def validate(tmp_path: Path, recipe: dict | str, *extra: str) -> tuple[int, str]:
    return invoke("validate", str(write_recipe(tmp_path, recipe)), *extra)


@pytest.fixture()
def finished_run(tmp_path: Path) -> Path:
    code, out = invoke("run", str(write_recipe(tmp_path, RECIPE)), "--run-dir", str(tmp_path / "run"))
    assert code == 0, out
    return tmp_path / "run"


def test_validate_with_a_pool_of_base_urls(tmp_path: Path) -> None:
    sampler = {"backend": "openai", "openai": {"base_url": ["http://127.0.0.1:9/v1", "http://127.0.0.1:8/v1"]}}
    recipe = {"name": "v", "data": DATA, "stages": [
        {"name": "s", "kind": "sample", "model": "some/model", "data": "p", "n": 2, "sampler": sampler}]}
    code, out = validate(tmp_path, recipe)
    assert code == 0 and out.startswith("ok:"), out
    one_error(*validate(tmp_path, recipe, "--check-endpoints"), "127.0.0.1:9", "127.0.0.1:8")


def test_report_on_a_read_only_run_dir(finished_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tuna_open.pipeline.report as report

    def read_only(path: object, text: str) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(report, "atomic_write_text", read_only)
    one_error(*invoke("report", str(finished_run)), "Read-only file system", "report.json")


def test_a_torn_manifest_is_named_by_run_and_report(finished_run: Path, tmp_path: Path) -> None:
    manifest = finished_run / "stages/init/manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    one_error(*invoke("report", str(finished_run)), "manifest.json", "damaged manifest")
    one_error(*invoke("run", str(tmp_path / "r.yaml"), "--run-dir", str(finished_run)), "damaged manifest")
    assert (finished_run / "stages/init/model").is_dir()  # nothing deleted


def test_report_with_an_invalid_recipe_json(finished_run: Path) -> None:
    (finished_run / "recipe.json").write_text(json.dumps({"name": "x"}))
    one_error(*invoke("report", str(finished_run)), "recipe.json", "stages")


def test_disk_full_while_saving_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import PreTrainedModel

    def full(self: object, path: str, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", f"{path}/model.safetensors")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    one_error(*invoke("run", str(write_recipe(tmp_path, RECIPE)), "--run-dir", str(tmp_path / "run")),
              "No space left on device", "run the same command again")
    stage = tmp_path / "run/stages/init"
    assert not (stage / "manifest.json").exists() and not list(stage.glob(".*.tmp"))


@pytest.mark.parametrize("trainer_args", [{"dataloader_num_workers": "two"}, {"dataloader_drop_last": "maybe"}])
def test_trainer_args_of_the_wrong_type(tmp_path: Path, tiny_model_dir: Path, trainer_args: dict) -> None:
    recipe = {"name": "t", "data": DATA, "stages": [
        {"name": "sft", "kind": "sft", "model": str(tiny_model_dir), "data": "p",
         "train": {"trainer_args": trainer_args}}]}
    one_error(*validate(tmp_path, recipe, "--schema-only"), f"trainer_args.{next(iter(trainer_args))}")


@pytest.mark.parametrize("seed", [2**40, -1])  # 1e23 itself was already refused (beyond a 64-bit int)
def test_a_seed_out_of_range(tmp_path: Path, seed: object) -> None:
    one_error(*validate(tmp_path, {**RECIPE, "seed": seed}, "--schema-only"), "seed")


def test_a_candidate_count_beyond_any_judge_prompt(tmp_path: Path) -> None:
    """#20: ``n`` had no upper bound, so a typo validated and then exhausted memory while sampling."""
    recipe = {"name": "t", "data": DATA, "stages": [
        {"name": "s", "kind": "sample", "model": "smollm2-135m-instruct", "data": "p", "n": 40000}]}
    one_error(*validate(tmp_path, recipe, "--schema-only"), "n", "1024")


def test_a_local_model_path_that_does_not_exist(tmp_path: Path) -> None:
    recipe = {"name": "t", "data": DATA, "stages": [{"name": "sft", "kind": "sft", "model": "./nope", "data": "p"}]}
    one_error(*validate(tmp_path, recipe, "--schema-only"), "./nope", "sft")


def test_export_of_torn_records(ranked_run: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(ranked_run, tmp_path / "run", symlinks=True))
    records = run / "stages/rankings/records.jsonl"
    records.write_text(records.read_text()[:-20])
    one_error(*invoke("export", str(run), "rankings", "--format", "sft", "--output", str(tmp_path / "d")),
              "records.jsonl:")


def test_agree_given_a_candidates_file(ranked_run: Path) -> None:
    one_error(*invoke("agree", str(ranked_run / "stages/samples/records.jsonl"),
                      str(ranked_run / "stages/rankings/records.jsonl")), "records.jsonl:1", "order")


def test_duplicate_keys_in_a_recipe_name_both_lines(tmp_path: Path) -> None:
    text = "name: a\nstages: []\ndata: {}\nstages:\n  - {name: x, kind: init_model}\n"
    one_error(*validate(tmp_path, text, "--schema-only"), "r.yaml:4:1", "duplicate key 'stages'", "line 2")


def test_alias_bombs_and_huge_files_are_refused(tmp_path: Path) -> None:
    lines = ["name: x", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    one_error(*validate(tmp_path, "\n".join([*lines, "stages: []"]) + "\n", "--schema-only"), "aliases")
    one_error(*validate(tmp_path, "name: &a [*a]\nstages: []\n", "--schema-only"), "recursive")
    one_error(*validate(tmp_path, "name: x\n" + "#" * 5_000_000 + "\nstages: []\n", "--schema-only"), "bytes")


def test_an_environment_variable_with_a_bad_value_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNA_PROGRESS_INTERVAL", "abc")
    recipe = {"name": "t", "data": DATA, "stages": [
        INIT, {"name": "s", "kind": "sample", "model": "@init", "data": "p", "n": 2, "max_new_tokens": 2,
               "dedup": False, "min_candidates": 1}]}
    one_error(*invoke("run", str(write_recipe(tmp_path, recipe)), "--run-dir", str(tmp_path / "run")),
              "TUNA_PROGRESS_INTERVAL", "abc")


def test_a_recipe_that_is_a_directory_says_so(tmp_path: Path) -> None:
    """It said 'recipe file not found' of a path that exists."""
    (tmp_path / "r.yaml").mkdir()
    one_error(*invoke("validate", str(tmp_path / "r.yaml")), "is a directory")


def test_a_recipe_ranker_cache_dir_that_is_a_file_fails_at_validate(tmp_path: Path) -> None:
    """It failed at the rank stage's first cache write: after the run had sampled and the judge had been paid."""
    (tmp_path / "cache").write_text("")
    ranker = {"backend": "function", "cache_dir": str(tmp_path / "cache"),
              "function": {"callable": "tuna_open.builtin.tasks:score_request"}}
    one_error(*validate(tmp_path, {**RECIPE, "ranker": ranker}, "--schema-only"), "cache_dir", "is a file")


def test_a_missing_benchmark_directory_fails_before_any_model_loads(tmp_path: Path, tiny_model_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """--lmentry /nonexistent validated, and the run loaded every model before finding out."""
    import transformers

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_loading)
    code, out = invoke("eval", "--model", f"a={tiny_model_dir}", "--lmentry", str(tmp_path / "nope"),
                       "--run-dir", str(tmp_path / "run"))
    one_error(code, out, "lmentry.data_dir", "not found")
    recipe = {"name": "e", "stages": [{"name": "eval", "kind": "eval", "models": {"a": str(tiny_model_dir)},
                                       "lmentry": {"data_dir": "nope"}}]}
    code, out = validate(tmp_path, recipe)
    one_error(code, out, "lmentry.data_dir")
    assert validate(tmp_path, recipe, "--schema-only")[0] == 0  # benchmark files are per machine


def test_report_on_a_users_folder_with_a_recipe_json_writes_nothing(finished_run: Path, tmp_path: Path) -> None:
    """It overwrote the folder's report.md; only a run dir (marked, or an older run's lock) gets a report."""
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(finished_run / "recipe.json", mine / "recipe.json")
    (mine / "report.md").write_text("my report")
    one_error(*invoke("report", str(mine)), "not a tuna-open run directory")
    assert (mine / "report.md").read_text() == "my report"
