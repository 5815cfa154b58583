"""The ``tuna-open`` command line. It parses flags and prints; all pipeline logic lives in the stages.

User mistakes (bad recipe, missing file, unknown backend) print one ``error:`` line and exit 2.
"""

from __future__ import annotations

import errno
import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from rankers import EngineError, RankerConfigError
from tuna_open.errors import UserError

console = Console(soft_wrap=True)  # one line per stage, however narrow the terminal

MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG})
"""OS errors that are this machine's state, not a bug: a full disk, a read-only or foreign directory, a name the
file system refuses. Every write is atomic (a temporary file or directory swapped in when complete), so at
that point nothing finished is lost and the same command resumes once the cause is fixed."""


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user mistakes into one clear line and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (UserError, RankerConfigError, EngineError) as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except ModuleNotFoundError as err:
            if err.name is None or err.name.split(".")[0] in {"tuna_open", "rankers"}:
                raise  # our own import is a bug, not a user's missing package
            click.echo(f"error: the {err.name} module is not installed (needed by this command); install the "
                       f"package that provides it, e.g. pip install {err.name.split('.')[0]}", err=True)
            sys.exit(2)
        except OSError as err:
            if err.errno not in MACHINE_ERRNOS:
                raise
            where = f"{err.filename}: " if err.filename else ""
            click.echo(f"error: {where}{err.strerror or err}; nothing finished was lost, run the same command "
                       "again once this is fixed", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished sampling and ranking records are kept (a training stage restarts); "
                       "run the same command again to resume", err=True)
            sys.exit(130)

    return wrapper


def _quiet_libraries() -> None:
    """One summary line per stage: library progress bars, info logs and deprecation chatter would bury it."""
    import warnings

    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", category=FutureWarning)

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    import datasets

    datasets.disable_progress_bars()


