"""``rankings.html``: one static page per rank stage to read the judgements instead of grepping JSONL.

Per prompt: the instruction, the candidates in ranked order with their scores, the judge's raw output (its
rationale), failures with their error, and, under ``permutations: k``, how far the k verdicts agreed (Kendall τ)
and each presentation's order. Client-side filters (status, agreement, text) need no server; they also read the
URL fragment (``#status=failed&agreement=partial``) so a filtered view can be linked. Every piece of text from
a record is HTML-escaped: candidates and judge output are model-written and may contain markup.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any, Sequence

from tuna_open.data.jsonl import atomic_write_text

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #d8dce3;padding:10px 18px;z-index:1}
h1{font-size:18px;margin:0 0 4px}.summary{margin:0 0 8px;color:#4a5160}
.filters label{margin-right:14px}#shown{color:#4a5160}
main{padding:12px 18px}section{background:#fff;border:1px solid #d8dce3;border-radius:6px;margin:0 0 12px;padding:10px 14px}
section.failed{border-left:5px solid #c62828}section.partial{border-left:5px solid #ef8f00}
h2{font-size:15px;margin:0 0 6px}.badge{font-size:12px;border-radius:10px;padding:1px 8px;margin-left:6px;background:#e8eaef}
.badge.failed{background:#fde0e0;color:#9b1c1c}.badge.partial{background:#fff1d6;color:#8a5200}.badge.full{background:#dff3e4;color:#1e6b34}
pre{white-space:pre-wrap;margin:2px 0;font:13px/1.4 ui-monospace,monospace}.instruction{background:#f3f5f8;padding:6px 8px;border-radius:4px}
table{border-collapse:collapse;width:100%;margin:6px 0}td,th{border-top:1px solid #e6e8ec;padding:3px 6px;text-align:left;vertical-align:top}
th{font-weight:600;color:#4a5160}td.num{text-align:right;white-space:nowrap;width:1%}tr.best td{background:#eef8f0}
.error{color:#9b1c1c}details{margin-top:4px}summary{cursor:pointer;color:#2b5cab}
"""

SCRIPT = """
const sel = id => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
for (const id of ["status", "agreement"]) if (params.get(id)) sel(id).value = params.get(id);
if (params.get("q")) sel("q").value = params.get("q");
function apply() {
  const status = sel("status").value, agreement = sel("agreement").value, q = sel("q").value.toLowerCase();
  let shown = 0;
  const all = document.querySelectorAll("section.prompt");
  for (const s of all) {
    const ok = (status === "all" || s.dataset.status === status)
      && (agreement === "all" || s.dataset.agreement === agreement)
      && (!q || s.textContent.toLowerCase().includes(q));
    s.hidden = !ok;
    shown += ok;
  }
  sel("shown").textContent = `showing ${shown} of ${all.length}`;
}
for (const id of ["status", "agreement", "q"]) sel(id).addEventListener("input", apply);
apply();
"""


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.3g}" if isinstance(value, float) else escape(str(value))


def agreement_class(metadata: dict[str, Any]) -> str:
    """``full`` (all k verdicts agree), ``partial`` (τ < 1) or ``na`` (one verdict: nothing to compare)."""
    tau = metadata.get("self_consistency")
    if tau is None:
        return "na"
    return "full" if tau >= 1.0 - 1e-9 else "partial"


