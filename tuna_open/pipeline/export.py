"""``tuna-open export`` and ``tuna-open push``: a run's products in the formats and places the ecosystem reads.

``export``: a rank stage's rankings as a standard Hugging Face dataset (DPO, listwise or SFT rows).

Rankings are the expensive, reusable product of a run (GPT-4 judgements, teacher likelihoods); exporting them in
the formats TRL, LLaMA-Factory and OpenRLHF read lets them train anything, not only Tuna. The output directory
is what ``datasets.load_dataset(DIR)`` and the Hub expect: ``data/train-<content hash>.parquet`` plus a dataset
card (``README.md``) naming the run, the ranker and the counts. Failed rankings are left out, never given an order.

The content hash in the file name is not decoration: datasets 5.2 caches a local directory under its base name and
its data files' relative names, so two exports called ``dpo`` (or one re-exported with other rows) would otherwise
load each other's stale rows from ``~/.cache/huggingface/datasets`` (cf. huggingface/datasets#2956).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Sequence, get_args

from tuna_open import __version__
from tuna_open.data.manifest import read_manifest
from tuna_open.data.records import CANDIDATES_FIELDS, load_records
from tuna_open.distributed import atomic_output_dir
from tuna_open.errors import UserError
from tuna_open.pipeline.outputs import EXPORT_MARKER, check_claimed_dir, check_outputs
from tuna_open.recipe import REF
from tuna_open.train.preferences import PairMode, preference_pairs

ExportFormat = Literal["dpo", "listwise", "sft"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)
PAIR_MODES: tuple[str, ...] = get_args(PairMode)

COLUMNS = {
    "dpo": "`prompt`, `chosen` (ranked higher), `rejected` (ranked lower): TRL's standard preference format",
    "listwise": "`prompt`, `completions` (best first), `scores` (the ranker's, in the same order, or null), `judge`",
    "sft": "`prompt`, `completion` (the best-ranked candidate): TRL's prompt-completion format",
}


def ranked_inputs(run_dir: Path, stage: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(candidates records, ranking records, the rank stage's manifest) of a finished rank stage of a run."""
    stage_dir = run_dir / "stages" / stage
    manifest = read_manifest(stage_dir)
    if manifest is None:
        raise UserError(f"{run_dir}: no finished stage {stage!r} (no {stage_dir / 'manifest.json'})")
    if manifest["kind"] != "rank":
        raise UserError(f"stage {stage!r} is a {manifest['kind']} stage; export reads a rank stage's rankings")
    ref = REF.match(str(manifest["config"].get("input", "")))
    if ref is None:
        raise UserError(f"stage {stage!r}: its input {manifest['config'].get('input')!r} is not an @stage")
    candidates = run_dir / "stages" / ref.group(1) / "records.jsonl"
    if not candidates.is_file():
        raise UserError(f"{candidates}: the candidates of {stage!r} are missing")
    return load_records(candidates, CANDIDATES_FIELDS), load_records(stage_dir / "records.jsonl"), manifest


def judge_name(ranker: dict[str, Any]) -> str:
    """``backend`` plus the model or callable that judged, e.g. ``openai:gpt-4`` or ``function:mod:fn``."""
    what = ranker.get("model") or ranker.get("callable")
    return f"{ranker['backend']}:{what}" if what else str(ranker["backend"])


def export_rows(fmt: ExportFormat, candidates: Sequence[dict[str, Any]], rankings: Sequence[dict[str, Any]],
                judge: str, pairs: PairMode = "best_vs_rest") -> list[dict[str, Any]]:
    """Rows of one format. ``dpo`` reuses the training pair modes (``train/preferences.py``), so an exported
    dataset holds exactly the pairs a ``train_dpo`` stage with the same ``pairs`` would train on."""
    if fmt == "dpo":
        return [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]}
                for p in preference_pairs(candidates, rankings, mode=pairs)]
    by_id = {str(c["id"]): c for c in candidates}
    rows: list[dict[str, Any]] = []
    for ranking in rankings:
        if ranking.get("failed") or not ranking.get("order"):
            continue
        record = by_id.get(str(ranking["id"]))
        if record is None:
            raise UserError(f"ranking {ranking['id']!r} has no candidates record")
        order, scores = ranking["order"], ranking.get("scores")
        texts = [record["candidates"][i] for i in order]
        if fmt == "sft":
            rows.append({"prompt": record["prompt"], "completion": texts[0]})
        else:
            rows.append({"prompt": record["prompt"], "completions": texts,
                         "scores": [float(scores[i]) for i in order] if scores is not None else None,
                         "judge": judge})
    return rows


