"""Runner behaviour: caching by fingerprint, invalidation downstream, resume after a kill, atomic artifacts."""

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
from rich.console import Console

from tuna_open.data.jsonl import ResumableJsonlWriter, read_jsonl
from tuna_open.pipeline.runner import run_recipe
from tuna_open.recipe import load_recipe
from tuna_open.stages.registry import STAGES


def recipe_dict(limit: int = 6, vocab: int = 320, chunk: int = 3) -> dict:
    return {
        "name": "pipe",
        "data": {"p": {"source": "builtin:tasks", "split": "train", "limit": limit}},
        "stages": [
            {"name": "init", "kind": "init_model", "vocab_size": vocab, "tokenizer_corpus": 200},
            {"name": "samples", "kind": "sample", "model": "@init", "data": "p", "n": 2, "max_new_tokens": 4,
             "dedup": False, "min_candidates": 1, "logprobs": True, "chunk_size": chunk},
        ],
    }


def run(tmp_path: Path, data: dict, **kw: object) -> dict:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return run_recipe(load_recipe(path, STAGES), tmp_path / "run", console=Console(quiet=True), **kw)


def statuses(report: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in report["stages"]}


def test_cache_and_fingerprint_invalidation(tmp_path: Path) -> None:
    assert statuses(run(tmp_path, recipe_dict())) == {"init": "done", "samples": "done"}
    records = read_jsonl(tmp_path / "run/stages/samples/records.jsonl")
    assert len(records) == 6 and all(len(r["candidates"]) == 2 and len(r["logprobs"]) == 2 for r in records)
    assert statuses(run(tmp_path, recipe_dict())) == {"init": "cached", "samples": "cached"}
    # A changed input of the second stage re-runs only that stage...
    assert statuses(run(tmp_path, recipe_dict(limit=4))) == {"init": "cached", "samples": "done"}
    # ...and a change upstream propagates downstream through the chained fingerprints.
    assert statuses(run(tmp_path, recipe_dict(limit=4, vocab=330))) == {"init": "done", "samples": "done"}
    assert statuses(run(tmp_path, recipe_dict(limit=4, vocab=330), from_stage="samples")) == {
        "init": "cached", "samples": "done"}
    manifest = json.loads((tmp_path / "run/stages/samples/manifest.json").read_text())
    assert manifest["inputs"].keys() == {"init"} and manifest["result"]["counts"]["prompts"] == 4
    report = json.loads((tmp_path / "run/report.json").read_text())
    assert set(report) >= {"recipe", "models", "stages"}


def test_throughput_settings_never_re_run_a_finished_stage(tmp_path: Path) -> None:
    """#20: a higher batch size, concurrency or timeout, or another endpoint pool, is not a new result."""
    assert statuses(run(tmp_path, recipe_dict())) == {"init": "done", "samples": "done"}
    faster = recipe_dict()
    faster["stages"][1]["sampler"] = {"backend": "hf", "hf": {"batch_size": 7}}
    assert statuses(run(tmp_path, faster)) == {"init": "cached", "samples": "cached"}


def test_result_neutral_keys_are_left_out_of_fingerprints_at_any_depth() -> None:
    from tuna_open.pipeline.fingerprint import fingerprint

    base = {"kind": "rank", "batch_size": 32, "ranker": {"backend": "openai", "model": "m",
                                                        "base_url": ["http://a/v1", "http://b/v1"]}}
    changed = {"kind": "rank", "batch_size": 8, "ranker": {
        "backend": "openai", "model": "m", "base_url": ["http://b/v1"], "max_concurrency": 64, "timeout": 5.0,
        "max_retries": 0, "max_consecutive_failures": 2}, "train": {"progress_bar": False}}
    assert fingerprint(changed, {}, [], 0) == fingerprint({**base, "train": {}}, {}, [], 0)
    assert fingerprint({**base, "ranker": {**base["ranker"], "model": "m2"}}, {}, [], 0) != fingerprint(base, {}, [], 0)
    single = {**base, "ranker": {**base["ranker"], "base_url": "http://a/v1"}}  # one server: which one matters
    assert fingerprint(single, {}, [], 0) != fingerprint({**single, "ranker": {**base["ranker"],
                                                                              "base_url": "http://c/v1"}}, {}, [], 0)


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    report = run(tmp_path, recipe_dict(), dry_run=True)
    assert statuses(report) == {"init": "would run", "samples": "would run"}
    assert not (tmp_path / "run").exists()


def test_torn_partial_line_is_dropped_and_redone(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    with ResumableJsonlWriter(out) as w:
        w.write({"id": "a", "v": 1})
    with open(out.with_name("x.jsonl.partial"), "a") as fh:
        fh.write('{"id": "b", "v"')  # killed mid-write
    with ResumableJsonlWriter(out) as w:
        assert w.done == {"a"}
        w.write({"id": "b", "v": 2})
        w.finalize()
    assert read_jsonl(out) == [{"id": "a", "v": 1}, {"id": "b", "v": 2}]
    assert not out.with_name("x.jsonl.partial").exists()


@pytest.mark.slow
def test_resume_after_sigkill_keeps_finished_records(tmp_path: Path) -> None:
    data = recipe_dict(limit=120, chunk=1)
    data["stages"][1]["max_new_tokens"] = 16
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    partial = tmp_path / "run/stages/samples/records.jsonl.partial"
    cmd = [sys.executable, "-m", "tuna_open.cli", "run", str(path), "--run-dir", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and (not partial.exists() or partial.read_text().count("\n") < 5):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [json.loads(line) for line in partial.read_text().splitlines() if line.endswith("}")]
    assert 5 <= len(before) < 120, "the kill must land in the middle of the sampling stage"
    report = run(tmp_path, data)
    assert statuses(report)["samples"] == "done"
    manifest = json.loads((tmp_path / "run/stages/samples/manifest.json").read_text())
    assert manifest["result"]["counts"]["resumed"] >= len(before)
    final = {r["id"]: r for r in read_jsonl(tmp_path / "run/stages/samples/records.jsonl")}
    assert len(final) == 120
    for rec in before:  # every record finished before the kill survives unchanged
        assert final[rec["id"]] == rec
