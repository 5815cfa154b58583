"""kill -9 in the middle of a training stage, run again: it resumes from the last complete checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers.runs import recipe_dict, run, statuses
from rich.console import Console

from tuna_open.data.jsonl import read_jsonl
from tuna_open.pipeline.runner import run_recipe
from tuna_open.recipe import load_recipe
from tuna_open.stages.registry import STAGES
from tuna_open.train.scaffold import last_checkpoint

STEPS, SAVE_STEPS = 60, 10
RECIPE = {
    "name": "resume",
    "data": {"p": {"source": "builtin:tasks", "split": "train", "limit": 64}},
    "stages": [
        {"name": "init", "kind": "init_model", "vocab_size": 320, "tokenizer_corpus": 200},
        {"name": "sft", "kind": "sft", "model": "@init", "data": "p",
         "train": {"max_steps": STEPS, "per_device_train_batch_size": 8, "save_steps": SAVE_STEPS,
                   "learning_rate": 1.0e-3, "logging_steps": 5, "loss_type": "nll"}},
    ],
}


def test_last_checkpoint_skips_one_killed_mid_save(tmp_path: Path) -> None:
    for step, complete in ((10, True), (20, True), (30, False), (4, True)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}/trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-20")
    assert last_checkpoint(tmp_path / "missing") is None


def test_sigkill_mid_training_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    workdir = tmp_path / "run/stages/sft/model.trainer"
    log = tmp_path / "first.log"
    env = {**os.environ, "TUNA_PROGRESS_INTERVAL": "0"}  # one progress line per optimizer step
    cmd = [sys.executable, "-m", "tuna_open.cli", "run", str(path), "--run-dir", str(tmp_path / "run")]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + 300
        while time.time() < deadline and f"training steps: {2 * SAVE_STEPS + SAVE_STEPS // 2}/" not in log.read_text():
            time.sleep(0.02)  # half-way between two checkpoints
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    steps_logged = [int(n) for n in re.findall(r"training steps: (\d+)/", log.read_text())]
    at_kill = max(steps_logged)
    checkpoint = int(last_checkpoint(workdir).rsplit("-", 1)[1])
    assert 2 * SAVE_STEPS <= checkpoint <= at_kill < STEPS, "the kill must land in the middle of training"
    assert not (tmp_path / "run/stages/sft/model").exists()

    report = run_recipe(load_recipe(path, STAGES), tmp_path / "run", console=Console(quiet=True))
    assert [s["status"] for s in report["stages"]] == ["cached", "done"]
    manifest = json.loads((tmp_path / "run/stages/sft/manifest.json").read_text())
    assert manifest["result"]["counts"]["resumed_from_step"] == checkpoint
    assert f"resumed from step {checkpoint}" in manifest["result"]["summary"]
    assert manifest["result"]["history"][-1]["step"] == STEPS
    assert (tmp_path / "run/stages/sft/model/config.json").exists() and not workdir.exists()
    redone = at_kill - checkpoint
    print(f"killed at step {at_kill}/{STEPS}, resumed from checkpoint {checkpoint}: {redone} steps redone, "
          f"{STEPS - checkpoint} trained after the restart instead of {STEPS}")
    assert redone < 2 * SAVE_STEPS


def test_tuna_trainer_resumes_after_a_crash(tiny_model_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The Tuna trainer (our own Trainer subclass) resumes the same way: a crash at step 5 with checkpoints every
    2 steps, then the same call again, continues from step 4 and finishes all 8 steps."""
    from transformers import Trainer

    from tuna_open.train.tuna_trainer import TunaTrainConfig, train_tuna

    examples = [{"prompt": f"### Instruction:\nAdd {i} and 1.\n\n### Response:\n", "candidates": [str(i + 1), "0"]}
                for i in range(8)]
    config = TunaTrainConfig(learning_rate=1e-3, max_steps=8, per_device_train_batch_size=2, save_steps=2,
                             logging_steps=1, max_length=64)
    step = Trainer.training_step

    def crash_at_step_5(self: Trainer, *args: object, **kwargs: object) -> object:
        if self.state.global_step == 5:
            raise RuntimeError("node lost")
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", crash_at_step_5)
    with pytest.raises(RuntimeError, match="node lost"):
        train_tuna(str(tiny_model_dir), examples, config, str(tmp_path / "model"))
    assert last_checkpoint(tmp_path / "model.trainer") == str(tmp_path / "model.trainer/checkpoint-4")
    monkeypatch.setattr(Trainer, "training_step", step)
    result = train_tuna(str(tiny_model_dir), examples, config, str(tmp_path / "model"))
    assert result["resumed_from_step"] == 4
    assert [h["step"] for h in result["history"]][-4:] == [5, 6, 7, 8]
    assert (tmp_path / "model/config.json").exists() and not (tmp_path / "model.trainer").exists()


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
