"""The shipped quickstart recipe end to end, shrunk by --set overrides so it runs in about a minute.

Every stage kind of the quickstart runs for real (TRL SFT, sampling, both rankers, the reward model, Tuna,
DPO, PPO, eval), and the report must hold every model with the same metrics. The full-size run is the
README's first command and the seeds benchmark.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from helpers.paths import ROOT

from tuna_open.cli import main

SHRINK = [
    "data.sft.limit=64", "data.teacher.limit=160", "data.prompts.limit=24", "data.heldout.limit=16",
    *(f"stages.{name}.train.num_epochs=1"
      for name in ("sft", "teacher", "reward", "tuna_p", "tuna_c", "tuna", "sft_more", "tuna_c_mle_only", "dpo")),
    "stages.ppo.train.total_episodes=32", "stages.ppo.train.per_device_batch_size=8",
    *(f"stages.{name}.max_new_tokens=8" for name in ("teacher_samples", "sft_samples", "tuna_p_samples", "eval")),
]


def test_quickstart_recipe_end_to_end(tmp_path: Path) -> None:
    args = ["run", str(ROOT / "recipes/quickstart.yaml"), "--run-dir", str(tmp_path / "run")]
    for item in SHRINK:
        args += ["--set", item]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run/report.json").read_text())
    models = report["models"]
    assert {"sft", "sft_more", "tuna_p", "tuna_c", "tuna_c_mle_only", "tuna", "dpo", "ppo"} <= set(models)
    metric_sets = {frozenset(m) for m in models.values()}
    assert len(metric_sets) == 1 and {"accuracy", "rougeL", "exact_match"} <= next(iter(metric_sets))
    assert all(s["status"] == "done" for s in report["stages"])
    # report.md's model table: a row per model with every metric and, but for the baseline, its gap to SFT.
    models_table = (tmp_path / "run/report.md").read_text().split("## Models")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0][2:]: line for line in models_table.splitlines() if line.startswith("| ")}
    for name, metrics in models.items():
        for metric, value in metrics.items():
            gap = "" if name == "sft" else f" ({value - models['sft'][metric]:+.3f})"
            assert f" {value:.3f}{gap} |" in rows[name], (name, metric, rows.get(name))

    again = CliRunner().invoke(main, args)  # unchanged recipe: every stage from cache
    assert again.exit_code == 0, again.output
    report = json.loads((tmp_path / "run/report.json").read_text())
    assert [s["name"] for s in report["stages"] if s["status"] != "cached"] == [], again.output
