"""The report's tables as text cells, rendered alike to markdown (``report``) and HTML (``report_html``).

Numbers take the precision their noise allows (``plots.decimals``) in the tables added for people to read; the
models table keeps three decimals, the exact values being in ``report.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from tuna_open.pipeline.plots import decimals
from tuna_open.stages.context import StageResult


@dataclass
class Table:
    """A report table as text cells, rendered alike to markdown and HTML (``tuna_open.pipeline.report_html``)."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""
    numeric: list[bool] = field(default_factory=list)
    """Per column: right-aligned numbers."""


def metric_names(models: dict[str, dict[str, float]]) -> list[str]:
    names: list[str] = []
    for metrics in models.values():
        names.extend(m for m in metrics if m not in names)
    return names


RANKER_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("requests", lambda s: s.get("requests")),
    ("failed", lambda s: s.get("failed")),
    ("retried", lambda s: s.get("retried")),
    ("cache hits", lambda s: s.get("cache_hits")),
    ("tied pairs", lambda s: _share(s.get("tied_pairs"), s.get("scored_pairs"))),
    ("permutation agreement", lambda s: s.get("self_consistency_mean", s.get("pair_consistency"))),
    ("tokens", lambda s: _summed(s, ("prompt_tokens", "completion_tokens"))),
    ("cost (USD)", lambda s: _summed(s, ("cost_usd",))),
]
"""What a rank stage's counts and its ranker's stats say, as the report's columns (absent ones are left out)."""


def _share(part: int | None, whole: int | None) -> str | None:
    return None if not whole or part is None else f"{part} / {whole} ({100 * part / whole:.1f}%)"


def _summed(stats: dict[str, Any], names: tuple[str, ...]) -> float | None:
    """The sum of ``names`` over the stats, also an ensemble's per-member ``<i>_<backend>.<name>`` entries."""
    found = [v for k, v in stats.items() if k.rsplit(".", 1)[-1] in names and isinstance(v, (int, float))]
    return sum(found) if found else None


def ranker_stats(results: dict[str, StageResult]) -> dict[str, dict[str, Any]]:
    """Rank stage → its ranker's stats merged with the stage's result counts (``report.json``'s ``rankers``)."""
    return {name: {**r.extra["ranker"], **r.counts} for name, r in results.items() if "ranker" in r.extra}


def tables(report: dict[str, Any]) -> list[Table]:
    """The report's tables, in reading order: models, where the gain comes from, stages, rankers."""
    out: list[Table] = []
    models = report["models"]
    if models:
        metrics = metric_names(models)
        base = models.get(report["baseline"], {})
        rows = []
        for name, values in models.items():
            cells = []
            for m in metrics:
                v = values.get(m)
                cell = "" if v is None else f"{v:.3f}"
                if v is not None and name != report["baseline"] and m in base:
                    cell += f" ({v - base[m]:+.3f})"
                cells.append(cell)
            rows.append([name, *cells])
        out.append(Table("Models", ["model", *metrics], rows,
                         f"Differences in parentheses are against `{report['baseline']}`.",
                         [False] + [True] * len(metrics)))
    if report.get("gains"):
        primary = report["primary_metric"]
        metrics = sorted(metric_names({g["model"]: g["diff"] for g in report["gains"]}), key=lambda m: m != primary)
        places = {m: decimals([v[m] for v in models.values() if m in v]) for m in metrics}
        rows = [[g["model"], g["against"], g["isolates"],
                 *(f"{g['diff'][m]:+.{places[m]}f}" if m in g["diff"] else "" for m in metrics)]
                for g in report["gains"]]
        out.append(Table("Where the gain comes from", ["model", "minus", "the difference measures",
                                                       *(f"Δ {m}" for m in metrics)], rows,
                         "Each stage with controls in the recipe, minus each control and minus the baseline: the MLE-"
                         "only control (rank_weight 0) isolates the ranking term, SFT continued from the same model "
                         "isolates the ranked data. One seed: compare across seeds before concluding.",
                         [False, False, False] + [True] * len(metrics)))
    seconds = report.get("seconds", {})
    cached = sum(e["status"] == "cached" for e in report["stages"])
    note = (f"This run: {seconds['now']:.1f} s of stage time ({cached} of {len(report['stages'])} stages cached); "
            f"computing every output took {seconds['computed']:.1f} s. A cached stage shows the seconds it took "
            "when it ran.") if seconds else ""
    out.append(Table("Stages", ["stage", "kind", "status", "seconds"],
                     [[e["name"], e["kind"], e["status"], f"{e['seconds']:.1f}"] for e in report["stages"]],
                     note, [False, False, False, True]))
    if report.get("rankers"):
        cells = {stage: {col: get(stats) for col, get in RANKER_COLUMNS} for stage, stats in report["rankers"].items()}
        cols = [c for c, _ in RANKER_COLUMNS if any(row[c] is not None for row in cells.values())]
        rows = [[stage, *(_cell(row[c]) for c in cols)] for stage, row in cells.items()]
        out.append(Table("Rankers", ["rank stage", *cols], rows, "", [False] + [True] * len(cols)))
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)
