"""Run the quickstart over several seeds and print mean ± std of every held-out metric per model as JSON.

    python benchmarks/quickstart_seeds.py --seeds 0 1 2 [--recipe recipes/quickstart.yaml] [--out FILE]

Each seed is a full, independent pipeline run (its own run dir, so seeds share nothing but the code).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/quickstart.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", default="runs/bench", help="parent of the per-seed run dirs")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra --set for every run")
    args = parser.parse_args()

    per_seed: dict[int, dict] = {}
    seconds: dict[int, float] = {}
    for seed in args.seeds:
        run_dir = Path(args.runs) / f"seed-{seed}"
        cmd = [sys.executable, "-m", "tuna_open.cli", "run", args.recipe, "--run-dir", str(run_dir),
               "--set", f"seed={seed}"] + [x for o in args.overrides for x in ("--set", o)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        seconds[seed] = round(time.perf_counter() - start, 1)
        per_seed[seed] = json.loads((run_dir / "report.json").read_text())["models"]

    models: dict[str, dict[str, dict[str, float]]] = {}
    for name in per_seed[args.seeds[0]]:
        metrics = per_seed[args.seeds[0]][name]
        models[name] = {}
        for metric in metrics:
            values = [per_seed[s][name][metric] for s in args.seeds if metric in per_seed[s].get(name, {})]
            models[name][metric] = {
                "mean": round(statistics.fmean(values), 3),
                "std": round(statistics.stdev(values), 3) if len(values) > 1 else 0.0,
                "values": values,
            }
    out = {"recipe": args.recipe, "seeds": args.seeds, "wall_seconds": seconds, "models": models}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
