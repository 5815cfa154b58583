"""Nothing lost, nothing paid twice (issue 12): ids, failed and cached judgements, the run-dir lock, finished
artifacts checked before reuse, and every bad input one ``error:`` line with exit code 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers.openai_server import OpenAIProtocolServer
from helpers.paths import ROOT
from rich.console import Console

from rankers import RankRequest, build_ranker
from rankers.base import Ranking
from rankers.wrappers.cache import CachedRanker, cache_key
from tuna_open.cli import main
from tuna_open.data.jsonl import ResumableJsonlWriter, read_jsonl, write_jsonl
from tuna_open.data.schema import DataSource
from tuna_open.data.sources import load_instructions
from tuna_open.errors import UserError
from tuna_open.pipeline.integrity import RunDirLock
from tuna_open.pipeline.runner import run_recipe
from tuna_open.recipe import load_recipe
from tuna_open.stages.context import track
from tuna_open.stages.rank import rank_records
from tuna_open.stages.registry import STAGES
from tuna_open.stages.train_tuna import ranked_examples

FUNCTION_RANKER = {"backend": "function", "function": {"callable": "tuna_open.builtin.tasks:score_request"}}
SERVER_ERROR = (500, {"error": {"message": "judge down", "type": "server_error"}})


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def one_error_line(code: int, out: str, *fragments: str) -> None:
    out = "\n".join(line for line in out.splitlines() if " → " not in line)  # the run command's header line
    assert code == 2, out
    assert out.startswith("error: ") and len(out.strip().splitlines()) == 1, out
    for fragment in fragments:
        assert fragment in out, (fragment, out)


def instructions(path: Path, **kw: object) -> list[dict]:
    return load_instructions(DataSource(source=str(path), **kw), path.parent)  # type: ignore[arg-type]


def candidates(i: int, texts: tuple[str, ...] = ("good", "bad")) -> dict:
    return {"id": str(i), "instruction": f"q{i}", "input": "", "output": "good", "prompt": f"q{i}",
            "candidates": list(texts)}


# ---- ids ------------------------------------------------------------------------------------------------------

def test_duplicate_ids_in_data_name_the_file_and_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [{"id": "1", "instruction": "a"}, {"id": "2", "instruction": "c"}, {"id": 1, "instruction": "b"}])
    with pytest.raises(UserError, match=r"d\.jsonl:3: duplicate id '1' \(first at .*d\.jsonl:1\)"):
        instructions(path)


def test_sources_without_ids_get_unique_ids_that_cannot_collide_with_explicit_ones(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"instruction": "a"}, {"instruction": "a"}, {"id": "1", "instruction": "b"}]))
    ids = [r["id"] for r in instructions(path)]
    assert len(set(ids)) == 3 and ids[2] == "1" and ids[0] != ids[1]
    assert [r["id"] for r in instructions(path)] == ids  # deterministic: resume and joins rely on it


def test_rank_rejects_duplicate_candidate_ids_naming_both_lines(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "c.jsonl", [candidates(1), candidates(2), candidates(1)])
    cfg = tmp_path / "ranker.yaml"
    cfg.write_text(yaml.safe_dump(FUNCTION_RANKER))
    code, out = invoke("rank", "--ranker", str(cfg), "--input", str(tmp_path / "c.jsonl"), "--output",
                       str(tmp_path / "r.jsonl"))
    one_error_line(code, out, "c.jsonl:3: duplicate id '1'", "c.jsonl:1")
    assert not (tmp_path / "r.jsonl").exists()


def test_joins_match_every_ranking_id_exactly_once() -> None:
    cands = [candidates(1), candidates(2)]
    ok = [{"id": "1", "order": [1, 0]}, {"id": "2", "order": [0, 1]}]
    assert [e["candidates"] for e in ranked_examples(cands, ok)] == [["bad", "good"], ["good", "bad"]]
    with pytest.raises(UserError, match="rankings: duplicate id '1'"):
        ranked_examples(cands, [*ok, {"id": "1", "order": [0, 1]}])
    with pytest.raises(UserError, match="candidates: duplicate id '2'"):
        ranked_examples([*cands, candidates(2, ("x", "y"))], ok)
    with pytest.raises(UserError, match="'3' has no candidates record"):
        ranked_examples(cands, [*ok, {"id": "3", "order": [0, 1]}])
    with pytest.raises(UserError, match="not a permutation"):
        ranked_examples(cands, [{"id": "1", "order": [0, 0]}])


# ---- failed, resumed and cached judgements -------------------------------------------------------------------

def judge_answer(body: dict) -> str:
    """A well-formed contextual-ranking answer for two shown candidates (the judge's own answer third)."""
    return "Close-ended.\nResponse 3: mine.\nscores: [9, 3, 14]\nrank: [0, 2, 1]"


def test_failed_rankings_are_retried_by_the_same_command(tmp_path: Path) -> None:
    records = [candidates(i) for i in range(6)]
    down = {"yes": True}
    with OpenAIProtocolServer(chat=lambda body: SERVER_ERROR if down["yes"] else judge_answer(body)) as server:
        flat = {"backend": "openai", "model": "judge-model", "base_url": server.base_url, "api_key": "k",
                "max_retries": 0, "max_concurrency": 1, "cache_dir": str(tmp_path / "cache")}
        out = tmp_path / "r.jsonl"
        with pytest.raises(UserError, match="6/6 rankings failed") as failure:
            rank_records(records, flat, out, 4, 0.1, lambda *a: track(Console(quiet=True), *a))
        asked = len(server.requests)
        down["yes"] = False
        result = rank_records(records, flat, out, 4, 0.1, lambda *a: track(Console(quiet=True), *a))
        assert len(server.requests) - asked == 6  # every failed one asked again, none twice
    assert result.counts["retried"] == 6 and result.counts["failed"] == 0 and "6 retried" in result.summary
    assert "run the same command again" in str(failure.value)
    assert [r["order"] for r in read_jsonl(out)] == [[0, 1]] * 6


def test_resumed_judgement_that_is_not_a_permutation_is_redone_and_counted(tmp_path: Path) -> None:
    records = [candidates(1), candidates(2)]
    out = tmp_path / "r.jsonl"
    with ResumableJsonlWriter(out) as w:  # an earlier, killed run: one good judgement, one corrupted
        w.write({"id": "1", "ranker": "function", "order": [1, 0], "scores": [0.0, 1.0]})
        w.write({"id": "2", "ranker": "function", "order": [5, 5], "scores": [0.0, 1.0]})
    flat = {"backend": "function", "callable": "tuna_open.builtin.tasks:score_request"}
    result = rank_records(records, flat, out, 4, 0.1, lambda *a: track(Console(quiet=True), *a))
    assert all(sorted(r["order"]) == [0, 1] for r in read_jsonl(out))
    assert result.counts["invalid_resumed"] == 1 and result.extra["ranker"]["new_requests"] == 1


def test_invalid_cache_entry_is_a_counted_miss(tmp_path: Path) -> None:
    inner = build_ranker({"backend": "function", "callable": "tuna_open.builtin.tasks:score_request"})
    ranker = CachedRanker(inner, tmp_path, {"backend": "function"})
    request = RankRequest(prompt="Add the two numbers.", input="2 3", reference="5", candidates=["6", "5", "56"])
    [expected] = inner.rank([request])
    ranker._write(cache_key(request, ranker.key_config), Ranking(order=[99, 98, 97]))
    [ranking] = ranker.rank([request])
    assert ranking.order == expected.order
    assert ranker.stats["cache_invalid"] == 1 and ranker.stats["cache_hits"] == 0
    [again] = ranker.rank([request])  # the miss was overwritten with the good judgement
    assert again.order == expected.order and ranker.stats["cache_hits"] == 1


# ---- run directory and finished artifacts --------------------------------------------------------------------

def tiny_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "integrity",
        "data": {"p": {"source": "builtin:tasks", "split": "train", "limit": 3}},
        "stages": [
            {"name": "init", "kind": "init_model", "vocab_size": 320, "tokenizer_corpus": 100},
            {"name": "samples", "kind": "sample", "model": "@init", "data": "p", "n": 2, "max_new_tokens": 3,
             "dedup": False, "min_candidates": 1},
        ]}))
    return path


