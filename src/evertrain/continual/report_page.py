"""The report's HTML page: one file with its style, its charting script and its data inlined.

Nothing on the page is fetched when it is viewed (no CDN, no web font): the charts are drawn
by :mod:`evertrain.continual.report_assets` (vanilla JavaScript and SVG) from the JSON embedded
in ``<script type="application/json" id="report-data">``, and the results table is plain HTML,
so the numbers stay readable with JavaScript off.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from evertrain.continual.report_assets import SCRIPT, STYLE

DATA_ELEMENT_ID = "report-data"
_DATA_OPEN = f'<script type="application/json" id="{DATA_ELEMENT_ID}">'


def render_page(page: dict[str, Any]) -> str:
    """The page for ``page`` (title, subtitle, context, headline, baseline, runs, curves,
    summary, rows, png) as one HTML string."""
    title = html.escape(page["title"])
    subtitle = page.get("subtitle") or ""
    parts = [
        f'<p class="subtitle">{html.escape(subtitle)}</p>' if subtitle else "",
        f'<p class="context" id="context">{html.escape(page.get("context") or "")}</p>',
        f'<p class="headline">{html.escape(page["headline"])}</p>' if page.get("headline") else "",
    ]
    png = page.get("png", {})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{STYLE}</style></head><body>
<h1>{title}</h1>
{"".join(parts)}
<noscript><p class="error">The interactive charts need JavaScript; the table below holds the
numbers, and {html.escape(png.get("curves", "curves.png"))} beside this page the curves.</p></noscript>
<div id="toolbar"></div>
<h2>Loss, learning rate and replay against tokens</h2>
<div id="charts"></div>
<h2>Final loss, forgetting and compute</h2>
<div id="bars"></div>
<h2>Results</h2>
{_table(page["rows"], page.get("baseline"))}
<p class="notes">Forgetting = loss on old data after the stage − before it (positive: forgotten);
peak forgetting = the largest rise of that loss at any evaluation during the stage; adaptation =
loss on new data before − after; average = mean final loss over every evaluated distribution.
Tokens are the tokens each run trained (a continual stage's own tokens; the baseline trains from
scratch). On the charts x counts every token (or step) trained into the model, so a continual
stage starts where its base stopped; every evaluation is a marker. The training loss is an
exponential moving average whose half-life the panel names.</p>
<p class="notes">For papers: <a href="{html.escape(png.get("curves", "curves.png"))}">curves.png</a>
and <a href="{html.escape(png.get("summary", "summary.png"))}">summary.png</a> (matplotlib) beside
this page; curves.json, summary.json and report.json hold the numbers behind them.</p>
{_DATA_OPEN}{_json_for_script(page)}</script>
<script>{SCRIPT}</script>
</body></html>
"""


def embedded_data(page_html: str) -> dict[str, Any]:
    """The JSON a report page embeds (for tests, and for tools re-reading a page)."""
    start = page_html.index(_DATA_OPEN) + len(_DATA_OPEN)
    return json.loads(page_html[start : page_html.index("</script>", start)])


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element early (``<`` written as ``\\u003c``), with
    every non-finite number as ``null`` (JSON has no NaN)."""
    text = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return format(value, spec)
    return html.escape(str(value))


def _table(rows: list[dict[str, Any]], baseline: str | None) -> str:
    datasets: list[str] = []
    for row in rows:
        for name in row["after"]:
            if name not in datasets:
                datasets.append(name)
    head = "".join(f"<th>loss {html.escape(d)}</th>" for d in datasets)
    body = []
    for row in rows:
        cells = [
            f"<td>{_fmt(row.get('label', row['run']))}</td>",
            f"<td>{_fmt(row['recipe'])}</td>",
        ]
        cells += [f"<td>{_fmt(row['after'].get(d))}</td>" for d in datasets]
        cells += [
            f"<td><b>{_fmt(row['loss_avg'])}</b></td>",
            f"<td>{_fmt(row['forgetting'], '+.4f')}</td>",
            f"<td>{_fmt(row['peak_forgetting'], '+.4f')}</td>",
            f"<td>{_fmt(row['adaptation'], '+.4f')}</td>",
            f"<td>{row['tokens']:,}"
            + (" (stopped short)" if row.get("stopped_short") else "")
            + "</td>",
            f"<td>{_fmt(row.get('evals'))}</td>",
            f"<td>{_fmt(row['wall_seconds'], '.1f')}</td>",
            f"<td>{_fmt(row.get('tokens_vs_baseline'), '.0%')}</td>",
            f"<td>{_fmt(row.get('loss_gap_vs_baseline'), '+.2%')}</td>",
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    name = html.escape(baseline or "baseline")
    return (
        f'<table id="results"><thead><tr><th>run</th><th>recipe</th>{head}<th>average</th>'
        "<th>forgetting (old)</th><th>peak forgetting</th><th>adaptation (new)</th>"
        f"<th>tokens</th><th>evals</th><th>wall s</th><th>tokens vs {name}</th>"
        f"<th>avg loss vs {name}</th></tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table>"
    )
