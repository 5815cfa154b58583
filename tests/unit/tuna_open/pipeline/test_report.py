"""The report of a quickstart-shaped run: where the gain comes from, the rankers' table, report.html in a browser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.browser import chromium, needs_chromium
from helpers.reports import ACCURACY, XSS, write_quickstart_report


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    write_quickstart_report(out)
    return out


def section(markdown: str, title: str) -> list[str]:
    """The table rows of one ``## title`` section of report.md."""
    body = markdown.split(f"## {title}\n")[1].split("\n## ")[0]
    return [line for line in body.splitlines() if line.startswith("| ")][1:]


def test_gains_subtract_each_control_and_the_baseline(run_dir: Path) -> None:
    report = json.loads((run_dir / "report.json").read_text())
    gains = {(g["model"], g["against"]): g["diff"]["accuracy"] for g in report["gains"]}
    a = ACCURACY
    assert gains == pytest.approx({
        ("tuna_p", "tuna_p_mle_only"): a["tuna_p"] - a["tuna_p_mle_only"], ("tuna_p", "sft"): a["tuna_p"] - a["sft"],
        ("tuna_c", "sft_more"): a["tuna_c"] - a["sft_more"],
        ("tuna_c", "tuna_c_mle_only"): a["tuna_c"] - a["tuna_c_mle_only"], ("tuna_c", "sft"): a["tuna_c"] - a["sft"]})
    rows = section((run_dir / "report.md").read_text(), "Where the gain comes from")
    # One decimal, the precision a held-out percentage supports; the primary metric first.
    assert rows[0] == "| tuna_p | tuna_p_mle_only | the ranking term (same data, rank_weight 0) | -10.4 | -10.4 |"
    assert "| tuna_c | sft_more | the ranked data (SFT continued, same model and optimiser) | +1.0 | +1.0 |" in rows


def test_rank_stages_get_a_table_of_what_their_results_count(run_dir: Path) -> None:
    md = (run_dir / "report.md").read_text()
    header = md.split("## Rankers\n")[1].split("\n")[1]
    assert header == ("| rank stage | requests | failed | retried | cache hits | tied pairs | permutation agreement "
                      "| tokens | cost (USD) |")
    rows = section(md, "Rankers")
    assert rows[1] == "| tuna_c_rankings | 2400 | 3 | 1 | 76 | 10489 / 14400 (72.8%) | 0.812 | 1500 | 0.250 |"
    assert rows[0] == "| tuna_p_rankings | 2400 | 3 | 1 | 76 | 10489 / 14400 (72.8%) | — | — | — |"
    stats = json.loads((run_dir / "report.json").read_text())["rankers"]["tuna_c_rankings"]
    assert stats["tied_pairs"] == 10489 and stats["cost_usd"] == 0.25  # report.json keeps the numbers, not cells


def test_plots_are_written_as_png_and_svg(run_dir: Path) -> None:
    assert sorted(p.name for p in (run_dir / "plots").iterdir()) == [
        "accuracy.png", "accuracy.svg", "training_curves.png", "training_curves.svg"]
    md = (run_dir / "report.md").read_text()
    assert md.index("![accuracy.png](plots/accuracy.png)") < md.index("![training_curves.png]") and ".svg)" not in md


def test_report_html_escapes_the_run_strings(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text()
    assert XSS not in page and "&lt;img src=x onerror=&quot;document.title=&#x27;pwned&#x27;&quot;&gt;" in page
    assert page.count("<table>") == 4  # models, gains, stages, rankers


@needs_chromium
def test_report_html_renders_in_a_browser(run_dir: Path) -> None:
    dom = chromium("--dump-dom", (run_dir / "report.html").as_uri())
    assert "pwned" not in dom.split("<title>")[1].split("</title>")[0] and "<img src=\"x\"" not in dom
    assert [h.split("</h2>")[0] for h in dom.split("<h2>")[1:]] == [
        "Models", "Where the gain comes from", "Stages", "Rankers", "Rankings viewer", "Plots"]
    for stage in ("tuna_p_rankings", "tuna_c_rankings", "tuna_p_sample_rankings"):
        assert f'<a href="stages/{stage}/rankings.html">{stage}</a>' in dom
    assert '<a href="plots/accuracy.svg"><img src="plots/accuracy.png"' in dom
    assert "<td>tuna_c</td><td>sft_more</td>" in dom
    shot = run_dir / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,4000", (run_dir / "report.html").as_uri())
    assert shot.stat().st_size > 50_000  # the page with its figures, not a blank one
    print(f"screenshot: {shot}")