def statuses(report: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in report["stages"]}


def test_second_run_on_a_locked_run_dir_exits_2_naming_the_holder_and_a_killed_holder_is_taken_over(
        tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import sys, time; from pathlib import Path; "
                                "from tuna_open.pipeline.integrity import RunDirLock; "
                                "RunDirLock(Path(sys.argv[1])).acquire(); "
                                "print('locked', flush=True); time.sleep(120)"),
         str(run_dir)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, out = invoke("run", str(tiny_recipe(tmp_path)), "--run-dir", str(run_dir))
        one_error_line(code, out, f"pid {holder.pid}", str(run_dir))
        assert not (run_dir / "stages").exists()  # nothing done twice
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = RunDirLock(run_dir)  # the kernel released the dead holder's lock: taken over
    lock.acquire()
    assert (run_dir / ".lock").read_text().strip() == str(os.getpid())
    lock.release()


def test_a_file_as_run_dir_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("not a directory")
    one_error_line(*invoke("run", str(tiny_recipe(tmp_path)), "--run-dir", str(tmp_path / "run")), "run dir")


def test_secondary_ranks_of_a_multi_process_launch_do_not_compete_for_the_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuna_open.pipeline.integrity import locked_run_dir

    ran = []
    run = locked_run_dir(lambda recipe, run_dir, **kw: ran.append(run_dir))
    lock = RunDirLock(tmp_path)
    lock.acquire()  # rank 0 of the same launch holds it
    with pytest.raises(UserError, match="in use by another run"):
        run(None, tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    run(None, tmp_path)
    lock.release()
    assert ran == [tmp_path]


def test_changed_outputs_of_a_cached_stage_rerun_it_with_a_warning(tmp_path: Path) -> None:
    recipe = load_recipe(tiny_recipe(tmp_path), STAGES)
    run_dir = tmp_path / "run"
    assert statuses(run_recipe(recipe, run_dir, console=Console(quiet=True))) == {"init": "done", "samples": "done"}
    assert statuses(run_recipe(recipe, run_dir, console=Console(quiet=True))) == {"init": "cached", "samples": "cached"}

    records = run_dir / "stages/samples/records.jsonl"
    records.write_text(records.read_text()[:40])  # truncated by hand
    console = Console(record=True, width=300)
    assert statuses(run_recipe(recipe, run_dir, console=console)) == {"init": "cached", "samples": "done"}
    assert "warning: samples: cached output changed" in console.export_text()
    assert len(read_jsonl(records)) == 3

    weights = run_dir / "stages/init/model/model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(b"\0" * size)  # garbage of the same size: only the content hash can tell
    console = Console(record=True, width=300)
    # init is re-made; it comes out identical (same seed), so what samples read is unchanged and stays cached
    assert statuses(run_recipe(recipe, run_dir, console=console)) == {"init": "done", "samples": "cached"}
    assert "init: cached output changed since it was written (model.safetensors was modified" in console.export_text()
    manifest = json.loads((run_dir / "stages/init/manifest.json").read_text())
    assert "model.safetensors" in manifest["outputs"] and len(manifest["outputs"]["config.json"]["sha256"]) == 64


def test_a_stage_whose_input_was_re_made_differently_re_runs(tmp_path: Path) -> None:
    recipe = load_recipe(tiny_recipe(tmp_path), STAGES)
    run_dir = tmp_path / "run"
    run_recipe(recipe, run_dir, console=Console(quiet=True))
    path = run_dir / "stages/samples/manifest.json"
    manifest = json.loads(path.read_text())
    assert set(manifest["consumed"]) == {"init"}
    path.write_text(json.dumps({**manifest, "consumed": {"init": "0" * 16}}))  # it read another model than init's
    console = Console(record=True, width=300)
    assert statuses(run_recipe(recipe, run_dir, console=console)) == {"init": "cached", "samples": "done"}
    assert "warning: samples: @init was re-made with different content" in console.export_text()


def test_temp_dirs_of_an_interrupted_stage_are_removed_when_it_restarts(tmp_path: Path) -> None:
    recipe = load_recipe(tiny_recipe(tmp_path), STAGES)
    run_dir = tmp_path / "run"
    run_recipe(recipe, run_dir, console=Console(quiet=True))
    stage = run_dir / "stages/init"
    fp = json.loads((stage / "manifest.json").read_text())["fingerprint"]
    (stage / "manifest.json").unlink()  # as if killed during training, before the manifest:
    (stage / ".fingerprint").write_text(fp)
    leftover = stage / ".model.abc123.tmp"
    (leftover / "checkpoint").mkdir(parents=True)
    (stage / ".records.jsonl.x.tmp").write_text("half")
    assert statuses(run_recipe(recipe, run_dir, console=Console(quiet=True)))["init"] == "done"
    assert not list(stage.glob("*.tmp"))


# ---- one error line, exit 2 ----------------------------------------------------------------------------------

def test_non_utf8_recipe_and_data_files_name_file_and_line(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(b"name: x\ndescription: caf\xe9\nstages: []\n")
    one_error_line(*invoke("validate", str(recipe)), "r.yaml:2: not UTF-8")
    data = tmp_path / "d.json"
    data.write_bytes(b'[{"instruction": "a"},\n {"instruction": "\xff"}]')
    with pytest.raises(UserError, match=r"d\.json:2: not UTF-8"):
        instructions(data)
    lines = tmp_path / "d.jsonl"
    lines.write_bytes(b'{"instruction": "a"}\n{"instruction": "\xff"}\n')
    with pytest.raises(UserError, match=r"d\.jsonl:2: not UTF-8"):
        instructions(lines)


def test_bad_yaml_and_bad_values_in_set_are_one_line(tmp_path: Path) -> None:
    quickstart = str(ROOT / "recipes/quickstart.yaml")
    one_error_line(*invoke("validate", quickstart, "--set", "stages.sft.train.num_epochs=[1"),
                   "--set stages.sft.train.num_epochs=[1: invalid YAML value")
    # num_epochs is accepted as TRL's num_train_epochs, the name the error gives.
    one_error_line(*invoke("validate", quickstart, "--set", "stages.sft.train.num_epochs=-1"),
                   "num_train_epochs", "greater than 0")
    one_error_line(*invoke("validate", quickstart, "--set", "stages.tuna_p.train.num_epochs=-2"), "num_train_epochs")


def test_a_directory_as_data_source_is_rejected_by_validate(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "x", "data": {"d": {"source": "data"}}, "stages": []}))
    one_error_line(*invoke("validate", str(recipe)), "data.d.source", "is a directory")


