"""Done-when of the chat-data work: a TRL conversational (``messages``) dataset runs through SFT → sample → rank
(a function ranker) → Tuna (and DPO) → eval with ``template: chat`` on the tiny model, and every stage that
builds a prompt renders the conversation with the model's chat template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from tuna_open.data.jsonl import read_jsonl
from tuna_open.pipeline.runner import run_recipe
from tuna_open.recipe import load_recipe
from tuna_open.stages.registry import STAGES


def conversations(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        a, b = i % 5, i % 3 + 1
        rows.append({"id": f"c{i}", "messages": [
            {"role": "system", "content": "Answer with a number."},
            {"role": "user", "content": f"Add {a} and {b}."}, {"role": "assistant", "content": str(a + b)},
            {"role": "user", "content": "Now double it."}, {"role": "assistant", "content": str(2 * (a + b))}]})
    return rows


def test_conversational_data_through_sft_sample_rank_tuna_dpo_eval(tmp_path: Path, tiny_chat_model_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import tuna_open.stages.sft as sft_stage
    import tuna_open.stages.train_dpo as dpo_stage
    import tuna_open.stages.train_tuna as tuna_stage

    seen: dict[str, list[str]] = {}

    def spy(name: str, real: Any, key: str) -> Any:
        def wrapped(model: str, examples: Any, *args: Any, **kwargs: Any) -> Any:
            seen[name] = [e[key] for e in examples]
            return real(model, examples, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(sft_stage, "train_sft", spy("sft", sft_stage.train_sft, "prompt"))
    monkeypatch.setattr(tuna_stage, "train_tuna", spy("tuna", tuna_stage.train_tuna, "prompt"))
    monkeypatch.setattr(dpo_stage, "train_dpo", spy("dpo", dpo_stage.train_dpo, "prompt"))

    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in conversations(8)))
    model = str(tiny_chat_model_dir)
    fast = {"max_steps": 2, "per_device_batch_size": 4, "logging_steps": 1}
    recipe = {
        "name": "chat",
        "data": {"chat": {"source": "chat.jsonl"}},
        "ranker": {"backend": "function", "function": {"callable": "helpers.score_functions:overlap"}},
        "stages": [
            {"name": "sft", "kind": "sft", "model": model, "data": "chat", "template": "chat",
             "train": {**fast, "learning_rate": 1e-3, "loss_type": "nll"}},
            {"name": "samples", "kind": "sample", "model": "@sft", "data": "chat", "template": "chat", "n": 3,
             "max_new_tokens": 6, "dedup": False, "min_candidates": 2},
            {"name": "ranked", "kind": "rank", "input": "@samples"},
            {"name": "tuna", "kind": "train_tuna", "model": "@sft", "rankings": "@ranked", "template": "chat",
             "sft_data": "chat", "train": {**fast, "learning_rate": 1e-4}},
            {"name": "dpo", "kind": "train_dpo", "model": "@sft", "rankings": "@ranked", "template": "chat",
             "train": fast},
            {"name": "eval", "kind": "eval", "models": {"sft": "@sft", "tuna": "@tuna", "dpo": "@dpo"},
             "data": "chat", "template": "chat", "verifier": "helpers.score_functions:exact", "max_new_tokens": 6},
        ],
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    report = run_recipe(load_recipe(path, STAGES), tmp_path / "run", console=Console(quiet=True))
    assert {s["name"]: s["status"] for s in report["stages"]} == {
        "sft": "done", "samples": "done", "ranked": "done", "tuna": "done", "dpo": "done", "eval": "done"}

    # Every prompt is the whole conversation in the chat template, ending with the generation prompt.
    def is_chat(prompt: str) -> bool:
        return (prompt.startswith("<s><|system|>\nAnswer with a number.</s>\n<|user|>\nAdd ")
                and prompt.endswith("<|user|>\nNow double it.</s>\n<|assistant|>\n"))

    assert len(seen["sft"]) == 8 and all(map(is_chat, seen["sft"]))
    assert seen["tuna"] and all(map(is_chat, seen["tuna"])) and all(map(is_chat, seen["dpo"]))
    candidates = read_jsonl(tmp_path / "run/stages/samples/records.jsonl")
    responses = {r["id"]: r["messages"][-1]["content"] for r in conversations(8)}
    assert len(candidates) == 8 and all(is_chat(c["prompt"]) for c in candidates)
    assert all(c["output"] == responses[c["id"]] and len(c["messages"]) == 4 for c in candidates)
    rankings = read_jsonl(tmp_path / "run/stages/ranked/records.jsonl")
    assert len(rankings) == 8 and not any(r.get("failed") for r in rankings)
    metrics = json.loads((tmp_path / "run/stages/eval/metrics.json").read_text())["metrics"]
    assert set(metrics) == {"sft", "tuna", "dpo"} and all("accuracy" in m for m in metrics.values())
