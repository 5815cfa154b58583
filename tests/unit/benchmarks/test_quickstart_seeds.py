"""benchmarks/quickstart_seeds.py: seeds run one at a time or in parallel, and a failed seed stops the table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from quickstart_seeds import interval, markdown, run_all, summarise  # noqa: E402


def _touch(path: Path, seconds: float) -> list[str]:
    return [sys.executable, "-c", f"import time, pathlib; time.sleep({seconds}); pathlib.Path({str(path)!r}).touch()"]


@pytest.mark.parametrize("jobs", [1, 3])
def test_run_all_runs_every_seed_and_times_it(tmp_path, jobs):
    commands = {seed: _touch(tmp_path / f"done-{seed}", 0.2) for seed in (0, 1, 2)}
    seconds = run_all(commands, jobs, tmp_path / "runs")
    assert sorted(seconds) == [0, 1, 2] and all(s >= 0.2 for s in seconds.values())
    assert all((tmp_path / f"done-{seed}").exists() for seed in (0, 1, 2))
    assert sorted(p.name for p in (tmp_path / "runs").glob("*.log")) == (
        [] if jobs == 1 else ["seed-0.log", "seed-1.log", "seed-2.log"])


def test_a_failed_seed_stops_the_benchmark_and_the_others(tmp_path):
    commands = {0: [sys.executable, "-c", "raise SystemExit(3)"], 1: _touch(tmp_path / "late", 30)}
    with pytest.raises(SystemExit, match="seed 0 failed \\(exit 3\\)"):
        run_all(commands, 2, tmp_path)
    assert not (tmp_path / "late").exists()


def test_interval_is_a_t_interval():
    out = interval([1.0, 2.0, 3.0])
    assert out["mean"] == 2.0 and out["std"] == 1.0
    assert out["ci95"] == pytest.approx([2.0 - 4.303 / 3 ** 0.5, 2.0 + 4.303 / 3 ** 0.5], abs=1e-3)
    assert "ci95" not in interval([5.0])


def test_paired_comparisons_are_per_seed_differences_of_models_present():
    per_seed = {s: {"sft": {"accuracy": 10.0}, "tuna": {"accuracy": 12.0 + s}, "tuna_p": {"accuracy": 11.0},
                    "ppo": {"accuracy": 13.0}} for s in (0, 1, 2)}
    out = {"metric": "accuracy", "baseline": "sft", **summarise(per_seed, "sft", "accuracy")}
    assert out["paired_vs_baseline"]["tuna"]["values"] == [2.0, 3.0, 4.0]
    assert out["paired_comparisons"]["tuna - tuna_p"]["values"] == [1.0, 2.0, 3.0]
    assert out["paired_comparisons"]["tuna - ppo"]["values"] == [-1.0, 0.0, 1.0]
    assert "tuna_c - tuna_c_mle_only" not in out["paired_comparisons"]  # absent models are not compared
    table = markdown(out)
    assert "| tuna - tuna_p | +1.00 / +2.00 / +3.00 | +2.00 |" in table and "| 3 of 3 |" in table
    assert "| tuna - ppo | -1.00 / +0.00 / +1.00 | +0.00 |" in table and "| 1 of 3 |" in table


def test_forest_plot_from_the_json_alone(tmp_path):
    import json

    from helpers.figures import overlapping_labels
    from quickstart_seeds import forest_figure, plot_forest

    per_seed = {s: {"sft": {"accuracy": 20.0 + s}, "teacher": {"accuracy": 60.0}, "tuna_c": {"accuracy": 23.0 + 2 * s},
                    "tuna_c_mle_only": {"accuracy": 25.0 + s}, "sft_more": {"accuracy": 19.5 + s}} for s in range(3)}
    out = {"recipe": str(ROOT / "recipes/quickstart.yaml"), "seeds": [0, 1, 2], "baseline": "sft",
           "metric": "accuracy", **summarise(per_seed, "sft", "accuracy")}
    fig = forest_figure(out)
    top, bottom = fig.axes
    # The teacher's gap is headroom, not a gain: left out; rows sorted by the mean, best at the top.
    assert [t.get_text() for t in top.get_yticklabels()] == ["sft_more − sft", "tuna_c − sft", "tuna_c_mle_only − sft"]
    assert [t.get_text() for t in bottom.get_yticklabels()] == ["tuna_c − tuna_c_mle_only", "tuna_c − sft_more"]
    assert [t.get_text() for t in bottom.texts] == ["-1.00 [-3.48, +1.48]", "+4.50 [+2.02, +6.98]"]
    assert overlapping_labels(fig) == []
    results = tmp_path / "r.json"
    results.write_text(json.dumps(out))
    assert [p.name for p in plot_forest(results, tmp_path / "forest.png")] == ["forest.png", "forest.svg"]