@pytest.mark.parametrize(("record", "fragment"), [
    ({"instruction": "q", "candidates": ["a", "b"]}, "c.jsonl:2: field 'id' is missing"),
    ({"id": "2", "instruction": "q"}, "c.jsonl:2: field 'candidates' is missing"),
    ({"id": "2", "instruction": "q", "candidates": "56"}, "c.jsonl:2: field 'candidates' must be a list of strings"),
])
def test_rank_input_records_are_checked_field_by_field(tmp_path: Path, record: dict, fragment: str) -> None:
    write_jsonl(tmp_path / "c.jsonl", [candidates(1), record])
    cfg = tmp_path / "ranker.yaml"
    cfg.write_text(yaml.safe_dump(FUNCTION_RANKER))
    one_error_line(*invoke("rank", "--ranker", str(cfg), "--input", str(tmp_path / "c.jsonl"), "--output",
                           str(tmp_path / "r.jsonl")), fragment)


def test_torn_upstream_records_file_is_one_error_naming_the_line(tmp_path: Path) -> None:
    from tuna_open.stages.context import StageContext

    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(candidates(1)) + "\n" + json.dumps(candidates(2))[:30])
    ctx = StageContext(recipe=None, run_dir=tmp_path, stage_dir=tmp_path, output=tmp_path / "out",  # type: ignore[arg-type]
                       seed=0, outputs={"up": path}, console=Console(quiet=True))
    with pytest.raises(UserError, match=r"records\.jsonl:2: invalid JSON"):
        ctx.records("@up")


