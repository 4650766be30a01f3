"""Predicted curves with bands for the continual report: a fitted CPT law, overlaid on the runs.

For each run of the report that is a continual stage (its ``continual.json`` names the old and
new data), the law predicts the old- and new-data losses from the run's logged per-step LR and
replay ratio alone (never its losses), at the run's own evaluations, with the law's bootstrap
band. The report draws each as a dashed line in the run's colour over a shaded band, in the
per-dataset panels of the PNG and the page. The laws are used through their public API.
"""

from __future__ import annotations

import warnings
from typing import Any

from evertrain.continual.runs import Run

#: the band drawn (the law's bootstrap quantiles)
LEVEL = 0.9


def load_law(law: Any) -> Any:
    """A :class:`evertrain.laws.CPTLaw` from a law or the path of a ``law cpt fit`` JSON."""
    from evertrain.laws import CPTLaw, LawError, load_cpt_law

    if isinstance(law, CPTLaw):
        return law
    try:
        return load_cpt_law(law)
    except (LawError, OSError) as error:
        raise ValueError(f"--law {law}: {error}") from None


def _replay(run: Run, old: list[str]) -> float:
    """The old data's share of the stage's sampling weights (``data.mixture``)."""
    data = run.config.get("data") or {}
    names = list(data.get("train") or {})
    mixture = data.get("mixture") or {n: 1.0 for n in names}
    weights = {
        n: float(mixture.get(n, 0.0))
        for n in names
        if isinstance(mixture.get(n, 0.0), int | float)  # a scheduled weight: not a constant
    }
    total = sum(weights.values())
    return sum(w for n, w in weights.items() if n in old) / total if total > 0 else 0.0


def run_predictions(
    law: Any, run: Run, offset_tokens: int, offset_steps: int
) -> dict[str, dict[str, Any]]:
    """``{dataset: {x, steps, y, lower, upper}}`` of one run (x in tokens, steps in optimizer
    steps into the model, at the run's evaluations); ``{}`` for a run that is no continual
    stage of one old and one new dataset."""
    from evertrain.laws import Recipe
    from evertrain.laws.logs import load_log_curve

    old, new = list(run.meta.get("old") or []), list(run.meta.get("new") or [])
    if len(old) != 1 or len(new) != 1 or not run.train_records:
        return {}
    why = law.mismatch(run.path)
    if why is not None:
        warnings.warn(
            f"run {run.path}: no predicted curve drawn, the CPT law was fitted on other runs "
            f"({why}): fit a law on this run's shift and base (`evertrain law cpt fit`)",
            stacklevel=2,
        )
        return {}
    evals = [r for r in run.eval_records if int(r.get("step", 0)) >= 1]
    if not evals:
        return {}
    lr = load_log_curve(run.path)[0].lr
    steps = [min(int(r["step"]) - 1, len(lr) - 1) for r in evals]
    recipe = Recipe(lr, _replay(run, old), len(lr), name=run.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the replay caveat is the law's fit's, said at fit time
        prediction = law.predict(recipe, steps=steps, interval=LEVEL if law.bootstrap else None)
    x = [float(offset_tokens + int(r.get("tokens", 0))) for r in evals]
    at_steps = [float(offset_steps + int(r["step"])) for r in evals]
    out = {}
    for role, dataset in (("old", old[0]), ("new", new[0])):
        entry: dict[str, Any] = {
            "x": x,
            "steps": at_steps,
            "y": [float(f"{v:.6g}") for v in prediction.loss[role]],
        }
        if prediction.lower:
            entry["lower"] = [float(f"{v:.6g}") for v in prediction.lower[role]]
            entry["upper"] = [float(f"{v:.6g}") for v in prediction.upper[role]]
        out[dataset] = entry
    return out


def attach_predictions(curves: dict[str, Any], predicted: list[dict[str, dict[str, Any]]]) -> None:
    """Add ``predicted`` (one entry per run, ``None`` where the law says nothing) to every
    per-dataset panel of ``curves`` (``report.curves_figure_data``'s output)."""
    for panel in curves["panels"]:
        if not panel["id"].startswith("loss:"):
            continue
        dataset = panel["id"][len("loss:") :]
        row = [p.get(dataset) for p in predicted]
        if any(row):
            panel["predicted"] = row
            panel["predicted_level"] = LEVEL


def plot_predicted(ax: Any, panel: dict[str, Any], colors: list[str]) -> None:
    """Dashed predicted lines over shaded bands on one matplotlib axis."""
    for entry, color in zip(panel.get("predicted") or [], colors, strict=False):
        if not entry:
            continue
        if "lower" in entry:
            ax.fill_between(
                entry["x"], entry["lower"], entry["upper"], color=color, alpha=0.15, lw=0
            )
        ax.plot(entry["x"], entry["y"], color=color, linestyle=(0, (4, 2)), linewidth=1.2)
