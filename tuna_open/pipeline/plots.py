"""The report's figures, one per question, drawn to be printed: PNG for the page, SVG for a paper.

- ``<primary>.png``: how good is each model? Horizontal bars sorted by the primary metric, one colour per family
  (``tuna_open.pipeline.lineage``), the baseline as a dashed line, each bar labelled at the precision the metric
  supports (``decimals``);
- ``training_curves.png``: how did training go? Small multiples, one panel per logged quantity and stage kind (keys
  sharing a ``prefix/`` share a panel), each on its own scale, one colour per stage across every panel.

Every text label is placed so that none overlaps another; the tests measure it from matplotlib's text extents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuna_open.pipeline.lineage import FAMILIES, Family

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FAMILY_COLOURS: dict[Family, str] = {"SFT and controls": "#8c8c8c", "Tuna": "#1f77b4", "baselines": "#ff7f0e",
                                     "teacher": "#2ca02c", "other": "#9467bd"}
NOT_PLOTTED = frozenset({"step", "epoch", "learning_rate", "grad_norm"})
"""History keys that are bookkeeping or schedule, not what the training achieved."""
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("", "o", "s", "^")


def line_styles(n: int) -> list[dict[str, Any]]:
    """``n`` distinguishable styles for the series of one panel (``logps/rank_0`` … ``rank_k``): line styles, then
    line styles with markers, sixteen before any repeats."""
    combos = [(m, ls) for m in MARKERS for ls in LINESTYLES]
    return [{"linestyle": ls, "marker": m or None, "markersize": 3} for m, ls in
            (combos[i % len(combos)] for i in range(n))]


def decimals(values: list[float]) -> int:
    """Decimals that keep three significant figures of the largest value: a held-out percentage over hundreds of
    prompts moves by about a point between seeds, so ``26.4`` says all there is and ``26.375`` claims noise."""
    largest = max((abs(v) for v in values), default=0.0)
    return 2 if largest == 0 else max(0, 2 - math.floor(math.log10(largest)))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster node
    import matplotlib.pyplot as plt

    return plt


def _save(fig: "Figure", out_dir: Path, stem: str) -> list[str]:
    fig.savefig(out_dir / f"{stem}.png", dpi=150)
    fig.savefig(out_dir / f"{stem}.svg")
    _pyplot().close(fig)
    return [f"{stem}.png", f"{stem}.svg"]


def metric_figure(scores: dict[str, float], families: dict[str, Family], metric: str,
                  baseline: str | None) -> "Figure":
    """Horizontal bars, best at the top; labels at the bar ends, the family legend outside the axes."""
    plt = _pyplot()
    ranked = sorted(scores.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.32 * len(ranked)), layout="constrained")
    y = list(range(len(ranked)))
    ax.barh(y, [v for _, v in ranked], color=[FAMILY_COLOURS[families.get(m, "other")] for m, _ in ranked],
            height=0.7)
    ax.set_yticks(y, [m for m, _ in ranked])
    places = decimals([v for _, v in ranked])
    lo, hi = min(0.0, *(v for _, v in ranked)), max(0.0, *(v for _, v in ranked))
    pad = 0.01 * (hi - lo or 1.0)
    for yi, (_, v) in zip(y, ranked):
        ax.text(v + (pad if v >= 0 else -pad), yi, f"{v:.{places}f}", va="center",
                ha="left" if v >= 0 else "right", fontsize=8)
    ax.set_xlim(lo - (0.15 * (hi - lo) if lo < 0 else 0), hi + 0.15 * (hi - lo or 1.0))
    if baseline in scores:
        ax.axvline(scores[baseline], color="black", linestyle="--", linewidth=0.8)
    ax.set_xlabel(f"{metric} (held out)" + (f"; dashed: {baseline}" if baseline in scores else ""))
    ax.spines[["top", "right"]].set_visible(False)
    shown = [f for f in FAMILIES if f in {families.get(m, "other") for m in scores}]
    handles = [plt.Rectangle((0, 0), 1, 1, color=FAMILY_COLOURS[f]) for f in shown]
    fig.legend(handles, shown, loc="outside upper center", ncols=len(shown), fontsize=8, frameon=False)
    return fig


@dataclass(frozen=True)
class Panel:
    """One quantity of one stage kind: a DPO loss and an SFT loss are different quantities, on their own scales."""

    kind: str
    keys: tuple[str, ...]

    @property
    def title(self) -> str:
        return f"{self.keys[0].split('/', 1)[0]} ({self.kind})"


def panels(histories: dict[str, list[dict[str, float]]], kinds: dict[str, str]) -> list[Panel]:
    """The panels to draw: per stage kind, each numeric history key alone, keys ``prefix/...`` together."""
    found: dict[tuple[str, str], list[str]] = {}
    for stage, history in histories.items():
        for row in history:
            for key, value in row.items():
                if key in NOT_PLOTTED or not isinstance(value, (int, float)):
                    continue
                keys = found.setdefault((kinds[stage], key.split("/", 1)[0]), [])
                if key not in keys:
                    keys.append(key)
    return [Panel(kind, tuple(keys)) for (kind, _), keys in found.items()]


def stage_colours(stages: list[str]) -> dict[str, Any]:
    """A distinct colour per stage: tab20's dark shades, then its light ones (twenty before any repeats)."""
    _pyplot()
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return {s: cmap(order[i % 20]) for i, s in enumerate(stages)}