def dataset_card(fmt: ExportFormat, run_dir: Path, stage: str, manifest: dict[str, Any], judge: str,
                 counts: dict[str, int], pairs: PairMode, data_file: str) -> str:
    """README.md: YAML front matter (so ``load_dataset`` and the Hub find the split) and what the rows are."""
    front = {"configs": [{"config_name": "default", "data_files": [{"split": "train", "path": data_file}]}],
             "tags": ["tuna-open", "rankings", fmt], "task_categories": ["text-generation"]}
    pair_line = f"- Pair mode: `{pairs}`\n" if fmt == "dpo" else ""
    return (
        "---\n" + json.dumps(front, indent=2) + "\n---\n\n"  # JSON is valid YAML
        f"# {fmt} export of rank stage `{stage}`\n\n"
        f"Exported by tuna-open {__version__} from run `{run_dir.resolve().name}` ({run_dir}), stage `{stage}` "
        f"(fingerprint `{manifest['fingerprint'][:12]}`).\n\n"
        f"- Ranker: `{judge}` (permutations: {manifest['config'].get('ranker', {}).get('permutations', 1)})\n"
        f"- Rankings: {counts['rankings']} ({counts['failed']} failed, left out)\n"
        f"{pair_line}- Rows: {counts['rows']}\n\n"
        f"Columns: {COLUMNS[fmt]}.\n\n"
        "Prompts are the templated, model-facing text the candidates were sampled with (no chat template).\n"
    )


def export_dataset(run_dir: Path, stage: str, fmt: ExportFormat, output: Path,
                   pairs: PairMode = "best_vs_rest") -> dict[str, int]:
    """Write ``output`` (replaced atomically) and return its counts: rankings, failed, rows.

    ``output`` must be new, empty or an earlier export (it holds ``EXPORT_MARKER``) and outside the run: it is
    replaced whole, so anything else there would be lost. Checked before anything is read.
    """
    from datasets import Dataset

    check_outputs([output], [run_dir], "export")
    check_claimed_dir(output, EXPORT_MARKER, "export output", replaced=True)
    output = output.resolve()  # ``.``-free: the scratch directory is named after it
    candidates, rankings, manifest = ranked_inputs(run_dir, stage)
    judge = judge_name(manifest["config"]["ranker"])
    rows = export_rows(fmt, candidates, rankings, judge, pairs)
    if not rows:
        raise UserError(f"stage {stage!r}: no {fmt} rows (every ranking failed or stated no preference)")
    counts = {"rankings": len(rankings), "failed": sum(1 for r in rankings if r.get("failed")), "rows": len(rows)}
    with atomic_output_dir(output) as tmp:
        staged = tmp / "data" / "train.parquet"
        staged.parent.mkdir(parents=True)
        Dataset.from_list(rows).to_parquet(str(staged))
        data_file = f"data/train-{hashlib.sha256(staged.read_bytes()).hexdigest()[:16]}.parquet"
        staged.rename(tmp / data_file)
        (tmp / "README.md").write_text(dataset_card(fmt, run_dir, stage, manifest, judge, counts, pairs, data_file),
                                       encoding="utf-8")
        (tmp / EXPORT_MARKER).touch()
    return counts


def require_hub_token() -> None:
    """One line, before any work, when no Hugging Face token is configured: the Hub would refuse the upload
    only after the repo was looked up (or, for ``export --push-to-hub``, after the export was written)."""
    from huggingface_hub import get_token

    if get_token() is None:
        raise UserError("no Hugging Face token: set HF_TOKEN or run 'hf auth login' before pushing")


