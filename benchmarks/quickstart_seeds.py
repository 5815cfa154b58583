"""Run a recipe over several seeds: mean ± std of every held-out metric per model, and paired differences.

    python benchmarks/quickstart_seeds.py --seeds 0 1 2 3 4 [--recipe recipes/quickstart.yaml] [--out FILE]
    python benchmarks/quickstart_seeds.py --recipe recipes/real_gpu.yaml --seeds 0 1 2 --jobs 3   # one GPU
    python benchmarks/quickstart_seeds.py --plot-from RESULTS.json --plot-out FOREST.png   # (and FOREST.svg)
    python benchmarks/quickstart_seeds.py --objectives-table TUNING.json UNTOUCHED.json   # README table, no runs
    python benchmarks/quickstart_seeds.py --merge SEEDS_0-2.json SEEDS_3-4.json --out SEEDS_0-4.json   # no runs

Each seed is a full, independent pipeline run (its own run dir, so seeds share nothing but the code; re-running over
the same ``--runs`` serves finished stages from cache). Models are compared with the recipe's ``report.baseline``
seed by seed: the paired difference on the primary metric, its mean and a 95% t-interval over seeds. Paired, because
seed-to-seed spread (the world, the initialisation and the data all change with the seed) is larger than most
effects. ``diagnostics`` per seed say why a variant helped or not (``diagnose``). ``forest_figure`` draws the
paired differences with their intervals, from the JSON alone.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tuna_open.errors import UserError
from tuna_open.pipeline import lineage
from tuna_open.pipeline.plots import FAMILY_COLOURS, decimals
from tuna_open.recipe import load_recipe
from tuna_open.stages.registry import STAGES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Two-sided 95% critical values of Student's t for 1..30 degrees of freedom (scipy is not a dependency).
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def interval(values: list[float]) -> dict[str, float | list[float]]:
    """Mean, std and the 95% t-interval of the mean (the interval is absent for one value)."""
    mean = statistics.fmean(values)
    out: dict[str, float | list[float]] = {"mean": round(mean, 3), "values": values}
    if len(values) > 1:
        std = statistics.stdev(values)
        half = T95[min(len(values) - 2, len(T95) - 1)] * std / math.sqrt(len(values))
        out.update(std=round(std, 3), ci95=[round(mean - half, 3), round(mean + half, 3)])
    return out


def diagnose(run_dir: Path) -> dict[str, float]:
    """Why a variant helped or not, for the quickstart's stages (absent stages are skipped): how much of the
    feedback is signal (tied pairs, prompts whose candidates hold an accepted answer) and how good the teacher's
    likelihood ranking is against the exact verifier (top-1 precision vs a random pick among the same samples)."""
    from tuna_open.builtin.tasks import score

    def counts(stage: str) -> dict:
        path = run_dir / "stages" / stage / "manifest.json"
        return json.loads(path.read_text())["result"]["counts"] if path.exists() else {}

    out: dict[str, float] = {}
    tuna_c = counts("tuna_c")
    if tuna_c:
        out["tuna_c_prompts_with_accepted_pct"] = 100 * tuna_c["prompts_with_imitated"] / tuna_c["examples"]
        out["tuna_c_tied_pairs_pct"] = 100 * tuna_c["tied_pairs"] / (tuna_c["tied_pairs"] + tuna_c["ranked_pairs"])
    samples = run_dir / "stages/teacher_samples/records.jsonl"
    rankings = run_dir / "stages/tuna_p_rankings/records.jsonl"
    if samples.exists() and rankings.exists():
        by_id = {r["id"]: r for r in map(json.loads, samples.read_text().splitlines())}
        top = rand = n = 0.0
        for r in map(json.loads, rankings.read_text().splitlines()):
            rec = by_id[r["id"]]
            right = [score(c, rec["output"]) >= 1.0 for c in rec["candidates"]]
            if any(right) and not all(right):  # only prompts where the choice matters
                n += 1
                top += right[r["order"][0]]
                rand += sum(right) / len(right)
        if n:
            out["teacher_top1_precision_pct"] = 100 * top / n
            out["teacher_random_pick_precision_pct"] = 100 * rand / n
    for path in sorted(run_dir.glob("stages/*/manifest.json")):
        manifest = json.loads(path.read_text())
        history = manifest["result"].get("history") or []
        if manifest["kind"] != "train_tuna" or not history or "pair_accuracy" not in history[-1]:
            continue
        # The last window's pair accuracy (batches not trained on yet) and how the two terms' gradients compare.
        out[f"{manifest['name']}_pair_accuracy_pct"] = 100 * history[-1]["pair_accuracy"]
        norms = [(h["grad_norm/rank"], h["grad_norm/mle"]) for h in history if "grad_norm/mle" in h]
        if norms and sum(m for _, m in norms):
            out[f"{manifest['name']}_rank_over_mle_grad"] = sum(r for r, _ in norms) / sum(m for _, m in norms)
    eval_path = run_dir / "stages/eval/metrics.json"
    if eval_path.exists():
        # Greedy answers before (sft) and after each stage: the eval keeps its first 20 held-out predictions.
        for name, details in json.loads(eval_path.read_text())["details"].items():
            answers = [e["prediction"] for e in details.get("instructions", {}).get("examples", [])]
            if answers:
                out[f"{name}_answer_chars"] = statistics.fmean(len(a) for a in answers)
                out[f"{name}_repetitive_answers_pct"] = 100 * statistics.fmean(map(repeats_a_bigram, answers))
    return {k: round(v, 2) for k, v in out.items()}


def repeats_a_bigram(text: str) -> bool:
    """Whether an answer repeats a pair of consecutive words (``p, p, p``): the degeneration issue #19 saw."""
    words = text.split()
    bigrams = list(zip(words, words[1:]))
    return len(set(bigrams)) < len(bigrams)


