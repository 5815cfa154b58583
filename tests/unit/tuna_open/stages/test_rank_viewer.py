"""``rankings.html``: every rank stage writes it, the report links it, and a real browser shows and filters it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from helpers.browser import chromium, needs_chromium

from rankers.base import Ranking, RankRequest
from rankers.wrappers.permutations import PermutedRanker
from tuna_open.stages.rank_viewer import render_rankings_html, write_rankings_html

XSS = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"


class PositionBiasedJudge:
    """A judge that prefers longer answers, except on BIAS prompts (whatever is shown first wins) and FAIL
    prompts (an unparseable verdict): permutations then disagree or fail for real."""

    name = "fake"

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        out = []
        for r in requests:
            if "FAIL" in r.prompt:
                out.append(Ranking.failure("no 'rank: [...]' line in the verdict", raw=f"I refuse {XSS}"))
            elif "BIAS" in r.prompt:
                out.append(Ranking(order=list(range(len(r.candidates))), raw="Response 1 is best (it came first)."))
            else:
                scores = [float(len(c)) for c in r.candidates]
                order = sorted(range(len(scores)), key=lambda i: -scores[i])
                out.append(Ranking(order=order, scores=scores, raw=f"Longer is better. rank: {order}"))
        return out


def judged_records() -> tuple[list[dict], list[dict]]:
    prompts = {"p-ok": "Name a prime number.", "p-bias": "BIAS: pick a colour.", "p-fail": "FAIL: add 2 and 3.",
               "p-xss": f"Echo this: {XSS}"}
    candidates = [{"id": i, "instruction": text, "input": "", "output": "5" if i == "p-fail" else "",
                   "prompt": text, "candidates": ["seven", "2", "eleven!", XSS if i == "p-xss" else "13"]}
                  for i, text in prompts.items()]
    requests = [RankRequest(prompt=c["instruction"], candidates=c["candidates"], id=c["id"]) for c in candidates]
    rankings = PermutedRanker(PositionBiasedJudge(), k=3).rank(requests)
    return candidates, [{"id": c["id"], "ranker": "openai", **r.to_dict()} for c, r in zip(candidates, rankings)]


def test_page_shows_ranked_order_scores_failures_and_agreement_escaped() -> None:
    candidates, rankings = judged_records()
    page = render_rankings_html(candidates, rankings, "run: rankings of stage judged (openai)")
    assert "<script>document.title" not in page and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert page.count("&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;") >= 2  # prompt + candidate
    assert 'data-status="failed"' in page and "not ranked: all 3 presentations failed" in page
    assert page.count('data-agreement="partial"') == 1 and page.count('data-agreement="full"') == 2
    ok = page[page.index(">p-ok<"):page.index(">p-bias<")]
    cells = [ok.index(f"<pre>{text}</pre>") for text in ("eleven!", "seven", "13", "2")]
    assert cells == sorted(cells)  # best (longest) first
    assert '<td class="num">3</td><td><pre>eleven!' in ok  # its (Borda) score beside it
    assert "4 prompts · 1 failed · ranker: openai" in page


def test_a_long_run_keeps_failures_and_disagreements_within_the_page_limit() -> None:
    candidates, rankings = judged_records()  # p-ok, p-bias (disagreeing), p-fail (failed), p-xss
    def ids(limit: int) -> list[str]:
        page = render_rankings_html(candidates, rankings, "t", limit=limit)
        assert ("this page holds" in page) == (limit < len(rankings)) and "4 prompts · 1 failed" in page
        return [s.split("<h2>")[1].split("<")[0] for s in page.split('<section class="prompt')[1:]]

    assert ids(2) == ["p-bias", "p-fail"]
    assert ids(3) == ["p-ok", "p-bias", "p-fail"]  # then the earliest others, in file order
    assert ids(4) == ["p-ok", "p-bias", "p-fail", "p-xss"]


@needs_chromium
def test_headless_chromium_renders_and_filters_the_page(tmp_path: Path) -> None:
    candidates, rankings = judged_records()
    page = write_rankings_html(candidates, rankings, tmp_path / "rankings.html", "quick: rankings of stage judged")
    dom = chromium("--dump-dom", page.as_uri())
    assert "showing 4 of 4" in dom and "pwned" not in dom.split("<title>")[1].split("</title>")[0]
    assert "<script>document.title" not in dom and "&lt;script&gt;document.title" in dom
    failed_only = chromium("--dump-dom", page.as_uri() + "#status=failed")
    assert "showing 1 of 4" in failed_only
    hidden = {s.split('data-status="')[1][:6]: 'hidden=""' in s for s in failed_only.split("<section")[1:]}
    assert hidden == {"failed": False, "ok\" da": True}
    disagreeing = chromium("--dump-dom", page.as_uri() + "#agreement=partial")
    assert "showing 1 of 4" in disagreeing
    shot = tmp_path / "rankings.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,1500", page.as_uri())
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    print(f"screenshot: {shot}")


def test_rank_stage_writes_the_viewer_and_the_report_links_it(ranked_run: Path) -> None:
    page = (ranked_run / "stages/rankings/rankings.html").read_text()
    rankings = [json.loads(line) for line in (ranked_run / "stages/rankings/records.jsonl").read_text().splitlines()]
    assert page.count('<section class="prompt') == len(rankings) and "ranker: teacher_logprob" in page
    report = json.loads((ranked_run / "report.json").read_text())
    assert report["viewers"] == {"rankings": "stages/rankings/rankings.html"}
    assert "[`rankings`](stages/rankings/rankings.html)" in (ranked_run / "report.md").read_text()
