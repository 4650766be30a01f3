"""Figures for fitted laws (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evertrain._atomic import atomic_write_bytes
from evertrain.laws.base import Law
from evertrain.laws.curves import LossCurve


def _save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically and close it (pyplot keeps every open figure alive)."""
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        atomic_write_bytes(path, buffer.getvalue())
        return Path(path)
    finally:
        _pyplot().close(fig)


def _finish(
    fig: Any, top: Any, bottom: Any, path: str | Path, *, labels: tuple[str, str], title: str
) -> Path:
    """Label a two-panel figure (the top one's y and title and legend, the bottom one's y, step
    as x), then save and close it."""
    top.set_ylabel(labels[0])
    top.legend(fontsize=8)
    top.set_title(title)
    bottom.set_ylabel(labels[1])
    bottom.set_xlabel("step")
    return _save(fig, path)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fit(
    law: Law, curves: Sequence[LossCurve], path: str | Path, title: str | None = None
) -> Path:
    """Logged losses (dots) against the law's curves (lines), with relative errors below."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=[3, 1])
    for index, curve in enumerate(curves):
        color = f"C{index % 10}"
        dense = np.unique(
            np.linspace(curve.steps[0], curve.steps[-1], 400).round().astype(np.int64)
        )
        top.plot(curve.steps, curve.loss, ".", color=color, markersize=3, alpha=0.6)
        top.plot(dense, law.predict_lr(curve.lr, dense), "-", color=color, label=curve.name)
        if getattr(law, "bootstrap", None):
            from evertrain.laws.intervals import law_band

            band = law_band(law, curve.lr, dense)
            top.fill_between(dense, band.lower, band.upper, color=color, alpha=0.2)
        pred = law.predict_lr(curve.lr, curve.steps)
        bottom.plot(curve.steps, (pred - curve.loss) / curve.loss, "-", color=color)
    bottom.axhline(0.0, color="black", linewidth=0.5)
    return _finish(
        fig,
        top,
        bottom,
        path,
        labels=("loss", "(pred - loss) / loss"),
        title=title or f"{law.name} law: logged (dots) vs law (lines)",
    )


def plot_predictions(
    law: Law,
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    path: str | Path,
    title: str | None = None,
    bands: Mapping[str, Any] | None = None,
) -> Path:
    """Predicted loss curves (top) and their LR schedules (bottom): ``{label: (steps, lr, pred)}``,
    the final loss of each in the legend; ``bands[label]`` (an ``intervals.Band`` or any object
    with ``lower``/``upper`` arrays at the same steps) is drawn as a shaded band."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=[3, 1.3])
    finals = [float(pred[-1]) for _, _, pred in predictions.values()]
    for index, (label, (steps, lr, pred)) in enumerate(predictions.items()):
        color = f"C{index % 10}"
        top.plot(steps, pred, color=color, label=f"{label}: final {pred[-1]:.4f}")
        if bands and label in bands:
            top.fill_between(steps, bands[label].lower, bands[label].upper, color=color, alpha=0.2)
        bottom.plot(steps, lr, color=color)
    if finals:
        # zoom on the part of the curves that differs, not the early transient
        low, high = min(finals), max(float(np.median(pred)) for _, _, pred in predictions.values())
        pad = 0.1 * max(high - low, 1e-3)
        top.set_ylim(low - pad, high + 3 * pad)
    return _finish(
        fig,
        top,
        bottom,
        path,
        labels=(f"predicted loss ({law.name})", "learning rate"),
        title=title or "predicted loss by schedule",
    )


def plot_held_out(
    law: Law, curves: Sequence[LossCurve], fitted: Sequence[str], path: str | Path, title: str
) -> Path:
    """Every curve of a size with the law's prediction; fitted curves solid, held-out dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 6))
    for index, curve in enumerate(curves):
        color = f"C{index % 10}"
        pred = law.predict_lr(curve.lr, curve.steps)
        style = "-" if curve.name in fitted else "--"
        ax.plot(curve.steps, curve.loss, ".", color=color, markersize=2, alpha=0.5)
        ax.plot(
            curve.steps,
            pred,
            style,
            color=color,
            label=curve.name + (" (fit)" if curve.name in fitted else ""),
        )
    ax.set_ylim(
        min(float(c.loss.min()) for c in curves) - 0.02, float(np.median(curves[0].loss)) + 0.3
    )
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    ax.set_title(title)
    return _save(fig, path)


def plot_cpt(predictions: Sequence[Any], path: str | Path, title: str | None = None) -> Path:
    """Old-data (solid) and new-data (dashed) predicted losses of CPT recipes
    (``CPTPrediction`` objects), bands shaded where present, LRs below."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=[3, 1.3])
    for index, p in enumerate(predictions):
        color = f"C{index % 10}"
        for d, style in (("old", "-"), ("new", "--")):
            top.plot(p.steps, p.loss[d], style, color=color, label=f"{p.recipe.label()} ({d})")
            if p.lower:
                top.fill_between(p.steps, p.lower[d], p.upper[d], color=color, alpha=0.15)
        bottom.plot(p.steps, p.lr, color=color)
    return _finish(
        fig,
        top,
        bottom,
        path,
        labels=("predicted loss (cpt)", "learning rate"),
        title=title or "CPT law: old data (solid), new data (dashed)",
    )