# Paired comparisons beyond the baseline, when both models are in the run: the paper's orderings (Tuna >= Tuna_p,
# Tuna >= PPO) and each gain against the control that would explain it without ranking feedback.
COMPARISONS = (("tuna", "tuna_p"), ("tuna", "ppo"), ("tuna_p", "tuna_p_mle_only"), ("tuna_c", "tuna_c_mle_only"),
               ("tuna_c", "sft_more"), ("tuna_c", "dpo"))


CONTROLLED = ("tuna_p", "tuna_c", "regime")
"""Stages whose variants (``tuna_p``, ``tuna_p_listnet``...) are each compared with the stage's MLE-only control
(``regime``: ``recipes/objectives_regime.yaml``'s Tuna_c on 8 distinct graded candidates)."""


def control_comparisons(names: list[str]) -> list[tuple[str, str]]:
    """(variant, ``<stage>_mle_only``) for every variant of a ``CONTROLLED`` stage whose control is in the run."""
    return [(name, f"{stage}_mle_only") for stage in CONTROLLED for name in names
            if (name == stage or name.startswith(f"{stage}_")) and name != f"{stage}_mle_only"
            and f"{stage}_mle_only" in names]


def summarise(per_seed: dict[int, dict], baseline: str, metric: str) -> dict:
    seeds = sorted(per_seed)
    models: dict[str, dict] = {}
    for name in per_seed[seeds[0]]:
        models[name] = {m: interval([per_seed[s][name][m] for s in seeds if m in per_seed[s].get(name, {})])
                        for m in per_seed[seeds[0]][name]}

    def paired(a: str, b: str) -> dict:
        return interval([per_seed[s][a][metric] - per_seed[s][b][metric] for s in seeds])

    first = per_seed[seeds[0]]
    return {"models": models,
            "paired_vs_baseline": {name: paired(name, baseline) for name in first
                                   if name != baseline and metric in first[name]},
            "paired_comparisons": {f"{a} - {b}": paired(a, b)
                                   for a, b in (*COMPARISONS, *control_comparisons(list(first)))
                                   if a in first and b in first}}