def test_record_errors_give_line_numbers_and_reject_empty_files_and_null_fields(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"instruction": "a"}\n\n{"input": "no instruction"}\n')
    with pytest.raises(UserError, match=r"d\.jsonl:3: field 'instruction' is missing"):
        instructions(path)
    path.write_text("")
    with pytest.raises(UserError, match=r"d\.jsonl: no records"):
        instructions(path)
    path.write_text('{"instruction": "a"}\n{"instruction": null}\n')
    with pytest.raises(UserError, match=r"d\.jsonl:2: field 'instruction' is null"):
        instructions(path)
    path.write_text('{"instruction": ["a", "b"]}\n')
    with pytest.raises(UserError, match=r"d\.jsonl:1: field 'instruction' must be a string"):
        instructions(path)


def test_interrupt_message_does_not_promise_kept_training(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("tuna_open.pipeline.runner.run_recipe", interrupted)
    code, out = invoke("run", str(tiny_recipe(tmp_path)), "--run-dir", str(tmp_path / "run"))
    assert code == 130 and "training stage restarts" in out


# ---- long prompts and dead judges ----------------------------------------------------------------------------

def test_prompts_longer_than_the_context_are_truncated_and_counted(tiny_model_dir: Path) -> None:
    from tuna_open.generate.base import SamplingParams
    from tuna_open.generate.hf_sampler import HFSampler

    sampler = HFSampler(str(tiny_model_dir))
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 400  # several thousand tokens; context 512
    out = sampler.generate(["Add 12 and 30.", long_prompt], SamplingParams(n=1, max_new_tokens=4, temperature=0))
    assert len(out) == 2 and sampler.truncated == 1


def test_failed_call_metadata_counts_its_retries_and_a_dead_judge_is_given_up_quickly() -> None:
    with OpenAIProtocolServer(chat=lambda body: SERVER_ERROR) as server:
        ranker = build_ranker({"backend": "openai", "model": "judge-model", "base_url": server.base_url,
                               "api_key": "k", "max_retries": 2, "max_concurrency": 1,
                               "max_consecutive_failures": 2})
        ranker.client.backoff = type(ranker.client.backoff)(base=0.001, cap=0.002)
        start = time.perf_counter()
        rankings = ranker.rank([RankRequest(prompt=f"q{i}", candidates=["a", "b"]) for i in range(10)])
        assert time.perf_counter() - start < 30
        # two calls of three attempts each, then the endpoint is taken as dead: no more requests
        assert len(server.requests) == 6
    assert all(r.failed for r in rankings)
    assert rankings[0].metadata["retries"] == 2 and "after 2 retries" in rankings[0].error
    assert "max_consecutive_failures" in rankings[9].error


def test_default_worst_case_against_a_hung_judge_is_minutes() -> None:
    from rankers.llm.client_settings import ClientSettings
    from rankers.llm.openai_client import Backoff

    s = ClientSettings()
    per_call = (s.max_retries + 1) * s.timeout + s.max_retries * Backoff().cap
    assert per_call <= 7 * 60
    # Calls in flight at once, then every further call fails without being sent.
    assert s.max_consecutive_failures <= s.max_concurrency
