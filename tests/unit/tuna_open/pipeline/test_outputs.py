"""Issue #20: no command deletes or overwrites what it was not asked to write, and nothing is paid for a command
that then fails on its output. One test per defect; each failed before its fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from helpers import score_functions
from helpers.cli import invoke, one_error

from tuna_open.data.jsonl import write_jsonl
from tuna_open.errors import UserError

CANDIDATES = [{"id": str(i), "instruction": f"q{i}", "candidates": ["a", "bb", "ccc"]} for i in range(3)]


@pytest.fixture()
def run_copy(ranked_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run: these tests try to destroy it."""
    return Path(shutil.copytree(ranked_run, tmp_path / "run", symlinks=True))


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def export(run: Path, output: str | Path) -> tuple[int, str]:
    return invoke("export", str(run), "rankings", "--format", "sft", "--output", str(output))


def test_export_into_the_run_dir_is_refused(run_copy: Path) -> None:
    before = snapshot(run_copy)
    one_error(*export(run_copy, run_copy), "overwrite its input")
    one_error(*export(run_copy, run_copy / "stages" / "samples"), "overwrite its input")
    assert snapshot(run_copy) == before


def test_export_over_a_users_folder_is_refused(run_copy: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    one_error(*export(run_copy, folder), "not written by tuna-open")
    assert (folder / "notes.txt").read_text() == "mine"


def test_export_over_a_file_is_refused(run_copy: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("keep")
    one_error(*export(run_copy, tmp_path / "f"), "not a directory")
    assert (tmp_path / "f").read_text() == "keep" and not (tmp_path / ".f.old").exists()


def test_outputs_under_a_file_are_refused(run_copy: Path, tmp_path: Path) -> None:
    """A NotADirectoryError traceback from export and run; rank blamed a 'run dir'."""
    (tmp_path / "notes.txt").write_text("")
    one_error(*export(run_copy, tmp_path / "notes.txt" / "d"), "notes.txt is a file")
    one_error(*rank(tmp_path, tmp_path / "notes.txt" / "r.jsonl"), "notes.txt is a file")
    one_error(*run_cmd(tmp_path, "--run-dir", str(tmp_path / "notes.txt" / "run")), "notes.txt is a file")


def test_export_to_the_current_directory_is_refused(run_copy: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    one_error(*export(run_copy, "."), "current directory")


def test_export_replaces_its_own_earlier_export(run_copy: Path, tmp_path: Path) -> None:
    assert export(run_copy, tmp_path / "d")[0] == 0
    code, out = export(run_copy, tmp_path / "d")
    assert code == 0, out


def ranker(tmp_path: Path, **extra: object) -> Path:
    cfg = tmp_path / "ranker.yaml"
    cfg.write_text(yaml.safe_dump({"backend": "function", **extra,
                                   "function": {"callable": "helpers.score_functions:counted"}}))
    return cfg


def rank(tmp_path: Path, output: Path, cfg: Path | None = None, *extra: str) -> tuple[int, str]:
    write_jsonl(tmp_path / "c.jsonl", CANDIDATES)
    score_functions.CALLS.clear()
    return invoke("rank", "--ranker", str(cfg or ranker(tmp_path)), "--input", str(tmp_path / "c.jsonl"),
                  "--output", str(output), *extra)


def test_rank_output_equal_to_input_is_refused(tmp_path: Path) -> None:
    one_error(*rank(tmp_path, tmp_path / "c.jsonl"), "overwrite its input")
    assert score_functions.CALLS == [] and (tmp_path / "c.jsonl").read_text().count("\n") == 3


def test_rank_output_named_like_its_viewer_is_refused(tmp_path: Path) -> None:
    one_error(*rank(tmp_path, tmp_path / "r.html"), "r.html")
    assert score_functions.CALLS == []


def test_rank_output_an_existing_directory_fails_before_paying(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    one_error(*rank(tmp_path, tmp_path / "out"), "is a directory")
    assert score_functions.CALLS == []


def test_rank_cache_dir_a_file_fails_before_paying(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("")
    one_error(*rank(tmp_path, tmp_path / "r.jsonl", ranker(tmp_path, cache_dir=str(tmp_path / "cache"))),
              "cache_dir")
    assert score_functions.CALLS == []


def test_rank_takes_a_lock_on_its_output(tmp_path: Path) -> None:
    from tuna_open.pipeline.integrity import RunDirLock

    with RunDirLock(tmp_path, ".r.jsonl.lock"):
        one_error(*rank(tmp_path, tmp_path / "r.jsonl"), "in use by another run")
    assert score_functions.CALLS == []
    assert rank(tmp_path, tmp_path / "r.jsonl")[0] == 0 and len(score_functions.CALLS) == 3


def test_rank_into_a_run_dir_takes_the_runs_lock(tmp_path: Path) -> None:
    from tuna_open.pipeline.integrity import RunDirLock
    from tuna_open.pipeline.outputs import RUN_MARKER, mark

    run = tmp_path / "run"
    mark(run, RUN_MARKER)
    with RunDirLock(run):  # a 'run' of that directory in progress
        one_error(*rank(tmp_path, run / "extra" / "r.jsonl"), "in use by another run")
    assert score_functions.CALLS == []


def test_rank_batch_size_must_be_positive(tmp_path: Path) -> None:
    for size in ("0", "-1"):
        code, out = rank(tmp_path, tmp_path / "r.jsonl", None, "--batch-size", size)
        one_error(code, out, "--batch-size", size)  # #20: was click's three-line usage block
        assert len(out.strip().splitlines()) == 1, out
        assert not (tmp_path / "r.jsonl").exists()


def test_rank_leaves_no_lock_file_in_a_users_folder(tmp_path: Path) -> None:
    """#20: every ``rank`` outside a run dir left a hidden ``.NAME.lock`` beside its output."""
    assert rank(tmp_path, tmp_path / "r.jsonl")[0] == 0
    assert not (tmp_path / ".r.jsonl.lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_transient_lock_removed_by_its_holder_is_not_taken_on_the_removed_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiter that opened the lock file just before its holder removed it must lock the file now at the path:
    locked on the removed file, it would share "the" lock with a third process that creates a fresh one."""
    from tuna_open.pipeline import integrity
    from tuna_open.pipeline.integrity import RunDirLock

    holder = RunDirLock(tmp_path, ".r.lock", transient=True)
    holder.acquire()
    real_flock = integrity.fcntl.flock
    calls = []

    def holder_releases_first(fd: int, op: int) -> None:
        if not calls:
            holder.release()  # between the waiter's open and its flock
        calls.append(fd)
        real_flock(fd, op)

    monkeypatch.setattr(integrity.fcntl, "flock", holder_releases_first)
    waiter = RunDirLock(tmp_path, ".r.lock", transient=True)
    waiter.acquire()
    monkeypatch.setattr(integrity.fcntl, "flock", real_flock)
    assert len(calls) == 2  # the removed file, then the one at the path
    with pytest.raises(UserError, match="in use"):
        RunDirLock(tmp_path, ".r.lock").acquire()
    waiter.release()
    assert not (tmp_path / ".r.lock").exists()


RECIPE = {"name": "tiny", "data": {"p": {"source": "builtin:tasks", "split": "train", "limit": 2}},
          "stages": [{"name": "init", "kind": "init_model", "vocab_size": 320, "tokenizer_corpus": 200}]}


def run_cmd(tmp_path: Path, *extra: str, recipe: dict | None = None) -> tuple[int, str]:
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe or RECIPE))
    return invoke("run", str(tmp_path / "r.yaml"), *extra)


def test_run_dir_that_is_a_users_folder_is_refused(tmp_path: Path) -> None:
    mine = tmp_path / "thesis"
    (mine / "stages" / "init").mkdir(parents=True)
    (mine / "stages" / "init" / "thesis.tex").write_text("chapter 1")
    (mine / "report.md").write_text("my report")
    before = snapshot(mine)
    one_error(*run_cmd(tmp_path, "--run-dir", str(mine)), "not written by tuna-open")
    one_error(*run_cmd(tmp_path, "--run-dir", str(mine), "--dry-run"), "not written by tuna-open")
    assert snapshot(mine) == before


def test_a_run_dir_from_before_the_marker_is_still_a_run_dir_and_a_lock_alone_is_not(tmp_path: Path) -> None:
    from tuna_open.pipeline.outputs import RUN_MARKER

    assert run_cmd(tmp_path, "--run-dir", str(tmp_path / "run"))[0] == 0
    (tmp_path / "run" / RUN_MARKER).unlink()  # as an earlier version left it: .lock and recipe.json
    assert run_cmd(tmp_path, "--run-dir", str(tmp_path / "run"))[0] == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / ".lock").write_text("")  # pytest and other tools leave one
    (mine / "notes.txt").write_text("mine")
    one_error(*run_cmd(tmp_path, "--run-dir", str(mine)), "not written by tuna-open")


def test_a_run_dir_is_marked_and_reused(tmp_path: Path) -> None:
    from tuna_open.pipeline.outputs import RUN_MARKER

    assert run_cmd(tmp_path, "--run-dir", str(tmp_path / "run"))[0] == 0
    assert (tmp_path / "run" / RUN_MARKER).is_file()
    code, out = run_cmd(tmp_path, "--run-dir", str(tmp_path / "run"))
    assert code == 0 and "cached" in out, out


@pytest.mark.parametrize("name", ["../../../x", "/tmp/x", "..", ".hidden", "a" * 101])
def test_recipe_name_is_one_safe_path_component(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    one_error(*run_cmd(tmp_path, "--dry-run", recipe={**RECIPE, "name": name}), "name")


def test_a_stage_name_fits_the_file_system(tmp_path: Path) -> None:
    long = {**RECIPE, "stages": [{**RECIPE["stages"][0], "name": "s" * 300}]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(long))
    one_error(*invoke("validate", str(tmp_path / "r.yaml"), "--schema-only"), "name")