def _ci(d: dict | None) -> str:
    return f"[{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]" if d and "ci95" in d else ""


def markdown(out: dict) -> str:
    """The README's result table: mean ± std per model and the paired difference to the baseline with its 95% CI."""
    metric, baseline = out["metric"], out["baseline"]
    rows = [f"| model | {metric} (mean ± std) | per seed | paired Δ vs {baseline} | 95% CI of Δ |",
            "|---|---|---|---|---|"]
    for name, metrics in out["models"].items():
        m = metrics[metric]
        per_seed = " / ".join(f"{v:.2f}" for v in m["values"])
        d = out["paired_vs_baseline"].get(name)
        delta = f"{d['mean']:+.2f}" if d else ""
        rows.append(f"| {name} | {m['mean']:.2f} ± {m.get('std', 0.0):.2f} | {per_seed} | {delta} | {_ci(d)} |")
    if out.get("paired_comparisons"):
        rows += ["", "| comparison | per seed | paired Δ | 95% CI of Δ | seeds with Δ > 0 |", "|---|---|---|---|---|"]
        for name, d in out["paired_comparisons"].items():
            wins = sum(v > 0 for v in d["values"])
            rows.append(f"| {name} | {' / '.join(f'{v:+.2f}' for v in d['values'])} | {d['mean']:+.2f} | {_ci(d)} "
                        f"| {wins} of {len(d['values'])} |")
    return "\n".join(rows) + "\n"


def families(out: dict) -> dict[str, lineage.Family]:
    """Model → family from the benchmarked recipe (empty when the recipe file is not there to read)."""
    try:
        recipe = load_recipe(Path(out["recipe"]), STAGES)
    except (OSError, UserError):
        return {}
    return lineage.model_families(recipe, list(out["models"]))


