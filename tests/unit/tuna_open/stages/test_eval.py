"""The eval stage end to end through the runner: held-out verifier metrics, LMentry, and Vicuna QA judged by
a real local OpenAI-protocol server, all landing in report.json / report.md."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from helpers.openai_server import OpenAIProtocolServer
from rich.console import Console

from tuna_open.builtin.tasks import score
from tuna_open.pipeline.runner import run_recipe
from tuna_open.recipe import load_recipe
from tuna_open.stages.registry import STAGES


def test_eval_stage_runs_every_suite(tmp_path: Path, shared_data: Path) -> None:
    def judge(body: dict) -> str:
        return "Both answers are poor.\nscores: [3, 1]\nrank: [0, 1]"  # always prefers the first shown

    with OpenAIProtocolServer(chat=judge) as server:
        recipe = {
            "name": "evalstage",
            "data": {"held": {"source": "builtin:tasks", "split": "heldout", "limit": 6}},
            "ranker": {"backend": "openai", "openai": {"model": "judge", "base_url": server.base_url,
                                                      "api_key": "test-key"}},
            "stages": [
                {"name": "a", "kind": "init_model", "vocab_size": 320, "tokenizer_corpus": 200},
                {"name": "b", "kind": "init_model", "vocab_size": 320, "tokenizer_corpus": 200, "seed": 1},
                {"name": "eval", "kind": "eval", "models": {"a": "@a", "b": "@b"}, "data": "held",
                 "verifier": "tuna_open.builtin.tasks:score", "max_new_tokens": 6,
                 # relative to the recipe's directory, like every path of a recipe
                 "lmentry": {"data_dir": "bench/lmentry", "tasks": ["first_letter"], "limit": 3},
                 "vicuna_qa": {"questions": str(shared_data / "vicuna_qa/question.jsonl"), "limit": 3,
                               "baseline": "a"}},
            ],
            "report": {"baseline": "a", "primary_metric": "accuracy"},
        }
        (tmp_path / "bench/lmentry").mkdir(parents=True)
        shutil.copy(shared_data / "lmentry/data/first_letter.json", tmp_path / "bench/lmentry")
        path = tmp_path / "r.yaml"
        path.write_text(yaml.safe_dump(recipe))
        report = run_recipe(load_recipe(path, STAGES), tmp_path / "run", console=Console(quiet=True))
        judged = len(server.requests)

    models = report["models"]
    assert set(models) == {"a", "b"}
    details = json.loads((tmp_path / "run/stages/eval/metrics.json").read_text())["details"]
    for name, metrics in models.items():
        assert {"accuracy", "verifier_score", "rougeL", "exact_match", "lmentry_accuracy"} <= set(metrics)
        # The reported numbers are the verifier's verdicts on the answers the model gave (all 6 are recorded).
        scores = [score(e["prediction"], e["reference"]) for e in details[name]["instructions"]["examples"]]
        assert len(scores) == 6
        assert metrics["accuracy"] == pytest.approx(100.0 * sum(s >= 1.0 for s in scores) / 6)
        assert metrics["verifier_score"] == pytest.approx(100.0 * sum(scores) / 6)
    # Both presentation orders per question: a judge that always picks the first shown answer is pure
    # position bias, so every non-identical pair must come out a tie.
    assert judged == 6
    assert models["b"]["vicuna_tie_rate_vs_a"] == 100.0
    assert (tmp_path / "run/plots/vicuna_qa.png").exists()
    assert "vicuna_qa.png" in (tmp_path / "run/report.md").read_text()
    text = (tmp_path / "run/stages/eval/manifest.json").read_text() + (tmp_path / "run/recipe.json").read_text()
    assert "test-key" not in text
    assert json.loads((tmp_path / "run/report.json").read_text())["models"] == models
