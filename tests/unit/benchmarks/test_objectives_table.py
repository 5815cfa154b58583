"""benchmarks/quickstart_seeds.py for the objectives benchmark: every variant against its stage's MLE-only control,
and the README table built from the JSONs alone."""

from __future__ import annotations

import sys

from helpers.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import pytest  # noqa: E402
from quickstart_seeds import merge, objectives_table, summarise  # noqa: E402

from tuna_open.errors import UserError  # noqa: E402


def run(offset: float) -> dict:
    per_seed = {s: {"sft": {"accuracy": 10.0}, "tuna_p": {"accuracy": 8.0 + s}, "tuna_p_mle_only": {"accuracy": 10.0},
                    "tuna_p_listnet": {"accuracy": 10.0 + offset + s}, "tuna_c": {"accuracy": 9.0},
                    "tuna_c_mle_only": {"accuracy": 9.5}, "tuna_c_listnet": {"accuracy": 9.5}} for s in (0, 1, 2)}
    return {"seeds": [0, 1, 2], **summarise(per_seed, "sft", "accuracy")}


def test_variants_are_compared_with_their_own_control():
    comparisons = run(1.0)["paired_comparisons"]
    assert comparisons["tuna_p_listnet - tuna_p_mle_only"]["values"] == [1.0, 2.0, 3.0]
    assert comparisons["tuna_c_listnet - tuna_c_mle_only"]["values"] == [0.0, 0.0, 0.0]
    assert comparisons["tuna_p - tuna_p_mle_only"]["values"] == [-2.0, -1.0, 0.0]
    assert "tuna_p_mle_only - tuna_p_mle_only" not in comparisons
    assert not any(k.startswith("tuna_c_listnet - tuna_p") for k in comparisons)


def test_objectives_table_has_a_row_per_objective_and_a_column_per_stage_and_seed_set():
    table = objectives_table({"tuning seeds": run(1.0), "untouched seeds": run(-4.0)})
    lines = table.splitlines()
    assert lines[0].count("tuning seeds") == 2 and lines[0].count("untouched seeds") == 2
    margin = next(line for line in lines if line.startswith("| margin |"))
    listnet = next(line for line in lines if line.startswith("| listnet |"))
    assert margin.count("-1.00") == 2  # the paper's term, both seed sets
    assert "| +2.00 [" in listnet and "| -3.00 [" in listnet
    assert len(lines) == 4


def test_diagnose_reads_the_trainer_diagnostics_of_every_tuna_stage(tmp_path):
    import json

    from quickstart_seeds import diagnose

    history = [{"step": 50.0, "loss": 1.0, "pair_accuracy": 0.5, "grad_norm/rank": 1.0, "grad_norm/mle": 4.0},
               {"step": 100.0, "loss": 0.9, "pair_accuracy": 0.75, "grad_norm/rank": 3.0, "grad_norm/mle": 4.0}]
    for name, kind, hist in (("tuna_p_lipo", "train_tuna", history), ("sft", "sft", [{"step": 1.0, "loss": 2.0}])):
        (tmp_path / "stages" / name).mkdir(parents=True)
        (tmp_path / "stages" / name / "manifest.json").write_text(json.dumps(
            {"name": name, "kind": kind, "result": {"counts": {}, "history": hist}}))
    assert diagnose(tmp_path) == {"tuna_p_lipo_pair_accuracy_pct": 75.0, "tuna_p_lipo_rank_over_mle_grad": 0.5}


def test_diagnose_measures_answer_length_and_repetition(tmp_path):
    import json

    from quickstart_seeds import diagnose, repeats_a_bigram

    assert repeats_a_bigram("p, p, p,") and not repeats_a_bigram("p, q p") and not repeats_a_bigram("")
    examples = {"sft": ["12", "abcd"], "tuna_c": ["p, p, p,", "7"]}
    (tmp_path / "stages/eval").mkdir(parents=True)
    (tmp_path / "stages/eval/metrics.json").write_text(json.dumps({"metrics": {}, "details": {
        name: {"instructions": {"examples": [{"prediction": p} for p in answers]}}
        for name, answers in examples.items()}}))
    assert diagnose(tmp_path) == {"sft_answer_chars": 3.0, "sft_repetitive_answers_pct": 0.0,
                                  "tuna_c_answer_chars": 4.5, "tuna_c_repetitive_answers_pct": 50.0}


def results(seeds: list[int]) -> dict:
    per_seed = {s: {"sft": {"accuracy": 10.0}, "tuna_p": {"accuracy": 8.0 + s * s},
                    "tuna_p_mle_only": {"accuracy": 10.0}} for s in seeds}
    return {"recipe": "r.yaml", "overrides": [], "baseline": "sft", "metric": "accuracy", "seeds": seeds,
            "wall_seconds": {str(s): 1.0 for s in seeds}, "stage_seconds": {str(s): 2.0 for s in seeds},
            "diagnostics": {str(s): {"d": s} for s in seeds}, **summarise(per_seed, "sft", "accuracy")}


def test_merged_results_equal_one_run_over_all_seeds():
    merged = merge([results([0, 1, 2]), results([3, 4])])
    once = results([0, 1, 2, 3, 4])
    assert merged["seeds"] == [0, 1, 2, 3, 4] and merged["diagnostics"]["4"] == {"d": 4}
    for key in ("models", "paired_vs_baseline", "paired_comparisons"):
        assert merged[key] == once[key]  # intervals over all five seeds, not averages of the parts


def test_merge_refuses_overlapping_seeds_and_other_recipes():
    with pytest.raises(UserError, match="overlap"):
        merge([results([0, 1]), results([1, 2])])
    with pytest.raises(UserError, match="not the run of"):
        merge([results([0, 1]), {**results([2, 3]), "recipe": "other.yaml"}])