def _section(record: dict[str, Any], ranking: dict[str, Any]) -> str:
    meta = ranking.get("metadata") or {}
    failed = bool(ranking.get("failed"))
    agreement = agreement_class(meta)
    texts: list[str] = record.get("candidates", [])
    scores = ranking.get("scores")
    order = ranking.get("order") or []
    badges = ['<span class="badge failed">failed</span>' if failed else '<span class="badge">ranked</span>']
    if agreement != "na":
        badges.append(f'<span class="badge {agreement}">agreement τ = {meta["self_consistency"]:.2f} over '
                      f'{meta.get("permutations")} orders</span>')
    if meta.get("position0_first") is not None:
        badges.append(f'<span class="badge">shown-first won {meta["position0_first"]:.0%} '
                      f'(unbiased {meta.get("position0_expected", 0):.0%})</span>')
    status = "failed" if failed else "ok"
    opening = (f'<section class="prompt {"failed" if failed else agreement}" data-status="{status}" '
               f'data-agreement="{agreement}">')
    parts = [opening,
             f'<h2>{escape(str(ranking["id"]))}{"".join(badges)}</h2>', '<div class="instruction">',
             f'<pre>{escape(str(record.get("instruction", record.get("prompt", ""))))}</pre>']
    if record.get("input"):
        parts.append(f'<pre>{escape(str(record["input"]))}</pre>')
    if record.get("output"):
        parts.append(f'<div>reference: <pre>{escape(str(record["output"]))}</pre></div>')
    parts.append("</div>")
    if failed:
        parts.append(f'<p class="error">not ranked: {escape(str(ranking.get("error") or "unknown error"))}</p>')
    rows = order if order else list(range(len(texts)))
    parts.append('<table><tr><th>rank</th><th>cand.</th><th>score</th><th>response</th></tr>')
    for rank, index in enumerate(rows, start=1):
        score = scores[index] if scores is not None and index < len(scores) else None
        best = ' class="best"' if order and rank == 1 else ""
        parts.append(f'<tr{best}><td class="num">{rank if order else "–"}</td><td class="num">{index}</td>'
                     f'<td class="num">{_num(score)}</td><td><pre>{escape(str(texts[index]))}</pre></td></tr>')
    parts.append("</table>")
    if meta.get("presentations"):
        parts.append("<details><summary>presentations (candidate orders shown to the judge)</summary><table>"
                     "<tr><th>shown as</th><th>verdict (best first)</th></tr>")
        for p in meta["presentations"]:
            verdict = (escape(str(p["order"])) if "order" in p
                       else f'<span class="error">{escape(str(p.get("error")))}</span>')
            parts.append(f'<tr><td>{escape(str(p["presented"]))}</td><td>{verdict}</td></tr>')
        parts.append("</table></details>")
    if ranking.get("raw"):
        parts.append(f'<details><summary>judge output</summary><pre>{escape(str(ranking["raw"]))}</pre></details>')
    parts.append("</section>")
    return "\n".join(parts)


MAX_PROMPTS = 2000
"""Sections per page: a 52k-prompt Alpaca run would make a page of hundreds of MB no browser opens."""


def shown_rankings(rankings: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` rankings in file order: every failed or disagreeing one first (what needs looking at),
    then the others from the start."""
    notable = {i for i, r in enumerate(rankings)
               if r.get("failed") or agreement_class(r.get("metadata") or {}) == "partial"}
    keep = sorted(notable)[:limit]
    keep += [i for i in range(len(rankings)) if i not in notable][:limit - len(keep)]
    return [rankings[i] for i in sorted(keep)]


def render_rankings_html(candidates: Sequence[dict[str, Any]], rankings: Sequence[dict[str, Any]],
                         title: str, limit: int = MAX_PROMPTS) -> str:
    """The whole page; rankings whose candidates record is missing are shown with their id only."""
    by_id = {str(c["id"]): c for c in candidates}
    failed = sum(1 for r in rankings if r.get("failed"))
    taus = [r["metadata"]["self_consistency"] for r in rankings
            if (r.get("metadata") or {}).get("self_consistency") is not None]
    rankers = sorted({str(r.get("ranker")) for r in rankings if r.get("ranker")})
    shown = shown_rankings(rankings, limit)
    summary = (f"{len(rankings)} prompts · {failed} failed · ranker: {', '.join(rankers) or 'unknown'}"
               + (f" · mean agreement τ = {sum(taus) / len(taus):.2f} over {len(taus)} prompts" if taus else "")
               + (f" · this page holds {len(shown)} of them: failed and disagreeing ones first, then the earliest"
                  if len(shown) < len(rankings) else ""))
    sections = "\n".join(_section(by_id.get(str(r["id"]), {}), r) for r in shown)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{STYLE}</style></head>
<body><header><h1>{escape(title)}</h1><p class="summary">{escape(summary)}</p>
<div class="filters">
<label>status <select id="status"><option value="all">all</option><option value="ok">ranked</option>
<option value="failed">failed</option></select></label>
<label>agreement <select id="agreement"><option value="all">all</option><option value="full">full (τ = 1)</option>
<option value="partial">disagreement (τ &lt; 1)</option><option value="na">single verdict</option></select></label>
<label>text <input id="q" type="search" placeholder="search prompts and responses"></label>
<span id="shown"></span></div></header>
<main>
{sections}
</main>
<script>{SCRIPT}</script>
</body></html>
"""


def write_rankings_html(candidates: Sequence[dict[str, Any]], rankings: Sequence[dict[str, Any]], path: Path,
                        title: str) -> Path:
    atomic_write_text(path, render_rankings_html(candidates, rankings, title))
    return path
