"""``report.html``: the report as one static page a browser opens from disk (no server, no script, no CDN).

It holds the same tables as ``report.md`` (``tuna_open.pipeline.tables``), the plots (each PNG linked to its SVG)
and links to every rank stage's ``rankings.html``. Every string that comes from the run (stage and model names,
metric names, a stage's summary, a judge's words) is HTML-escaped: a recipe or a judge's output must not be able
to inject markup into a page people open.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote

from tuna_open.pipeline.tables import Table, tables

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1em; font-variant-numeric: tabular-nums; }
th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; text-align: left; }
td.num, th.num { text-align: right; }
th { background: #f4f4f4; }
p.note { color: #555; max-width: 80ch; }
figure { margin: 1em 0; } img { max-width: 100%; }
code { background: #f4f4f4; padding: 0 .2em; }
"""


def _text(value: str) -> str:
    """Escaped text; `code` spans (the markdown notes use them) become <code>, after escaping."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(value))


def _table(t: Table) -> str:
    def cells(tag: str, row: list[str]) -> str:
        return "".join(f'<{tag}{" class=num" if num else ""}>{_text(c)}</{tag}>' for c, num in zip(row, t.numeric))

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in t.rows)
    note = f'<p class="note">{_text(t.note)}</p>' if t.note else ""
    return (f"<h2>{_text(t.title)}</h2><table><thead><tr>{cells('th', t.headers)}</tr></thead>"
            f"<tbody>{body}</tbody></table>{note}")


def _href(path: str) -> str:
    """A run-relative path as an attribute value: URL-quoted, then escaped."""
    return html.escape(quote(path), quote=True)


def render_html(report: dict[str, Any], figures: list[str]) -> str:
    parts = [f"<h1>tuna-open report: {_text(report['recipe'])}</h1>"]
    parts += [_table(t) for t in tables(report)]
    if report.get("viewers"):
        items = "".join(f'<li><a href="{_href(path)}">{_text(stage)}</a>: every prompt\'s candidates in ranked '
                        "order, judge output, failures and permutation agreement</li>"
                        for stage, path in report["viewers"].items())
        parts.append(f"<h2>Rankings viewer</h2><ul>{items}</ul>")
    pngs = [f for f in figures if f.endswith(".png")]
    if pngs:
        parts.append("<h2>Plots</h2>")
        for png in pngs:
            svg = png[:-4] + ".svg"
            img = f'<img src="{_href("plots/" + png)}" alt="{html.escape(png, quote=True)}">'
            link = f'<a href="{_href("plots/" + svg)}">{img}</a>' if svg in figures else img
            parts.append(f"<figure>{link}<figcaption>{_text(png)}</figcaption></figure>")
    title = html.escape(f"tuna-open report: {report['recipe']}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
