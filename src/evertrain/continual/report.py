"""``evertrain report RUN...``: one self-contained, interactive HTML page comparing training runs.

The page (``index.html``; no network needed to view it: its charting script is inlined and its
data embedded as JSON) holds, against the tokens (or steps) trained into each model:

- the average validation loss over the distributions (the headline metric) and the validation
  loss on each distribution, every evaluation a point (a continual stage starts where its base
  stopped, from its parent checkpoint's loss);
- the training loss, smoothed by an EMA whose half-life (in tokens) the panel names;
- the learning rate and the share of old-data (replay) tokens per batch;
- bars of the final average loss, the forgetting and the tokens of every run, values printed;
- a table of final losses, forgetting, adaptation and compute, and the saving against the
  ``retrain`` baseline (tokens saved, loss gap).

Each chart has hover values, drag/wheel zoom on x (shared by the panels; double-click or
"reset zoom" undoes it), a log-y toggle, a tokens/steps switch and a legend whose entries hide
or show a run. The same panels are also written as PNGs for papers (``curves.png``,
``summary.png``, matplotlib), and every figure's data as JSON beside it (``curves.json``,
``summary.json``, ``report.json``), so the numbers behind a picture can be checked or re-plotted.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evertrain._atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from evertrain.continual import report_law
from evertrain.continual.forgetting import StageOutcome, before_eval, stage_outcome
from evertrain.continual.report_page import render_page
from evertrain.continual.runs import Run, RunError, eval_at_tokens, load_run

#: Most points kept per series drawn from train records (LR, train loss, replay share); a long
#: run logs thousands of steps, and 30 runs x 5 panels must stay a page a browser opens fast.
#: Evaluation series are never thinned: every evaluation is a point on the page.
MAX_TRAIN_POINTS = 1500
#: The training-loss EMA's half-life is this fraction of the longest x range (tokens into the
#: model), so the smoothing looks the same everywhere on the shared axis.
EMA_HALF_LIFE_FRACTION = 1 / 50

# Run styles: colour, dash and marker cycle with co-prime periods (10, 4, 7), so up to 140 runs
# differ in at least one of them; widths shrink with drawing order, so a run drawn later on the
# very same curve (two recipes sharing a schedule) leaves the earlier one's edges visible.
PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
)
DASHES = ("", "7 3", "2 2", "9 3 2 3")  # SVG stroke-dasharray
MARKERS = ("circle", "square", "triangle", "diamond", "triangle-down", "plus", "cross")
_MPL_MARKERS = {
    "circle": "o",
    "square": "s",
    "triangle": "^",
    "diamond": "D",
    "triangle-down": "v",
    "plus": "P",
    "cross": "X",
}


class ReportError(ValueError):
    """The report cannot be written (no runs, unreadable runs); the message says why."""


@dataclass
class Series:
    """One run's curve in one panel: x in tokens into the model, ``steps`` the same points in
    optimizer steps into the model."""

    label: str
    x: list[float]
    y: list[float | None]
    steps: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "x": self.x, "y": self.y, "steps": self.steps}


@dataclass
class RunView:
    """A loaded run with what every panel needs of its lineage, computed once."""

    run: Run
    label: str
    before: dict[str, float]
    offset_steps: int

    @property
    def offset_tokens(self) -> int:
        return self.run.offset_tokens


def run_styles(count: int) -> list[dict[str, Any]]:
    """Colour, SVG dash pattern, marker and line width of the i-th run (page and PNG alike)."""
    styles = []
    for i in range(count):
        width = 1.3 + 1.7 * (count - 1 - i) / max(count - 1, 1)
        styles.append(
            {
                "color": PALETTE[i % len(PALETTE)],
                "dash": DASHES[i % len(DASHES)],
                "marker": MARKERS[i % len(MARKERS)],
                "width": round(width, 2),
            }
        )
    return styles


def _start_point(view: RunView, dataset: str) -> tuple[float, float, float] | None:
    """(tokens, steps, loss) of the parent checkpoint for a stage that did not evaluate at 0."""
    run = view.run
    if run.offset_tokens > 0 and not eval_at_tokens(run, 0):
        start = view.before.get(dataset)
        if start is not None:
            return float(run.offset_tokens), float(view.offset_steps), float(start)
    return None


def loss_series(run: Run | RunView, dataset: str) -> Series:
    """Eval loss on ``dataset`` against total tokens trained into the model, every evaluation.

    A continual stage starts with its parent checkpoint's loss at its fork point, so its curve
    visibly continues the base's.
    """
    view = run if isinstance(run, RunView) else view_of(run)
    series = Series(view.label, [], [], [])
    start = _start_point(view, dataset)
    if start is not None:
        _append(series, *start)
    for record in view.run.eval_records:
        value = record["eval"].get(dataset)
        if value is None:
            continue
        _append(series, *_position(view, record), float(value))
    return series


def average_loss_series(run: Run | RunView, datasets: list[str]) -> Series:
    """Mean validation loss over ``datasets`` at each evaluation that measured all of them (the
    headline metric of continual pre-training: Ibrahim et al. 2024's average of old and new)."""
    view = run if isinstance(run, RunView) else view_of(run)
    series = Series(view.label, [], [], [])
    if not datasets:
        return series
    starts = [_start_point(view, d) for d in datasets]
    if all(s is not None for s in starts):
        tokens, steps, _ = starts[0]  # type: ignore[misc]
        _append(series, tokens, steps, sum(s[2] for s in starts) / len(starts))  # type: ignore[index]
    for record in view.run.eval_records:
        values = [record["eval"].get(d) for d in datasets]
        if any(v is None for v in values):
            continue
        _append(series, *_position(view, record), sum(float(v) for v in values) / len(values))
    return series


def lr_series(run: Run | RunView) -> Series:
    view = run if isinstance(run, RunView) else view_of(run)
    series = Series(view.label, [], [], [])
    for record in view.run.train_records:
        if record.get("lr") is None:
            continue
        _append(series, *_position(view, record), float(record["lr"]))
    return _thin(series)


def train_loss_series(run: Run | RunView, half_life_tokens: float) -> Series:
    """Training loss smoothed by an EMA with a half-life of ``half_life_tokens`` tokens.

    The weight of the previous value is ``0.5 ** (Δtokens / half_life)``, so runs logging at
    different intervals are smoothed alike; the EMA starts at the first logged loss (no bias
    toward 0) and a non-finite loss (a skipped step) is left out.
    """
    view = run if isinstance(run, RunView) else view_of(run)
    series = Series(view.label, [], [], [])
    value: float | None = None
    last_tokens = 0.0
    for record in view.run.train_records:
        loss = record.get("loss")
        if loss is None or not math.isfinite(float(loss)):
            continue
        tokens, steps = _position(view, record)
        if value is None:
            value = float(loss)
        else:
            keep = 0.5 ** (max(tokens - last_tokens, 0.0) / half_life_tokens)
            value = keep * value + (1.0 - keep) * float(loss)
        last_tokens = tokens
        _append(series, tokens, steps, value)
    return _thin(series)


def replay_series(run: Run | RunView, old: list[str], window: int | None = None) -> Series:
    """Share of tokens drawn from the ``old`` datasets, over a moving window of train records.

    ``tokens_per_source`` in the log is cumulative (the sampler's running totals), so the share
    over records i-w..i is Δold/Δall; a window of ~5 % of the run smooths the per-batch noise.
    """
    view = run if isinstance(run, RunView) else view_of(run)
    records = [r for r in view.run.train_records if isinstance(r.get("tokens_per_source"), dict)]
    series = Series(view.label, [], [], [])
    if not records or not old:
        return series
    totals = [sum(float(v) for v in r["tokens_per_source"].values()) for r in records]
    olds = [sum(float(r["tokens_per_source"].get(n, 0.0)) for n in old) for r in records]
    cumulative = all(b >= a for a, b in zip(totals, totals[1:], strict=False))
    if not cumulative:  # per-step counts: accumulate them first
        totals = _cumsum(totals)
        olds = _cumsum(olds)
    window = window or max(1, len(records) // 20)
    for i, record in enumerate(records):
        j = i - window
        d_total = totals[i] - (totals[j] if j >= 0 else 0.0)
        d_old = olds[i] - (olds[j] if j >= 0 else 0.0)
        if d_total > 0:
            _append(series, *_position(view, record), d_old / d_total)
    return _thin(series)


def _position(view: RunView, record: dict[str, Any]) -> tuple[float, float]:
    """(tokens, steps) of a log record, counted from the start of the model's lineage."""
    return (
        float(view.offset_tokens + int(record.get("tokens", 0))),
        float(view.offset_steps + int(record.get("step", 0))),
    )


def _append(series: Series, tokens: float, steps: float, value: float) -> None:
    series.x.append(tokens)
    series.steps.append(steps)
    series.y.append(value if math.isfinite(value) else None)


def _thin(series: Series, limit: int = MAX_TRAIN_POINTS) -> Series:
    """Keep at most ``limit`` evenly spaced points, always the first and the last."""
    n = len(series.x)
    if n <= limit:
        return series
    keep = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return Series(
        series.label,
        [series.x[i] for i in keep],
        [series.y[i] for i in keep],
        [series.steps[i] for i in keep],
    )


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


def _common_datasets(runs: list[Run], datasets: list[str]) -> list[str]:
    """The datasets every evaluated run measured: an average over a dataset some runs never saw
    would leave those runs out of the headline panel (all of ``datasets`` when none is common)."""
    measured = [
        {name for record in run.eval_records for name in record["eval"]}
        for run in runs
        if run.eval_records
    ]
    common = [name for name in datasets if all(name in seen for seen in measured)]
    return common or datasets


def _old_datasets(run: Run, datasets: list[str]) -> list[str]:
    if "old" in run.meta:
        return list(run.meta["old"])
    # Without the continual runner's roles, treat every dataset but the last as old.
    return datasets[:-1]


def offset_steps(run: Run, load: Callable[[str], Run] = load_run, _depth: int = 0) -> int:
    """Optimizer steps trained into the model before ``run`` started (0 for a run from scratch).

    Read from the parent checkpoint's manifest entry (plus the parent's own offset, for a stage
    of a stage); when the parent run is gone, estimated from the run's own tokens per step.
    """
    if "offset_steps" in run.meta:
        return int(run.meta["offset_steps"])
    if run.offset_tokens <= 0:
        return 0
    parent = run.parent or {}
    if parent.get("step") is not None and int(parent.get("tokens", -1)) == run.offset_tokens:
        return int(parent["step"])  # the parent trained from scratch: its step is the offset
    if parent.get("run") and parent.get("checkpoint") and _depth < 32:
        try:
            parent_run = load(str(parent["run"]))
        except (RunError, OSError):
            parent_run = None
        step = _checkpoint_step(parent_run, str(parent["checkpoint"])) if parent_run else None
        if step is not None:
            return offset_steps(parent_run, load, _depth + 1) + step  # type: ignore[arg-type]
    per_step = [
        int(r["tokens"]) / int(r["step"]) for r in run.train_records if int(r.get("step", 0)) > 0
    ]
    return round(run.offset_tokens / per_step[0]) if per_step else 0


def _checkpoint_step(run: Run, checkpoint: str) -> int | None:
    wanted = Path(checkpoint)
    for entry in run.manifest.get("checkpoints", []):
        path = Path(str(entry.get("path", "")))
        if not path.is_absolute():
            path = run.path / path
        if entry.get("name") == checkpoint or _resolved(path) == _resolved(wanted):
            return int(entry["step"]) if entry.get("step") is not None else None
    return None


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path


def view_of(run: Run, label: str | None = None, load: Callable[[str], Run] = load_run) -> RunView:
    return RunView(
        run=run,
        label=label or run.name,
        before=before_eval(run),
        offset_steps=offset_steps(run, load),
    )


def _unique_labels(runs: list[Run]) -> list[str]:
    """Run names, with ``#2``, ``#3`` appended to repeats (two folders may hold a "base")."""
    seen: dict[str, int] = {}
    labels = []
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
        labels.append(run.name if seen[run.name] == 1 else f"{run.name} #{seen[run.name]}")
    return labels


def half_life_tokens(views: list[RunView]) -> float:
    """The training-loss EMA half-life: 1/50 of the longest lineage, to two significant digits."""
    longest = max((v.offset_tokens + v.run.tokens for v in views), default=0)
    return max(1.0, float(f"{longest * EMA_HALF_LIFE_FRACTION:.2g}"))


def curves_figure_data(runs: list[Run] | list[RunView]) -> dict[str, Any]:
    """The line panels: average loss, loss per dataset, training loss, LR, replay share."""
    views = [r if isinstance(r, RunView) else view_of(r) for r in runs]
    loaded = [v.run for v in views]
    datasets = _datasets(loaded)
    averaged = _common_datasets(loaded, datasets)
    left_out = [name for name in datasets if name not in averaged]
    title = f"average validation loss over {_words(averaged)} (the headline metric)"
    if left_out:
        title += f"; {_words(left_out)} left out: not measured by every run"
    half_life = half_life_tokens(views)
    panels = [
        _panel("avg", title, "loss", "eval", [average_loss_series(v, averaged) for v in views])
    ]
    for dataset in datasets:
        panels.append(
            _panel(
                f"loss:{dataset}",
                f"validation loss on {dataset}",
                "loss",
                "eval",
                [loss_series(v, dataset) for v in views],
            )
        )
    panels.append(
        _panel(
            "train",
            f"training loss (EMA, half-life {half_life:,.0f} tokens)",
            "loss",
            "train",
            [train_loss_series(v, half_life) for v in views],
        )
    )
    panels.append(_panel("lr", "learning rate", "lr", "train", [lr_series(v) for v in views]))
    panels.append(
        _panel(
            "replay",
            "share of old-data (replay) tokens per batch",
            "fraction",
            "train",
            [replay_series(v, _old_datasets(v.run, datasets)) for v in views],
        )
    )
    return {
        "xlabel": "tokens trained into the model",
        "xlabel_steps": "optimizer steps trained into the model",
        "half_life_tokens": half_life,
        "datasets": datasets,
        "panels": panels,
    }


def _panel(
    panel_id: str, title: str, ylabel: str, kind: str, series: list[Series]
) -> dict[str, Any]:
    return {
        "id": panel_id,
        "title": title,
        "ylabel": ylabel,
        "kind": kind,  # "eval": every point is an evaluation (all drawn as markers)
        "series": [_rounded(s.to_dict()) for s in series],
    }


def _rounded(series: dict[str, Any]) -> dict[str, Any]:
    """Six significant digits: the page stays small, and no plotted value changes visibly."""
    series["y"] = [None if v is None else float(f"{v:.6g}") for v in series["y"]]
    return series


def _words(names: list[str]) -> str:
    if len(names) <= 1:
        return names[0] if names else "the distributions"
    return ", ".join(names[:-1]) + " and " + names[-1]


def plot_panels(
    data: dict[str, Any], path: Path, *, width: float = 9.0, panel_height: float = 2.6
) -> None:
    """Render stacked panels sharing the x axis to a PNG (Agg backend, no display needed), in
    the page's run styles: every evaluation a marker, distinct colour/dash/marker per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = data["panels"]
    fig, axes = plt.subplots(
        len(panels), 1, sharex=True, figsize=(width, panel_height * len(panels)), squeeze=False
    )
    labels = sorted(
        {s["label"] for panel in panels for s in panel["series"]}, key=_label_order(panels)
    )
    style_of = dict(zip(labels, run_styles(len(labels)), strict=True))
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        for series in panel["series"]:
            if not series["x"]:
                continue
            style = style_of[series["label"]]
            n = len(series["x"])
            ys = [math.nan if v is None else v for v in series["y"]]
            ax.plot(
                series["x"],
                ys,
                label=series["label"],
                color=style["color"],
                linestyle=_mpl_dash(style["dash"]),
                linewidth=style["width"],
                marker=_MPL_MARKERS[style["marker"]],
                markersize=3.5,
                markevery=None if panel.get("kind") == "eval" else max(1, n // 8),
            )
        if panel.get("predicted"):
            colors = [style_of[series["label"]]["color"] for series in panel["series"]]
            report_law.plot_predicted(ax, panel, colors)
        ax.set_title(panel["title"], fontsize=10)
        ax.set_ylabel(panel["ylabel"])
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(data.get("xlabel", "tokens"))
    # Every run of every panel: a run missing from the first panel still gets its legend entry.
    entries: dict[str, Any] = {}
    for ax in axes[:, 0]:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(name, handle)
    names = sorted(entries, key=lambda name: labels.index(name) if name in labels else len(labels))
    handles = [entries[name] for name in names]
    if handles:
        fig.legend(
            handles, names, loc="upper center", ncol=min(len(names), 6), fontsize=8, frameon=False
        )
    # Fixed margins, not tight_layout: measuring every tick label costs seconds at 30 runs.
    height = panel_height * len(panels)
    legend_rows = math.ceil(len(names) / 6) if names else 0
    fig.subplots_adjust(
        left=0.9 / width,
        right=1 - 0.2 / width,
        bottom=0.55 / height,
        top=1 - (0.35 + 0.19 * legend_rows) / height,
        hspace=0.42 * 2.6 / panel_height,
    )
    _save_png(fig, path)


def _mpl_dash(dash: str) -> Any:
    return "-" if not dash else (0, tuple(float(v) for v in dash.split()))


def _label_order(panels: list[dict[str, Any]]):
    order: dict[str, int] = {}
    for panel in panels:
        for series in panel["series"]:
            order.setdefault(series["label"], len(order))
    return lambda label: order[label]


def summary_figure_data(outcomes: list[StageOutcome], labels: list[str] | None = None):
    """Final average loss, old and new loss, forgetting and tokens per run (the bar charts)."""
    return {
        "runs": labels or [o.run for o in outcomes],
        "loss_avg": [_none_if_nan(o.loss_avg) for o in outcomes],
        "loss_old": [_none_if_nan(o.loss_old) for o in outcomes],
        "loss_new": [_none_if_nan(o.loss_new) for o in outcomes],
        "forgetting": [_none_if_nan(o.forgetting) for o in outcomes],
        "tokens": [o.tokens for o in outcomes],
    }


def plot_summary(data: dict[str, Any], path: Path) -> None:
    """Three bar charts (final average loss, forgetting, tokens), each bar's value printed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = data["runs"]
    colors = [s["color"] for s in run_styles(len(names))]
    height = 0.9 + 0.22 * max(len(names), 4)
    fig, axes = plt.subplots(1, 3, figsize=(12, height), sharey=True)
    charts = (
        ("loss_avg", "final average validation loss\n(lower is better)", "{:.4f}"),
        ("forgetting", "forgetting on old data\n(after − before; > 0: forgot)", "{:+.4f}"),
        ("tokens", "tokens trained (compute)", "{:,.0f}"),
    )
    for ax, (key, title, fmt) in zip(axes, charts, strict=True):
        values = [math.nan if v is None else float(v) for v in data.get(key, [])]
        if len(values) != len(names):
            values = [math.nan] * len(names)
        bars = ax.barh(names, [0.0 if math.isnan(v) else v for v in values], color=colors)
        ax.bar_label(
            bars,
            labels=["–" if math.isnan(v) else fmt.format(v) for v in values],
            padding=2,
            fontsize=7,
        )
        finite = [v for v in values if not math.isnan(v)]
        if key == "loss_avg" and finite:  # the differences, not the distance from 0, matter
            span = max(max(finite) - min(finite), 0.05)
            ax.set_xlim(min(finite) - 0.5 * span, max(finite) + 0.6 * span)
        elif finite:
            low, high = min(min(finite), 0.0), max(max(finite), 0.0)
            pad = 0.25 * ((high - low) or 1.0)
            ax.set_xlim(low - (pad if low < 0 else 0.0), high + pad)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].invert_yaxis()  # shared: the first run on top in all three
    longest = max((len(n) for n in names), default=4)
    # Fixed margins, not tight_layout (seconds at 30 runs): room for the names on the left.
    fig.subplots_adjust(
        left=min(0.3, (0.2 + 0.055 * longest) / 12),
        right=0.985,
        bottom=0.35 / height,
        top=1 - 0.5 / height,
        wspace=0.25,
    )
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
        if "replay" in str(r["recipe"])
        and r.get("loss_gap_vs_baseline") is not None
        and not r.get("stopped_short")
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


def describe_runs(views: list[RunView], datasets: list[str]) -> str:
    """One line naming the datasets (with their roles), the model size and the scale."""
    runs = [v.run for v in views]
    old = {n for r in runs for n in r.meta.get("old", [])}
    new = {n for r in runs for n in r.meta.get("new", [])} - old
    named = [f"{d} (old)" if d in old else f"{d} (new)" if d in new else d for d in datasets] or [
        "no evaluations"
    ]
    parts = [f"datasets: {', '.join(named)}"]
    model = next(
        (r.config.get("model") for r in runs if isinstance(r.config.get("model"), dict)), None
    )
    params = max((int(r.meta.get("params") or 0) for r in runs), default=0)
    if model or params:
        shape = ""
        if model and model.get("n_layer") and model.get("d_model"):
            layers = int(model["n_layer"])
            shape = f"{layers} layer{'s' if layers != 1 else ''} × {model['d_model']}"
            if model.get("seq_len"):
                shape += f", context {model['seq_len']}"
        size = f"{params / 1e6:.2f}M-parameter GPT" if params else "GPT"
        parts.append(f"model: a {size}" + (f" ({shape})" if shape else ""))
    longest = max((v.offset_tokens + v.run.tokens for v in views), default=0)
    trained = sum(r.tokens for r in runs)
    scale = f"{len(runs)} run{'s' if len(runs) != 1 else ''}, {trained:,} tokens trained in all"
    scale += f", up to {longest:,} tokens into one model"
    if params:
        scale += f" ({longest / params:.1f} tokens per parameter)"
    counts = sorted(len(r.eval_records) for r in runs)
    if counts:
        scale += f", {counts[len(counts) // 2]} evaluations per run (median)"
    parts.append(scale)
    return " · ".join(parts)


def write_report(
    runs: list[str | Path],
    out_dir: str | Path,
    *,
    baseline: str | None = "retrain",
    title: str = "evertrain continual pre-training report",
    subtitle: str = "",
    law: Any = None,
) -> Path:
    """Write ``out_dir/index.html`` (self-contained, interactive) with its PNGs and JSON; return
    the HTML path.

    ``law``: a fitted :class:`evertrain.laws.CPTLaw` (or its JSON's path): its predicted old-
    and new-data curves of each continual run, with their bands, are drawn dashed over the
    measured ones in the per-dataset panels (:mod:`evertrain.continual.report_law`).

    ``subtitle``: a line under the title saying what was trained (data, model size, tokens); a
    line naming the datasets, model and scale read from the runs is always added under it."""
    if not runs:
        raise ReportError("no runs given: pass one or more run directories")
    cpt = report_law.load_law(law) if law is not None else None  # a bad law: before any work
    cache: dict[str, Run] = {}

    def load(path: str | Path) -> Run:
        key = str(_resolved(Path(path)))
        if key not in cache:
            cache[key] = load_run(path)
        return cache[key]

    try:
        loaded = [load(path) for path in runs]
        labels = _unique_labels(loaded)
        for run, label in zip(loaded, labels, strict=True):
            # its "final" losses are mid-recipe: said here, and kept out of the headline
            if run.stopped_short:
                warnings.warn(
                    f"run {label} ({run.path}) stopped at {run.tokens:,} of its "
                    f"{run.budget_tokens:,} tokens (paused, preempted or still running): its row "
                    "shows where it stopped, not its recipe's end; `--resume` it to compare it "
                    "whole",
                    UserWarning,
                    stacklevel=2,
                )
        views = [view_of(run, label, load) for run, label in zip(loaded, labels, strict=True)]
    except RunError as error:
        raise ReportError(str(error)) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    curves = curves_figure_data(views)
    if cpt is not None:
        predicted = [
            report_law.run_predictions(cpt, v.run, v.offset_tokens, v.offset_steps) for v in views
        ]
        report_law.attach_predictions(curves, predicted)
    atomic_write_json(out / "curves.json", curves)
    plot_panels(curves, out / "curves.png")

    outcomes = [stage_outcome(run) for run in loaded]
    summary = summary_figure_data(outcomes, labels)
    atomic_write_json(out / "summary.json", summary)
    plot_summary(summary, out / "summary.png")

    rows = comparison_table(outcomes, baseline)
    for row, view in zip(rows, views, strict=True):
        row["path"] = str(view.run.path)
        row["label"] = view.label
        row["evals"] = len(view.run.eval_records)
        row["stopped_short"] = view.run.stopped_short
    sentence = headline(rows, baseline)
    context = describe_runs(views, curves["datasets"])
    atomic_write_json(
        out / "report.json",
        {
            "title": title,
            "subtitle": subtitle,
            "context": context,
            "baseline": baseline,
            "headline": sentence,
            "runs": rows,
        },
    )
    page = {
        "title": title,
        "subtitle": subtitle,
        "context": context,
        "headline": sentence,
        "baseline": baseline,
        "runs": [
            {"name": view.label, "recipe": view.run.recipe, **style}
            for view, style in zip(views, run_styles(len(views)), strict=True)
        ],
        "curves": curves,
        "summary": summary,
        "rows": rows,
        "png": {"curves": "curves.png", "summary": "summary.png"},
    }
    atomic_write_text(out / "index.html", render_page(page))
    return out / "index.html"


def _save_png(fig: Any, path: Path) -> None:
    """Render ``fig`` to memory and write it atomically (a killed run never leaves half a PNG)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _none_if_nan(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
