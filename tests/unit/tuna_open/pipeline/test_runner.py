"""Runner behaviour: caching by fingerprint, invalidation downstream, resume after a kill, atomic artifacts."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.runs import recipe_dict, run, statuses

from tuna_open.data.jsonl import ResumableJsonlWriter, read_jsonl


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


def test_a_rank_stage_keeps_its_fingerprint_with_shared_prefix_written_out() -> None:
    """#22: ``shared_prefix`` (each prompt run once by the in-process rankers) is throughput, like ``batch_size``."""
    from tuna_open.pipeline.fingerprint import fingerprint

    for backend in ("teacher_logprob", "reward_model"):
        base = {"kind": "rank", "ranker": {"backend": backend, "model": "m"}}
        for value in (True, False):
            written = {"kind": "rank", "ranker": {**base["ranker"], "shared_prefix": value}}
            assert fingerprint(written, {}, [], 0) == fingerprint(base, {}, [], 0)


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




def test_a_cached_rerun_reports_the_seconds_each_output_took(tmp_path: Path) -> None:
    first = run(tmp_path, recipe_dict())
    again = run(tmp_path, recipe_dict())
    took = {s: json.loads((tmp_path / f"run/stages/{s}/manifest.json").read_text())["seconds"]
            for s in ("init", "samples")}
    assert statuses(again) == {"init": "cached", "samples": "cached"} and sum(took.values()) > 0
    seconds = [{e["name"]: e["seconds"] for e in report["stages"]} for report in (first, again)]
    assert seconds == [took, took]
    assert again["seconds"] == {"now": 0.0, "computed": round(sum(took.values()), 2)}
    stages_table = (tmp_path / "run/report.md").read_text().split("## Stages")[1]
    assert f"| samples | sample | cached | {took['samples']:.1f} |" in stages_table
    assert "0 of 2 stages cached" not in stages_table and "2 of 2 stages cached" in stages_table