class OneLineErrors(click.Group):
    """Click shows a bad option as three lines (usage, a help hint, then the message); this CLI's rule for every user
    mistake is one ``error:`` line and exit 2, so a script or a log reads the same shape whatever the mistake."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:  # a caller that handles click's exceptions itself
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as err:  # bad value, unknown option, missing argument
            where = f" ({err.ctx.command_path})" if err.ctx is not None else ""
            click.echo(f"error: {err.format_message()}{where}; see --help", err=True)
            sys.exit(2)
        except click.ClickException as err:
            click.echo(f"error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=OneLineErrors)
@click.version_option(package_name="tuna-open")
def main() -> None:
    """Tuna instruction tuning (probabilistic + contextual ranking) with pluggable teachers and judges."""


@main.command()
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@click.option("--run-dir", type=click.Path(path_type=Path), help="Where artifacts go (default: runs/<recipe name>).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set ranker.backend=teacher_logprob "
                   "--set stages.sft.train.num_train_epochs=1")
@click.option("--dry-run", is_flag=True, help="Validate and show which stages would run or are cached.")
@click.option("--from-stage", metavar="NAME", help="Re-run this stage and every later one, ignoring the cache.")
@user_errors
def run(recipe_path: Path, run_dir: Path | None, overrides: tuple[str, ...], dry_run: bool,
        from_stage: str | None) -> None:
    """Run a recipe: every stage whose inputs changed, the rest from cache; then write the report."""
    from tuna_open.distributed import is_main
    from tuna_open.pipeline.runner import default_run_dir, run_recipe
    from tuna_open.recipe import load_recipe
    from tuna_open.stages.registry import STAGES

    recipe = load_recipe(recipe_path, STAGES, list(overrides))
    run_dir = run_dir or default_run_dir(recipe)
    _quiet_libraries()
    console.quiet = not is_main()  # under accelerate launch, one process speaks
    console.print(f"[bold]{recipe.name}[/bold] → {run_dir}")
    report = run_recipe(recipe, run_dir, from_stage=from_stage, dry_run=dry_run, console=console)
    if not dry_run:
        print_models(report)
        console.print(f"report: {run_dir / 'report.md'}")


@main.command()
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@click.option("--check-endpoints", is_flag=True, help="Also check that every base_url the recipe uses answers.")
@click.option("--schema-only", is_flag=True, help="Skip the pre-flight checks of this machine (keys, packages).")
@user_errors
def validate(recipe_path: Path, overrides: tuple[str, ...], check_endpoints: bool, schema_only: bool) -> None:
    """Check a recipe without running anything: schema, files, backends, stage wiring, then pre-flight (API key
    variables set, optional packages such as vllm/deepspeed/trackers installed, endpoints up with --check-endpoints)."""
    from tuna_open.pipeline.preflight import preflight
    from tuna_open.recipe import load_recipe
    from tuna_open.stages.registry import STAGES

    recipe = load_recipe(recipe_path, STAGES, list(overrides))
    checked = preflight(recipe, check_endpoints=check_endpoints) if not schema_only else None
    if checked and checked.problems:
        raise UserError(f"{recipe_path}: " + "; ".join(checked.problems))
    endpoints = f", {len(checked.endpoints)} endpoints answer" if checked and check_endpoints else ""
    click.echo(f"ok: {recipe_path} ({len(recipe.stages)} stages: {', '.join(s.name for s in recipe.stages)}"
               f"{endpoints})")



@main.command()
@click.option("--ranker", "ranker_path", required=True, type=click.Path(path_type=Path),
              help="YAML/JSON ranker config: a flat {backend, ...} or a recipe-style block with per-backend options.")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="Candidates JSONL ({id, instruction, input, candidates, ...}).")
@click.option("--output", "output_path", required=True, type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@user_errors
def rank(ranker_path: Path, input_path: Path, output_path: Path, overrides: tuple[str, ...], batch_size: int) -> None:
    """Rank a candidates file with any ranker config (resumable; cached when cache_dir is set).

    Every path it writes (the rankings, their ``.partial`` file, the ``.html`` viewer beside them; the cache when
    the config is validated) is checked before the first paid request, and the output is locked: a mistake or a
    second command on the same file costs nothing.
    """
    from pydantic import ValidationError

    from tuna_open.data.jsonl import read_jsonl
    from tuna_open.data.records import RANK_INPUT_FIELDS, load_records
    from tuna_open.models import resolve_model_refs
    from tuna_open.pipeline.integrity import RunDirLock
    from tuna_open.pipeline.outputs import check_file_output, check_outputs, enclosing_run_dir
    from tuna_open.recipe import RankerChoice, apply_overrides, load_mapping
    from tuna_open.stages.context import track
    from tuna_open.stages.rank import rank_records
    from tuna_open.stages.rank_viewer import write_rankings_html

    raw = apply_overrides(load_mapping(ranker_path, "ranker config"), list(overrides))
    try:
        choice = RankerChoice.model_validate(raw)
    except ValidationError as err:
        raise UserError(f"{ranker_path}: {err.errors()[0]['msg']}") from None
    if not input_path.is_file():
        raise UserError(f"{input_path}: file not found")
    viewer_path = output_path.with_suffix(".html")
    written = [output_path, output_path.with_name(output_path.name + ".partial"), viewer_path]
    check_outputs(written, [input_path, ranker_path], "rank")
    for path in written:
        check_file_output(path, "rank")
    records = load_records(input_path, RANK_INPUT_FIELDS)
    _quiet_libraries()
    run_dir = enclosing_run_dir(output_path)  # inside a run: the run's own lock, as 'run' takes it
    lock = RunDirLock(run_dir) if run_dir else RunDirLock(output_path.parent, f".{output_path.name}.lock",
                                                          "use another --output", transient=True)
    with lock:
        result = rank_records(records, resolve_model_refs(choice.flat()), output_path, batch_size,
                              choice.max_failure_fraction, functools.partial(track, console))
    viewer = write_rankings_html(records, read_jsonl(output_path), viewer_path,
                                 f"rankings of {input_path.name} ({choice.backend})")
    click.echo(f"{result.summary} → {output_path} (viewer: {viewer})")


@main.command()
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@click.option("--category", "category_key", default=None, help="Record field to break agreement down by.")
@user_errors
def agree(a: Path, b: Path, category_key: str | None) -> None:
    """Compare two rankings files of the same candidates: Kendall τ, top-1 agreement, per category."""
    from rankers.agreement import agreement
    from tuna_open.data.records import load_records

    for p in (a, b):
        if not p.is_file():
            raise UserError(f"{p}: file not found")
    try:  # each record a ranking: an order, or a failure (a candidates file given by mistake names its line)
        result = agreement(*(load_records(p, ("id", ("order", "failed"))) for p in (a, b)), category_key=category_key)
    except ValueError as err:
        raise UserError(str(err)) from None
    click.echo(json.dumps(result, indent=2))


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("stage")
@click.option("--format", "fmt", required=True, type=click.Choice(["dpo", "listwise", "sft"]),
              help="dpo: prompt/chosen/rejected; listwise: prompt/completions best-first/scores/judge; "
                   "sft: prompt/completion (the best-ranked).")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Dataset directory to write.")
@click.option("--pairs", default="best_vs_rest", show_default=True,
              type=click.Choice(["all_pairs", "best_vs_rest", "best_vs_worst"]), help="Pair mode of --format dpo.")
@click.option("--push-to-hub", "repo_id", metavar="REPO", help="Also upload the dataset to this Hub repo.")
@user_errors
def export(run_dir: Path, stage: str, fmt: str, output: Path, pairs: str, repo_id: str | None) -> None:
    """Export a rank stage's rankings as a Hugging Face dataset (loadable with datasets.load_dataset(OUTPUT))."""
    from tuna_open.pipeline.export import export_dataset, push_to_hub, require_hub_token

    if repo_id:
        require_hub_token()
    _quiet_libraries()
    counts = export_dataset(run_dir, stage, fmt, output, pairs)  # type: ignore[arg-type]
    click.echo(f"{counts['rows']} {fmt} rows from {counts['rankings']} rankings ({counts['failed']} failed) → {output}")
    if repo_id:
        click.echo(f"pushed: {push_to_hub(output, repo_id)}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("stage")
@click.argument("repo_id", metavar="REPO")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@user_errors
def push(run_dir: Path, stage: str, repo_id: str, private: bool) -> None:
    """Upload a model stage's model, with a model card, to the Hugging Face Hub."""
    from tuna_open.pipeline.export import publish_model

    click.echo(f"pushed: {publish_model(run_dir, stage, repo_id, private)}")


@main.command("eval")
@click.option("--model", "models", multiple=True, required=True, metavar="NAME=MODEL",
              help="A model to evaluate (local dir, HF id, smollm2-135m-instruct, gemma-3-270m or gguf:PATH); "
                   "repeat for several.")
@click.option("--data", "data_source",
              help="Held-out instruction data (JSON/JSONL/CSV/Parquet, hf:ID or builtin:tasks).")
@click.option("--template", default="alpaca", show_default=True, help="How --data reaches the models: alpaca, raw "
              "or chat (each model's chat template).")
@click.option("--split", help="Split of --data (builtin: heldout; hf: test).")
@click.option("--limit", type=int, help="Evaluate on the first N records of --data.")
@click.option("--verifier", help="module:function scoring (response, reference) in [0, 1] (enables accuracy).")
@click.option("--superni", help="Super-NaturalInstructions: a natural-instructions checkout or hf:ID.")
@click.option("--lmentry", type=click.Path(path_type=Path), help="LMentry task files directory.")
@click.option("--vicuna", type=click.Path(path_type=Path), help="Vicuna QA questions JSONL (needs --judge).")
@click.option("--judge", type=click.Path(path_type=Path), help="Ranker config YAML for Vicuna QA.")
@click.option("--baseline", help="Model every other model is compared with (Vicuna QA and the report).")
@click.option("--max-new-tokens", default=256, show_default=True)
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path("runs/eval"), show_default=True)
@user_errors
def eval_cmd(models: tuple[str, ...], data_source: str | None, template: str, split: str | None, limit: int | None,
             verifier: str | None, superni: str | None, lmentry: Path | None, vicuna: Path | None,
             judge: Path | None, baseline: str | None, max_new_tokens: int, run_dir: Path) -> None:
    """Evaluate models on held-out data and the paper's benchmarks without writing a recipe.

    Builds a one-stage recipe (kept as RUN_DIR/recipe.json, secrets masked) and runs it like any other, so
    re-running the same command is served from the cache.
    """
    from tuna_open.pipeline.runner import run_recipe
    from tuna_open.recipe import load_mapping, parse_recipe
    from tuna_open.stages.registry import STAGES

    pairs = [m.split("=", 1) for m in models]
    if any(len(p) != 2 or not all(p) for p in pairs):
        raise UserError("--model expects NAME=MODEL")
    if vicuna and not judge:
        raise UserError("--vicuna needs --judge (a ranker config YAML)")
    stage: dict[str, Any] = {"name": "eval", "kind": "eval", "models": dict(pairs), "max_new_tokens": max_new_tokens}
    recipe: dict[str, Any] = {"name": "eval", "stages": [stage],
                              "report": {"baseline": baseline or pairs[0][0],
                                         "primary_metric": "accuracy" if verifier else "rougeL"}}
    if data_source:
        src = data_source if ":" in data_source else str(Path(data_source).resolve())
        recipe["data"] = {"heldout": {"source": src, "split": split, "limit": limit}}
        stage.update(data="heldout", verifier=verifier, template=template)
    if superni:
        stage["superni"] = {"source": superni if superni.startswith("hf:") else str(Path(superni).resolve())}
    if lmentry:
        stage["lmentry"] = {"data_dir": str(lmentry.resolve())}
    if vicuna:
        stage["vicuna_qa"] = {"questions": str(vicuna.resolve()), "baseline": baseline}
        stage["ranker"] = load_mapping(judge, "judge config")
    parsed = parse_recipe(recipe, Path.cwd(), "tuna-open eval", STAGES)
    _quiet_libraries()
    report = run_recipe(parsed, run_dir, console=console)
    print_models(report)
    console.print(f"report: {run_dir / 'report.md'}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@user_errors
def report(run_dir: Path) -> None:
    """Rebuild and print the report of a run directory from its stage manifests."""
    from tuna_open.pipeline.report import report_from_run_dir

    print_models(report_from_run_dir(run_dir))
    console.print(f"report: {run_dir / 'report.md'}")


def print_models(report: dict[str, Any]) -> None:
    models = report["models"]
    if not models:
        console.print("no evaluated models in this run")
        return
    from tuna_open.pipeline.tables import metric_names

    table = Table(title=f"{report['recipe']}: held-out metrics")
    table.add_column("model")
    metrics = metric_names(models)
    for m in metrics:
        table.add_column(m, justify="right")
    for name, values in models.items():
        table.add_row(name, *(f"{values[m]:.2f}" if m in values else "" for m in metrics))
    console.print(table)


if __name__ == "__main__":
    main()
