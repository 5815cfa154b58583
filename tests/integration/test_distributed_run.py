"""A whole recipe under a 2-process ``accelerate launch`` (gloo on CPU) does each paid thing once.

sample (an OpenAI-protocol server) → rank (the openai judge on the same server) → train_tuna → train_dpo → eval:
every sampling and judging request reaches the server once, not once per process; the artifacts equal those of
a single-process run that accumulates the same two examples per step; no scratch directory is left behind.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers.launch import free_port, run
from helpers.openai_server import OpenAIProtocolServer

from tuna_open.data.jsonl import read_jsonl


def completions(body: dict) -> dict:
    """``n`` distinct, deterministic answers per prompt."""
    digits = re.findall(r"\d+", body["prompt"])
    return {"choices": [{"index": i, "text": f" {' '.join(digits[:i + 1]) or 'none'} {i}", "finish_reason": "stop",
                         "logprobs": None} for i in range(body["n"])]}


def judge(body: dict) -> str:
    return "Close-ended. Scores: 9, 12, 3.\nrank: [1, 0, 2]"


def recipe(base_url: str, model: Path) -> dict:
    client = {"base_url": base_url, "api_key": "test", "max_concurrency": 1, "max_retries": 0}
    train = {"max_steps": 2, "per_device_batch_size": 1, "logging_steps": 1, "learning_rate": 1e-2,
             "lr_scheduler_type": "constant", "optim": "sgd"}
    return {
        "name": "ddp-run",
        "data": {"train": {"source": "builtin:tasks", "split": "train", "limit": 4},
                 "heldout": {"source": "builtin:tasks", "split": "heldout", "limit": 3}},
        "ranker": {"backend": "openai", "openai": {"model": "test-model", **client}},
        "stages": [
            {"name": "samples", "kind": "sample", "model": "test-model", "data": "train", "n": 3,
             "sampler": {"backend": "openai", "openai": client}},
            {"name": "rankings", "kind": "rank", "input": "@samples"},
            {"name": "tuna", "kind": "train_tuna", "model": str(model), "rankings": "@rankings",
             "train": {**train, "max_length": 512}},
            {"name": "dpo", "kind": "train_dpo", "model": str(model), "rankings": "@rankings",
             "train": {**{k: v for k, v in train.items() if k != "optim"}, "max_length": 512}},
            {"name": "eval", "kind": "eval", "models": {"tuna": "@tuna", "dpo": "@dpo"}, "data": "heldout",
             "max_new_tokens": 4},
        ],
    }


def scratch_left(run_dir: Path) -> list[str]:
    return [str(p) for p in run_dir.rglob("*") if p.name.endswith((".tmp", ".old", ".partial")) or
            p.name == "_trainer"]


def test_two_processes_judge_once_and_train_like_one(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    cli = ["-m", "tuna_open.cli", "run"]
    counts = {}
    with OpenAIProtocolServer(chat=judge, completions=completions) as server:
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe(server.base_url, tiny_model_dir)))
        for name, launcher, accumulation in [
            ("ddp", [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                     "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                     "--main_process_port", str(free_port())], 1),
            ("single", [sys.executable], 2),
        ]:
            before = len(server.requests)
            sets = [f"--set=stages.{s}.train.gradient_accumulation_steps={accumulation}" for s in ("tuna", "dpo")]
            run([*launcher, *cli, str(path), "--run-dir", str(tmp_path / name), *sets], tmp_path)
            bodies = server.requests[before:]
            counts[name] = {"completions": sum("prompt" in b for b in bodies),
                            "chat": sum("messages" in b for b in bodies)}
    print(f"requests per run: {counts}")
    assert counts["ddp"] == counts["single"] == {"completions": 4, "chat": 4}

    ddp, single = tmp_path / "ddp" / "stages", tmp_path / "single" / "stages"
    for stage in ("samples", "rankings"):
        assert read_jsonl(ddp / stage / "records.jsonl") == read_jsonl(single / stage / "records.jsonl")
    base = load_file(tiny_model_dir / "model.safetensors")
    for stage in ("tuna", "dpo"):
        a, b = (load_file(d / stage / "model" / "model.safetensors") for d in (ddp, single))
        assert any(not torch.equal(b[k], base[k]) for k in base), f"{stage} did not train"
        for key in b:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=f"{stage}: {key}")
        histories = [json.loads((d / stage / "manifest.json").read_text())["result"]["history"] for d in (ddp, single)]
        assert [h["loss"] for h in histories[0]] == pytest.approx([h["loss"] for h in histories[1]], rel=1e-4)
    # The untrained-looking tiny models score 0 either way; their greedy answers are what must agree.
    evals = [json.loads((d / "eval" / "metrics.json").read_text()) for d in (ddp, single)]
    assert evals[0] == evals[1] and evals[0]["details"]["tuna"]["instructions"]["examples"]
    report = json.loads((tmp_path / "ddp" / "report.json").read_text())
    assert [s["status"] for s in report["stages"]] == ["done"] * 5
    assert scratch_left(tmp_path / "ddp") == scratch_left(tmp_path / "single") == []
