"""The report's figures: sorted, coloured by family, labelled at the metric's precision, no two labels overlapping."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from helpers.figures import overlapping_labels  # noqa: E402
from helpers.reports import ACCURACY, quickstart_results  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tuna_open.pipeline import lineage, plots  # noqa: E402


def quickstart_figures() -> tuple[Figure, Figure]:
    recipe, results = quickstart_results()
    families = lineage.model_families(recipe, list(ACCURACY))
    bars = plots.metric_figure(ACCURACY, families, "accuracy", "sft")
    kinds = {s.name: s.kind for s in recipe.stages}
    curves = plots.curves_figure({n: r.history for n, r in results.items() if r.history}, kinds)
    return bars, curves


def test_the_overlap_check_sees_colliding_labels() -> None:
    fig, ax = plt.subplots()
    ax.text(0.5, 0.5, "twenty-one")
    ax.text(0.52, 0.5, "twenty-two")
    assert overlapping_labels(fig) == [("twenty-one", "twenty-two")]
    plt.close(fig)


def test_no_two_labels_overlap_in_either_figure() -> None:
    for fig in quickstart_figures():
        assert overlapping_labels(fig) == []
        plt.close(fig)


def test_bars_are_sorted_coloured_by_family_and_labelled_at_one_decimal() -> None:
    bars, curves = quickstart_figures()
    ax = bars.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names == sorted(ACCURACY, key=ACCURACY.get)  # the best at the top
    values = [t.get_text() for t in ax.texts]
    assert values == [f"{ACCURACY[n]:.1f}" for n in names] and "26.4" in values
    colours = {n: matplotlib.colors.to_hex(p.get_facecolor()) for n, p in zip(names, ax.patches)}
    assert colours["tuna_c"] == colours["tuna"] == plots.FAMILY_COLOURS["Tuna"]
    assert colours["sft_more"] == colours["tuna_c_mle_only"] == plots.FAMILY_COLOURS["SFT and controls"]
    assert colours["teacher"] == plots.FAMILY_COLOURS["teacher"] != colours["dpo"] == plots.FAMILY_COLOURS["baselines"]
    plt.close(bars)
    plt.close(curves)


def test_curves_are_small_multiples_per_quantity_and_kind_with_a_colour_per_stage() -> None:
    bars, curves = quickstart_figures()
    titles = [ax.get_title() for ax in curves.axes if ax.get_visible()]
    assert titles == ["loss (sft)", "loss (train_reward)", "reward_margin (train_reward)", "loss (train_tuna)",
                      "rank_loss (train_tuna)", "mle_loss (train_tuna)", "logps (train_tuna)", "loss (train_dpo)",
                      "reward_margin (train_dpo)", "loss (train_ppo)", "reward (train_ppo)", "kl (train_ppo)"]
    logps = next(ax for ax in curves.axes if ax.get_title() == "logps (train_tuna)")
    assert [t.get_text() for t in logps.get_legend().get_texts()] == ["rank_0", "rank_1"]
    stages = [t.get_text() for t in curves.legends[0].get_texts()]
    assert stages == ["sft", "teacher", "reward", "tuna_p", "tuna_c", "tuna", "sft_more", "tuna_c_mle_only",
                      "tuna_p_mle_only", "dpo", "ppo"]
    assert len(set(plots.stage_colours(stages).values())) == len(stages)
    plt.close(bars)
    plt.close(curves)


def test_decimals_follow_the_scale() -> None:
    assert [plots.decimals(v) for v in ([61.875, 20.75], [0.8125], [5.5], [])] == [1, 3, 2, 2]


def test_a_panel_tells_apart_up_to_sixteen_series() -> None:
    styles = [tuple(sorted(s.items())) for s in plots.line_styles(17)]
    assert len(set(styles[:16])) == 16 and styles[16] == styles[0]
