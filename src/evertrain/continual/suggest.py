"""`evertrain continual compare --suggest`: fit the CPT law on the compared runs, say what it prefers.

The continual area composes the laws through their public API only (:mod:`evertrain.laws`):
the base run and the compared runs that start from the base's final checkpoint (``finetune``,
``rewarm``, ``rewarm+replay``; ``infinite+replay`` starts elsewhere in the base and ``retrain``
from scratch, so a law of one starting point cannot use them) are read with
:func:`evertrain.laws.read_cpt_runs`, the law is fitted with bootstrap bands, and
:meth:`evertrain.laws.CPTLaw.optimize` picks the recipe for the goal.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evertrain.continual.runs import load_run

#: recipes that continue the base's final checkpoint: the runs one CPT law can be fitted on
FROM_FINAL = ("finetune", "rewarm", "rewarm+replay")
#: bootstrap refits for the printed bands (the `law cpt fit` default is 50; fewer keeps a
#: compare quick, and the bands are a guide, not a measured figure)
SUGGEST_BOOTSTRAP = 30
LEVEL = 0.9


def check_suggest(
    base_dir: str | Path, recipes: Sequence[str], old: Sequence[str], new: Sequence[str], goal: str
) -> None:
    """Everything `--suggest` needs that can be checked before any recipe trains: the goal, a
    recipe the law can use, and the base's evaluations on both the old and the new data."""
    from evertrain.laws import parse_goal

    parse_goal(goal)
    usable = [r for r in recipes if r in FROM_FINAL]
    if not usable:
        raise ValueError(
            f"--suggest fits the CPT law on runs that continue the base's final checkpoint "
            f"({', '.join(FROM_FINAL)}); the recipes {', '.join(recipes)} have none: add one"
        )
    names = [*old, *new]
    evals = load_run(base_dir).eval_records
    have = sorted({k for r in evals for k in r["eval"]})
    if not any(all(n in r["eval"] for n in names) for r in evals):
        raise ValueError(
            f"--suggest needs the base run {base_dir} evaluated on both the old ({', '.join(old)}) "
            f"and new ({', '.join(new)}) data, and its log.jsonl evaluates "
            f"{', '.join(have) or 'nothing'}: train the base with data.eval naming both, or drop "
            "--suggest"
        )


def suggest(
    base_dir: str | Path,
    run_dirs: Sequence[str | Path],
    old: Sequence[str],
    new: Sequence[str],
    goal: str,
    law_path: str | Path,
) -> list[str]:
    """Fit the CPT law on the base and the usable runs of ``run_dirs``, save it to ``law_path``
    and return the lines that describe the recipe it prefers for ``goal``."""
    from evertrain.laws import CPTLaw, read_cpt_runs
    from evertrain.laws.curves import schedule_label

    usable = [Path(p) for p in run_dirs if load_run(p).meta.get("recipe") in FROM_FINAL]
    if not usable:
        raise ValueError(
            f"--suggest: none of the compared runs continues the base's final checkpoint "
            f"({', '.join(FROM_FINAL)}): nothing to fit the CPT law on"
        )
    base, runs = read_cpt_runs(base_dir, usable, old=list(old), new=list(new))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        law = CPTLaw().fit(base, runs, bootstrap=SUGGEST_BOOTSTRAP, seed=0)
        law.save(law_path)
        result: dict[str, Any] = law.optimize(goal, interval=LEVEL)
    recipe, prediction = result["recipe"], result["prediction"]
    lines = [
        f"suggest: the CPT law fitted on the base + {', '.join(r.name for r in runs)} prefers, "
        f"for goal {goal} ({result['searched']} recipes searched, {LEVEL:.0%} bands):",
        f"  schedule {schedule_label(recipe.schedule)}  replay {recipe.replay:g}  "
        f"steps {recipe.steps}",
    ]
    for d in ("old", "new"):
        lines.append(
            f"  {d}-data loss {prediction.final(d):.5f} [{float(prediction.lower[d][-1]):.5f}, "
            f"{float(prediction.upper[d][-1]):.5f}]  (base at the stage start "
            f"{result['reference'][d]:.5f})"
        )
    notes = list(result["extrapolates"])
    if not law.kappa_fitted:
        notes.append(
            "the compared runs share one replay ratio, so the law's replay rate (kappa) was not "
            "fitted: compare runs with two or more replay ratios for a replay you can trust"
        )
    if not law.gamma_fitted:
        notes.append(
            "the compared runs share one peak LR, so the law's LR-level term (gamma) was not "
            "fitted and every other peak is extrapolated: `evertrain law cpt design` names the "
            "runs to add, or probe each replay ratio at another peak for a fifth of the stage "
            "(docs/laws.md, 'Probes')"
        )
    # the law's own warnings (e.g. a replay outside the fitted ones), once each
    notes += sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)})
    lines += [f"  warning: {note}" for note in notes]
    lines.append(f"  law: {law_path} (evertrain law cpt predict/optimize read it)")
    return lines