def forest_figure(out: dict) -> "Figure":
    """Paired differences on the primary metric with 95% t-intervals and each seed's difference: every model
    against the baseline (teachers left out: their gap is the headroom, not a method's gain), then each stage
    against its controls and baselines (``paired_comparisons``); sorted by the mean, coloured by the family of the
    stage on the left of the minus, a dashed line at zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    fams = families(out)
    groups = [(f"vs {out['baseline']}", {f"{n} − {out['baseline']}": d for n, d in out["paired_vs_baseline"].items()
                                        if fams.get(n) != "teacher"}),
              ("vs controls and baselines", {k.replace(" - ", " − "): d for k, d in out["paired_comparisons"].items()})]
    groups = [(title, sorted(rows.items(), key=lambda kv: kv[1]["mean"])) for title, rows in groups if rows]
    places = decimals([v for _, rows in groups for _, d in rows for v in d.get("ci95", [d["mean"]])])
    fig, axes = plt.subplots(len(groups), 1, sharex=True, layout="constrained", squeeze=False,
                             figsize=(8, 1.0 + 0.36 * sum(len(rows) + 1.5 for _, rows in groups)),
                             height_ratios=[len(rows) + 0.5 for _, rows in groups])
    for ax, (title, rows) in zip(axes[:, 0], groups):
        label_at = blended_transform_factory(ax.transAxes, ax.transData)
        for y, (name, d) in enumerate(rows):
            colour = FAMILY_COLOURS[fams.get(name.split(" − ")[0], "other")]
            lo, hi = d.get("ci95", [d["mean"], d["mean"]])
            ax.plot([lo, hi], [y, y], color=colour, linewidth=2)
            ax.plot(d["mean"], y, "o", color=colour, markersize=6)
            ax.plot(d["values"], [y] * len(d["values"]), "|", color=colour, alpha=0.5, markersize=8)
            ax.text(1.02, y, f"{d['mean']:+.{places}f} [{lo:+.{places}f}, {hi:+.{places}f}]", transform=label_at,
                    va="center", fontsize=8)
        ax.axvline(0, color="black", linestyle="--", linewidth=0.8)
        ax.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=8)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_title(title, fontsize=9, loc="left")
        ax.spines[["top", "right"]].set_visible(False)
    n = len(out["seeds"])
    axes[-1, 0].set_xlabel(f"paired Δ {out['metric']} over {n} seeds: mean (dot), 95% t-interval (line), each seed (|)")
    return fig


def plot_forest(results: Path, target: Path) -> list[Path]:
    """The forest plot of a results JSON, as ``target`` (PNG) and the SVG beside it."""
    fig = forest_figure(json.loads(results.read_text()))
    written = [target.with_suffix(".png"), target.with_suffix(".svg")]
    fig.savefig(written[0], dpi=150)
    fig.savefig(written[1])
    return written


def objectives_table(results: dict[str, dict]) -> str:
    """The README's objectives table: per objective and stage, objective - MLE-only (paired Δ, 95% CI), one column
    per seed set (``results``: label -> a JSON this script wrote for ``recipes/objectives.yaml``)."""
    columns = [(label, stage) for stage in CONTROLLED for label in results
               if any(key.endswith(f" - {stage}_mle_only") for key in results[label]["paired_comparisons"])]
    objectives: list[str] = []
    for out in results.values():
        for key in out["paired_comparisons"]:
            variant, control = key.split(" - ")
            stage = control.removesuffix("_mle_only")
            if control.endswith("_mle_only") and stage in CONTROLLED:
                name = variant.removeprefix(stage).removeprefix("_") or "margin"
                objectives += [name] if name not in objectives else []
    head = [f"{stage} − MLE-only, {label} ({len(results[label]['seeds'])} seeds)" for label, stage in columns]
    rows = ["| objective | " + " | ".join(head) + " |", "|---|" + "---|" * len(columns)]
    for name in objectives:
        cells = []
        for label, stage in columns:
            variant = stage if name == "margin" else f"{stage}_{name}"
            d = results[label]["paired_comparisons"].get(f"{variant} - {stage}_mle_only")
            cells.append(f"{d['mean']:+.2f} {_ci(d)}" if d else "")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def merge(results: list[dict]) -> dict:
    """One results JSON from several of the same recipe and overrides over disjoint seeds, as if run at once: the
    per-seed values are kept in each JSON, so every interval is recomputed over all seeds (not averaged)."""
    first = results[0]
    for out in results[1:]:
        if (out["recipe"], out["overrides"], out["baseline"], out["metric"]) != (
                first["recipe"], first["overrides"], first["baseline"], first["metric"]):
            raise UserError(f"--merge: {out['recipe']} {out['overrides']} is not the run of {first['recipe']} "
                            f"{first['overrides']}")
    seeds = [seed for out in results for seed in out["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--merge: seeds overlap ({sorted(seeds)})")
    per_seed: dict[int, dict] = {}
    for out in results:
        for i, seed in enumerate(out["seeds"]):
            per_seed[seed] = {name: {m: d["values"][i] for m, d in metrics.items()
                                     if len(d["values"]) == len(out["seeds"])}
                              for name, metrics in out["models"].items()}
    by_seed = {key: {str(k): v for out in results for k, v in out[key].items()}
               for key in ("wall_seconds", "stage_seconds", "diagnostics")}
    return {**{k: first[k] for k in ("recipe", "overrides", "baseline", "metric")}, "seeds": sorted(seeds),
            **by_seed, **summarise(per_seed, first["baseline"], first["metric"])}


def run_all(commands: dict[int, list[str]], jobs: int, runs: Path) -> dict[int, float]:
    """Run each seed's pipeline, ``jobs`` at a time; wall seconds per seed. One at a time, its output goes to this
    process's stderr; in parallel, each to ``RUNS/seed-K.log``. A failed seed stops the benchmark (its log says why):
    a table over the seeds that happened to succeed would not be the table asked for."""
    seconds: dict[int, float] = {}
    pending = list(commands)
    running: dict[int, tuple[subprocess.Popen, float]] = {}
    runs.mkdir(parents=True, exist_ok=True)
    while pending or running:
        while pending and len(running) < jobs:
            seed = pending.pop(0)
            if jobs == 1:
                proc = subprocess.Popen(commands[seed], stdout=sys.stderr, stderr=subprocess.STDOUT)
            else:
                with open(runs / f"seed-{seed}.log", "w") as log:  # the child keeps its own copy of the descriptor
                    proc = subprocess.Popen(commands[seed], stdout=log, stderr=subprocess.STDOUT)
            running[seed] = (proc, time.perf_counter())
        time.sleep(0.5)
        for seed, (proc, start) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[seed]
            if proc.returncode:
                for other, _ in running.values():
                    other.terminate()
                raise SystemExit(f"error: seed {seed} failed (exit {proc.returncode}); see its log")
            seconds[seed] = round(time.perf_counter() - start, 1)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/quickstart.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--runs", default="runs/bench", help="parent of the per-seed run dirs")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--markdown", help="also write the README table (from the JSON) here")
    parser.add_argument("--jobs", type=int, default=1,
                        help="seeds run at once (a GPU, many cores); each seed then logs to RUNS/seed-K.log")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra --set for every run")
    parser.add_argument("--plot-from", type=Path, help="run nothing: draw the forest plot of this results JSON")
    parser.add_argument("--plot-out", type=Path, help="where the forest plot goes (PNG, and the SVG beside it)")
    parser.add_argument("--objectives-table", nargs="+", metavar="JSON",
                        help="print the README's objectives table from these JSONs (tuning seeds, then untouched) "
                             "and run nothing")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="run nothing: one results JSON from these (same recipe, disjoint seeds)")
    args = parser.parse_args()
    if args.merge:
        text = json.dumps(merge([json.loads(Path(p).read_text()) for p in args.merge]), indent=2)
        if args.out:
            Path(args.out).write_text(text + "\n")
        print(text)
        return
    if args.plot_from:
        target = args.plot_out or args.plot_from.with_name(args.plot_from.stem + "_forest.png")
        print("\n".join(map(str, plot_forest(args.plot_from, target))))
        return
    if args.objectives_table:
        labels = ["tuning seeds", "untouched seeds"]
        print(objectives_table({labels[i] if i < 2 else path: json.loads(Path(path).read_text())
                                for i, path in enumerate(args.objectives_table)}), end="")
        return

    per_seed: dict[int, dict] = {}
    diagnostics: dict[int, dict] = {}
    stage_seconds: dict[int, float] = {}
    """Seconds the stages took when they ran (unlike ``seconds``, unchanged when a re-run is served from cache)."""
    report: dict = {}
    commands = {seed: [sys.executable, "-m", "tuna_open.cli", "run", args.recipe, "--run-dir",
                       str(Path(args.runs) / f"seed-{seed}"), "--set", f"seed={seed}"]
                + [x for o in args.overrides for x in ("--set", o)] for seed in args.seeds}
    seconds = run_all(commands, args.jobs, Path(args.runs))
    for seed in args.seeds:
        run_dir = Path(args.runs) / f"seed-{seed}"
        report = json.loads((run_dir / "report.json").read_text())
        per_seed[seed] = report["models"]
        diagnostics[seed] = diagnose(run_dir)
        stage_seconds[seed] = round(sum(json.loads(m.read_text())["seconds"]
                                        for m in run_dir.glob("stages/*/manifest.json")), 1)
    baseline = report.get("baseline", "sft")
    metric = report.get("primary_metric", "accuracy")
    out = {"recipe": args.recipe, "overrides": args.overrides, "seeds": args.seeds, "baseline": baseline,
           "metric": metric, "wall_seconds": seconds, "stage_seconds": stage_seconds, "diagnostics": diagnostics,
           **summarise(per_seed, baseline, metric)}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(out))


if __name__ == "__main__":
    main()
