"""Paid work survives: the rank stage, the ranking cache and the sample stage save each judgement or sample as
it is answered, so a Ctrl-C, a failed call or a full disk does not make the next run pay for it again."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml
from helpers.openai_server import OpenAIProtocolServer
from rich.console import Console

from rankers import RankRequest, build_ranker
from tuna_open.data.jsonl import read_jsonl
from tuna_open.errors import UserError
from tuna_open.pipeline.runner import run_recipe
from tuna_open.recipe import load_recipe
from tuna_open.stages.context import track
from tuna_open.stages.rank import rank_records
from tuna_open.stages.registry import STAGES


def record(i: int) -> dict:
    return {"id": str(i), "instruction": f"question {i}", "input": "", "prompt": f"question {i}",
            "candidates": ["good", "bad"]}


def progress(*args: object):
    return track(Console(quiet=True), *args)


def interrupted_at_call(n: int, answer: str) -> Callable[[dict], str]:
    """A judge answering ``answer`` that sends this process a Ctrl-C when its ``n``-th call is asked; that call
    and later ones answer slowly, so the calls in flight are still in flight when the interrupt lands."""
    lock = threading.Lock()
    asked = {"n": 0}

    def chat(body: dict) -> str:
        with lock:
            asked["n"] += 1
            mine = asked["n"]
        if mine == n:
            os.kill(os.getpid(), signal.SIGINT)
        if mine >= n:
            time.sleep(0.2)
        return answer

    return chat


@pytest.mark.parametrize("k", [1, 2])
def test_ctrl_c_keeps_every_judgement_already_answered(tmp_path: Path, k: int) -> None:
    """20 requests in one default batch, 4 calls in flight; Ctrl-C when the 9th call is asked: the requests whose
    calls were answered (and those in flight, which finish) are in the partial records and the cache, and only
    the rest is asked again; under ``permutations: k`` a request is saved once its k presentations are judged."""
    chat = interrupted_at_call(9, "rank: [0, 1]")
    records = [record(i) for i in range(20)]
    out = tmp_path / "rankings.jsonl"
    with OpenAIProtocolServer(chat=chat) as server:
        flat = {"backend": "openai", "model": "m", "base_url": server.base_url, "api_key": "k",
                "max_concurrency": 4, "cache_dir": str(tmp_path / "cache"), "permutations": k}
        with pytest.raises(KeyboardInterrupt):
            rank_records(records, flat, out, 32, 0.1, progress)
        kept = read_jsonl(out.with_name(out.name + ".partial"))
        assert len(kept) >= 8 // k and all(not r["failed"] for r in kept)
        before = len(server.requests)
        result = rank_records(records, flat, out, 32, 0.1, progress)
        assert len(server.requests) - before == (20 - len(kept)) * k
    assert result.counts["rankings"] == 20
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 20


def test_ctrl_c_keeps_every_pairwise_ranking_already_answered(tmp_path: Path) -> None:
    """#20: the pairwise judge handed its rankings over per batch, so a Ctrl-C lost every answered comparison of
    the batch. Now a request is saved when its last comparison is answered: 10 requests of 2 comparisons, 2 in
    flight, Ctrl-C at the 9th call: at least 4 requests are kept, and the resume asks only the others' pairs."""
    chat = interrupted_at_call(9, "verdict: A")
    records = [record(i) for i in range(10)]
    out = tmp_path / "rankings.jsonl"
    with OpenAIProtocolServer(chat=chat) as server:
        flat = {"backend": "pairwise", "model": "m", "base_url": server.base_url, "api_key": "k",
                "max_concurrency": 2, "cache_dir": str(tmp_path / "cache")}
        with pytest.raises(KeyboardInterrupt):
            rank_records(records, flat, out, 32, 0.1, progress)
        kept = read_jsonl(out.with_name(out.name + ".partial"))
        assert len(kept) >= 4 and all(not r["failed"] for r in kept)
        before = len(server.requests)
        result = rank_records(records, flat, out, 32, 0.1, progress)
        assert len(server.requests) - before == (10 - len(kept)) * 2
    assert result.counts["rankings"] == 10


def test_a_full_disk_loses_no_judgement_and_says_so_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    def disk_full(path: object, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("rankers.wrappers.cache.atomic_write_text", disk_full)
    requests = [RankRequest(prompt=f"question {i}", candidates=["good", "bad"], id=str(i)) for i in range(3)]
    with OpenAIProtocolServer(chat=lambda body: "rank: [1, 0]") as server, caplog.at_level(logging.WARNING):
        ranker = build_ranker({"backend": "openai", "model": "m", "base_url": server.base_url, "api_key": "k",
                               "cache_dir": str(tmp_path)})
        rankings = ranker.rank(requests)
    assert [r.order for r in rankings] == [[1, 0]] * 3
    assert ranker.stats["cache_write_failed"] == 3
    assert [r.getMessage() for r in caplog.records if "ranking cache" in r.getMessage()] == [
        f"cannot write the ranking cache {tmp_path} ([Errno {errno.ENOSPC}] No space left on device): rankings are "
        f"kept in the results but not cached"]


def test_samples_answered_before_a_failed_call_survive_to_the_resume(tmp_path: Path) -> None:
    """10 prompts in one chunk, 4 in flight; prompt 6 fails: the stage stops in one line, the prompts answered are
    kept, the next run asks only the others, each with the seed of its position, as an uninterrupted run would."""
    down = {"yes": True}

    def completions(body: dict) -> object:
        if down["yes"] and body["prompt"].endswith("p6"):
            return 500, {"error": {"message": "boom"}}
        time.sleep(0.05 if body["prompt"].endswith(("p7", "p8", "p9")) else 0.0)
        return {"choices": [{"index": 0, "text": f"answer to {body['prompt'][-2:]}", "finish_reason": "stop"}]}

    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"id": str(i), "instruction": f"p{i}"}) + "\n"
                                              for i in range(10)))
    with OpenAIProtocolServer(completions=completions) as server:
        recipe = {"name": "api", "seed": 100, "data": {"d": {"source": "d.jsonl"}}, "stages": [
            {"name": "s", "kind": "sample", "model": "served", "data": "d", "template": "raw", "n": 1, "dedup": False,
             "min_candidates": 1, "sampler": {"backend": "openai", "openai": {
                 "base_url": server.base_url, "api_key": "t", "max_retries": 0, "max_concurrency": 4}}}]}
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
        with pytest.raises(UserError, match="stage s: sampling stopped: .*HTTP 500.*run the same command again"):
            run_recipe(load_recipe(tmp_path / "r.yaml", STAGES), tmp_path / "run", console=Console(quiet=True))
        kept = read_jsonl(tmp_path / "run/stages/s/records.jsonl.partial")
        assert 4 <= len(kept) < 10 and "6" not in {r["id"] for r in kept}
        asked = len(server.requests)
        down["yes"] = False
        run_recipe(load_recipe(tmp_path / "r.yaml", STAGES), tmp_path / "run", console=Console(quiet=True))
        assert len(server.requests) - asked == 10 - len(kept)
        seeds = {body["prompt"][-2:]: body["seed"] for body in server.requests}
    assert seeds == {f"p{i}": 100 + i for i in range(10)}
    records = read_jsonl(tmp_path / "run/stages/s/records.jsonl")
    assert [r["candidates"] for r in records] == [[f"answer to p{i}"] for i in range(10)]
