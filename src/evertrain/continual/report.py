"""``evertrain report RUN...``: one self-contained HTML page comparing training runs.

The page holds (PNG figures embedded as base64 ``data:`` URIs, and also written beside it):

- ``curves.png``: validation loss on each distribution against tokens for every run (x = all
  tokens trained into that model, so a continual stage starts where its base stopped), and under
  them the learning rate and the share of old-data (replay) tokens per batch;
- ``summary.png``: final average loss and compute (tokens) per run;
- a table of final losses, forgetting, adaptation and compute, and the saving against the
  ``retrain`` baseline (tokens saved, loss gap).

Every figure's data is saved as JSON beside its PNG (``curves.json``, ``summary.json``) and the
table as ``report.json``, so the numbers behind a picture can be checked or re-plotted.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evertrain._atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from evertrain.continual.forgetting import StageOutcome, before_eval, stage_outcome
from evertrain.continual.runs import Run, RunError, eval_at_tokens, load_run


class ReportError(ValueError):
    """The report cannot be written (no runs, unreadable runs); the message says why."""


@dataclass
class Series:
    label: str
    x: list[float]
    y: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "x": self.x, "y": self.y}


def loss_series(run: Run, dataset: str) -> Series:
    """Eval loss on ``dataset`` against total tokens trained into the model.

    A continual stage starts with its parent checkpoint's loss at its fork point, so its curve
    visibly continues the base's.
    """
    xs, ys = [], []
    if run.offset_tokens > 0 and not eval_at_tokens(run, 0):
        start = before_eval(run).get(dataset)
        if start is not None:
            xs.append(float(run.offset_tokens))
            ys.append(float(start))
    for record in run.eval_records:
        value = record["eval"].get(dataset)
        if value is None:
            continue
        xs.append(float(run.offset_tokens + int(record["tokens"])))
        ys.append(float(value))
    return Series(run.name, xs, ys)


def lr_series(run: Run) -> Series:
    xs, ys = [], []
    for record in run.train_records:
        if record.get("lr") is None:
            continue
        xs.append(float(run.offset_tokens + int(record["tokens"])))
        ys.append(float(record["lr"]))
    return Series(run.name, xs, ys)


def replay_series(run: Run, old: list[str], window: int | None = None) -> Series:
    """Share of tokens drawn from the ``old`` datasets, over a moving window of train records.

    ``tokens_per_source`` in the log is cumulative (the sampler's running totals), so the share
    over records i-w..i is Δold/Δall; a window of ~5 % of the run smooths the per-batch noise.
    """
    records = [r for r in run.train_records if isinstance(r.get("tokens_per_source"), dict)]
    if not records or not old:
        return Series(run.name, [], [])
    totals = [sum(float(v) for v in r["tokens_per_source"].values()) for r in records]
    olds = [sum(float(r["tokens_per_source"].get(n, 0.0)) for n in old) for r in records]
    cumulative = all(b >= a for a, b in zip(totals, totals[1:], strict=False))
    if not cumulative:  # per-step counts: accumulate them first
        totals = _cumsum(totals)
        olds = _cumsum(olds)
    window = window or max(1, len(records) // 20)
    xs, ys = [], []
    for i, record in enumerate(records):
        j = i - window
        d_total = totals[i] - (totals[j] if j >= 0 else 0.0)
        d_old = olds[i] - (olds[j] if j >= 0 else 0.0)
        if d_total > 0:
            xs.append(float(run.offset_tokens + int(record["tokens"])))
            ys.append(d_old / d_total)
    return Series(run.name, xs, ys)


def _cumsum(values: list[float]) -> list[float]:
    out, running = [], 0.0
    for value in values:
        running += value
        out.append(running)
    return out


def _datasets(runs: list[Run]) -> list[str]:
    names: list[str] = []
    for run in runs:
        for record in run.eval_records:
            for name in record["eval"]:
                if name not in names:
                    names.append(name)
    return names


def _old_datasets(run: Run, datasets: list[str]) -> list[str]:
    if "old" in run.meta:
        return list(run.meta["old"])
    # Without the continual runner's roles, treat every dataset but the last as old.
    return datasets[:-1]


def curves_figure_data(runs: list[Run]) -> dict[str, Any]:
    """The panels of ``curves.png``: one loss panel per dataset, then LR, then replay share."""
    datasets = _datasets(runs)
    panels = []
    for dataset in datasets:
        series = [loss_series(run, dataset) for run in runs]
        panels.append(
            {
                "title": f"validation loss on {dataset}",
                "ylabel": "loss",
                "series": [s.to_dict() for s in series],
            }
        )
    panels.append(
        {
            "title": "learning rate",
            "ylabel": "lr",
            "series": [lr_series(run).to_dict() for run in runs],
        }
    )
    panels.append(
        {
            "title": "share of old-data (replay) tokens per batch",
            "ylabel": "fraction",
            "series": [replay_series(run, _old_datasets(run, datasets)).to_dict() for run in runs],
        }
    )
    return {"xlabel": "tokens trained into the model", "panels": panels}


def plot_panels(
    data: dict[str, Any], path: Path, *, width: float = 9.0, panel_height: float = 2.6
) -> None:
    """Render stacked panels sharing the x axis to a PNG (Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = data["panels"]
    fig, axes = plt.subplots(
        len(panels), 1, sharex=True, figsize=(width, panel_height * len(panels)), squeeze=False
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = sorted(
        {s["label"] for panel in panels for s in panel["series"]}, key=_label_order(panels)
    )
    color_of = {label: colors[i % len(colors)] for i, label in enumerate(labels)}
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        for series in panel["series"]:
            if series["x"]:
                marker = "o" if len(series["x"]) <= 12 else None
                ax.plot(
                    series["x"],
                    series["y"],
                    label=series["label"],
                    color=color_of[series["label"]],
                    marker=marker,
                    markersize=3,
                    linewidth=1.4,
                )
        ax.set_title(panel["title"], fontsize=10)
        ax.set_ylabel(panel["ylabel"])
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(data.get("xlabel", "tokens"))
    handles, names = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles, names, loc="upper center", ncol=min(len(names), 6), fontsize=8, frameon=False
        )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    _save_png(fig, path)


def _label_order(panels: list[dict[str, Any]]):
    order: dict[str, int] = {}
    for panel in panels:
        for series in panel["series"]:
            order.setdefault(series["label"], len(order))
    return lambda label: order[label]


def summary_figure_data(outcomes: list[StageOutcome]) -> dict[str, Any]:
    return {
        "runs": [o.run for o in outcomes],
        "loss_avg": [_none_if_nan(o.loss_avg) for o in outcomes],
        "tokens": [o.tokens for o in outcomes],
    }


def plot_summary(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_tokens) = plt.subplots(1, 2, figsize=(9, 3.2))
    names = data["runs"]
    losses = [v if v is not None else float("nan") for v in data["loss_avg"]]
    ax_loss.barh(names, losses, color="#4c72b0")
    finite = [v for v in losses if not math.isnan(v)]
    if finite:
        span = max(finite) - min(finite)
        ax_loss.set_xlim(min(finite) - max(span, 0.05) * 0.5, max(finite) + max(span, 0.05) * 0.5)
    ax_loss.set_title("final average validation loss (lower is better)", fontsize=10)
    ax_tokens.barh(names, data["tokens"], color="#dd8452")
    ax_tokens.set_title("tokens trained (compute)", fontsize=10)
    for ax in (ax_loss, ax_tokens):
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save_png(fig, path)


def comparison_table(outcomes: list[StageOutcome], baseline: str | None) -> list[dict[str, Any]]:
    """One row per run: losses, forgetting, adaptation, compute, and the saving vs ``baseline``."""
    base = next(
        (o for o in outcomes if baseline and (o.recipe == baseline or o.run == baseline)), None
    )
    rows = []
    for outcome in outcomes:
        row = outcome.to_dict()
        if base is not None and base is not outcome and base.tokens > 0:
            row["tokens_vs_baseline"] = outcome.tokens / base.tokens
            row["loss_gap_vs_baseline"] = _none_if_nan(outcome.loss_avg / base.loss_avg - 1.0)
        rows.append(row)
    return rows


def headline(rows: list[dict[str, Any]], baseline: str | None) -> str:
    """One sentence: the best replay recipe against the baseline, e.g. "... 1.11 % better than
    retrain, training 50 % of its tokens" (or "x % worse than", "(within 1 %)" when so)."""
    candidates = [
        r
        for r in rows
        if "replay" in str(r["recipe"]) and r.get("loss_gap_vs_baseline") is not None
    ]
    if not candidates:
        return ""
    best = min(candidates, key=lambda r: r["loss_avg"])
    gap = best["loss_gap_vs_baseline"]
    share = best["tokens_vs_baseline"]
    if gap < 0:
        versus = f"{-gap * 100:.2f} % better than {baseline}"
    elif gap > 0:
        within = "within 1 %" if gap <= 0.01 else "more than 1 %"
        versus = f"{gap * 100:.2f} % worse than {baseline} ({within})"
    else:
        versus = f"the same as {baseline}"
    return (
        f"Best replay recipe: {best['run']} reaches an average loss of {best['loss_avg']:.4f}, "
        f"{versus}, training {share * 100:.0f} % of its tokens."
    )


def write_report(
    runs: list[str | Path],
    out_dir: str | Path,
    *,
    baseline: str | None = "retrain",
    title: str = "evertrain continual pre-training report",
    subtitle: str = "",
) -> Path:
    """Write ``out_dir/index.html`` (self-contained) with its PNGs and JSON; return the HTML path.

    ``subtitle``: a line under the title saying what was trained (data, model size, tokens)."""
    if not runs:
        raise ReportError("no runs given: pass one or more run directories")
    try:
        loaded = [load_run(path) for path in runs]
    except RunError as error:
        raise ReportError(str(error)) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    curves = curves_figure_data(loaded)
    atomic_write_json(out / "curves.json", curves)
    plot_panels(curves, out / "curves.png")

    outcomes = [stage_outcome(run) for run in loaded]
    summary = summary_figure_data(outcomes)
    atomic_write_json(out / "summary.json", summary)
    plot_summary(summary, out / "summary.png")

    rows = comparison_table(outcomes, baseline)
    for row, run in zip(rows, loaded, strict=True):
        row["path"] = str(run.path)
    sentence = headline(rows, baseline)
    atomic_write_json(
        out / "report.json",
        {
            "title": title,
            "subtitle": subtitle,
            "baseline": baseline,
            "headline": sentence,
            "runs": rows,
        },
    )
    atomic_write_text(out / "index.html", _html(title, sentence, rows, out, baseline, subtitle))
    return out / "index.html"


def _img(path: Path, alt: str) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return format(value, spec)
    return html.escape(str(value))


def _html(
    title: str,
    sentence: str,
    rows: list[dict[str, Any]],
    out: Path,
    baseline: str | None,
    subtitle: str = "",
) -> str:
    datasets = []
    for row in rows:
        for name in row["after"]:
            if name not in datasets:
                datasets.append(name)
    head = "".join(f"<th>loss {html.escape(d)}</th>" for d in datasets)
    body = []
    for row in rows:
        cells = [f"<td>{_fmt(row['run'])}</td>", f"<td>{_fmt(row['recipe'])}</td>"]
        cells += [f"<td>{_fmt(row['after'].get(d))}</td>" for d in datasets]
        cells += [
            f"<td><b>{_fmt(row['loss_avg'])}</b></td>",
            f"<td>{_fmt(row['forgetting'], '+.4f')}</td>",
            f"<td>{_fmt(row['peak_forgetting'], '+.4f')}</td>",
            f"<td>{_fmt(row['adaptation'], '+.4f')}</td>",
            f"<td>{row['tokens']:,}</td>",
            f"<td>{_fmt(row['wall_seconds'], '.1f')}</td>",
            f"<td>{_fmt(row.get('tokens_vs_baseline'), '.0%')}</td>",
            f"<td>{_fmt(row.get('loss_gap_vs_baseline'), '+.2%')}</td>",
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    baseline_name = html.escape(baseline or "baseline")
    subtitle_html = f'<p class="subtitle">{html.escape(subtitle)}</p>' if subtitle else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, td:nth-child(2) {{ text-align: left; }}
img {{ max-width: 100%; }} .headline {{ font-size: 1.1em; background: #eef5ee; padding: 0.6em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{subtitle_html}
<p class="headline">{html.escape(sentence)}</p>
<h2>Final losses and compute</h2>
<table id="results"><thead><tr><th>run</th><th>recipe</th>{head}<th>average</th><th>forgetting (old)</th><th>peak forgetting</th>
<th>adaptation (new)</th><th>tokens</th><th>wall s</th><th>tokens vs {baseline_name}</th>
<th>avg loss vs {baseline_name}</th></tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table>
<p>Forgetting = loss on old data after the stage − before it (positive: forgotten); peak forgetting =
the largest rise of that loss at any evaluation during the stage; adaptation = loss on new data
before − after. Tokens are the tokens each run trained (a continual stage's own
tokens; the baseline trains from scratch).</p>
<h2>Loss, learning rate and replay against tokens</h2>
{_img(out / "curves.png", "loss on each distribution, learning rate and replay share against tokens")}
<h2>Final loss and compute</h2>
{_img(out / "summary.png", "final average loss and tokens per run")}
</body></html>
"""


def _save_png(fig: Any, path: Path) -> None:
    """Render ``fig`` to memory and write it atomically (a killed run never leaves half a PNG)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _none_if_nan(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