def curves_figure(histories: dict[str, list[dict[str, float]]], kinds: dict[str, str]) -> "Figure":
    """Small multiples: a panel per quantity, stages as coloured lines, a key's sub-series as line styles."""
    plt = _pyplot()
    layout = panels(histories, kinds)
    cols = min(3, len(layout))
    rows = math.ceil(len(layout) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows + 0.8), layout="constrained",
                             squeeze=False)
    colours = stage_colours(list(histories))
    drawn: dict[str, Any] = {}
    for ax, panel in zip(axes.flat, layout):
        keys = panel.keys
        styles = line_styles(len(keys))
        for stage, history in histories.items():
            if kinds[stage] != panel.kind:
                continue
            for key, style in zip(keys, styles):
                pts = [(h["step"], h[key]) for h in history if key in h and "step" in h]
                if pts:
                    (line,) = ax.plot(*zip(*pts), color=colours[stage], linewidth=1.2, **style)
                    drawn.setdefault(stage, line)
        ax.set_title(panel.title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        values = [h[k] for stage, history in histories.items() if kinds[stage] == panel.kind
                  for h in history for k in keys if k in h and math.isfinite(h[k])]
        if values and min(values) > 0 and max(values) / min(values) > 100:
            ax.set_yscale("log")  # a loss falling by orders of magnitude
        if len(keys) > 1:
            ax.legend([plt.Line2D([], [], color="black", **style) for style in styles],
                      [k.split("/", 1)[1] if "/" in k else k for k in keys], fontsize=6, frameon=False)
    for ax in list(axes.flat)[len(layout):]:
        ax.set_visible(False)
    shown = [s for s in histories if s in drawn]  # in the recipe's order, not the panels'
    fig.legend([drawn[s] for s in shown], shown, loc="outside upper center", ncols=min(6, len(shown)),
               fontsize=8, frameon=False)
    return fig


def draw(out_dir: Path, histories: dict[str, list[dict[str, float]]], kinds: dict[str, str],
         scores: dict[str, float], families: dict[str, Family], metric: str, baseline: str) -> list[str]:
    """Write the figures that have data; returns their file names under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)  # also for the figures stages drew themselves
    written: list[str] = []  # the result first, then how training went
    if scores:
        written += _save(metric_figure(scores, families, metric, baseline), out_dir, metric)
    if panels(histories, kinds):
        written += _save(curves_figure(histories, kinds), out_dir, "training_curves")
    return written