def push_to_hub(folder: Path, repo_id: str, repo_type: Literal["dataset", "model"] = "dataset",
                private: bool = False, extra: dict[str, str] | None = None) -> str:
    """Create (or reuse) the repo ``repo_id`` and upload ``folder`` plus the ``extra`` files (repo path → text)
    in one commit; returns the commit URL.

    ``extra`` is how a model card reaches the Hub without being written into a stage's output: a file added to
    a finished model directory makes its next ``run`` retrain the stage (its outputs no longer match the
    manifest). The token comes from huggingface_hub's usual places (``HF_TOKEN``, ``hf auth login``); without
    one, one line says so before the Hub is contacted.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    require_hub_token()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != EXPORT_MARKER)
    operations = [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
                  for p in files if p.relative_to(folder).as_posix() not in (extra or {})]
    operations += [CommitOperationAdd(path_in_repo=name, path_or_fileobj=text.encode("utf-8"))
                   for name, text in (extra or {}).items()]
    api = HfApi()
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    info = api.create_commit(repo_id=repo_id, repo_type=repo_type, operations=operations,
                             commit_message=f"Upload {repo_type} from tuna-open")
    return str(getattr(info, "commit_url", info))


def model_card(run_dir: Path, stage: str, manifest: dict[str, Any]) -> str:
    """README.md for a model stage's output: where it came from (stage kind, starting model, data or rankings),
    its training settings, final training loss and the run's held-out metrics for it."""
    config, result = manifest["config"], manifest["result"]
    start = str(config.get("model", ""))
    hub_id = "/" in start and not start.startswith(("@", "/", "."))  # a Hub id, not a run reference or a path
    front = {"library_name": "transformers", "tags": ["tuna-open", manifest["kind"]],
             **({"base_model": start} if hub_id else {})}
    report_file = run_dir / "report.json"
    metrics = json.loads(report_file.read_text()).get("models", {}).get(stage, {}) if report_file.is_file() else {}
    source = config.get("rankings") or config.get("data") or ""
    origin = (f"Trained by tuna-open {__version__}, stage `{stage}` (`{manifest['kind']}`) of run "
              f"`{run_dir.resolve().name}`, fingerprint `{manifest['fingerprint'][:12]}`.")
    earlier = " (an earlier stage of the run)" if start.startswith("@") else ""
    lines = ["---", json.dumps(front, indent=2), "---", "", f"# {stage}", "", origin, "",
             f"- Starting model: `{start or 'random init'}`{earlier}",
             *([f"- Trained on: `{source}`"] if source else []),
             f"- Result: {result['summary']}", ""]
    if config.get("train"):
        lines += ["## Training settings", "", "| setting | value |", "|---|---|"]
        lines += [f"| `{k}` | `{v}` |" for k, v in config["train"].items() if v not in (None, {}, [])]
        lines.append("")
    if metrics:
        lines += ["## Held-out metrics", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in metrics.items()]
        lines.append("")
    return "\n".join(lines)


def publish_model(run_dir: Path, stage: str, repo_id: str, private: bool = False) -> str:
    """Upload a finished model stage's output to ``repo_id``, with a model card beside it (never written into
    the output, which stays the stage's cached artifact)."""
    from tuna_open.stages.registry import STAGES  # loads every stage module: only push needs it

    manifest = read_manifest(run_dir / "stages" / stage)
    if manifest is None:
        raise UserError(f"{run_dir}: no finished stage {stage!r}")
    if STAGES[manifest["kind"]].output != "model":
        raise UserError(f"stage {stage!r} is a {manifest['kind']} stage; push uploads a model stage's model "
                        "(export a rank stage's rankings with 'tuna-open export')")
    model_dir = run_dir / "stages" / stage / "model"
    return push_to_hub(model_dir, repo_id, repo_type="model", private=private,
                       extra={"README.md": model_card(run_dir, stage, manifest)})
