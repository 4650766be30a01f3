"""Evidence for the CPT law (issue 13): fit on 3 continual runs, predict a grid of held-out ones.

    python benchmarks/cpt_law.py                 # the benchmark (~6 min on 2 cores)
    python benchmarks/cpt_law.py --toy --workers 1   # tiny sizes, prints the JSON (a test runs it)
    python benchmarks/cpt_law.py --base-seed 1       # the grid on another base: cpt_law_seed1.json
    python benchmarks/cpt_law.py --tables            # the docs' tables, per base seed too
    python benchmarks/cpt_law.py --annealing annealing   # the paper's annealing term instead:
                                                     # cpt_law_annealing[_seed<N>].json

The runs come from the issue-15 continual benchmark (``benchmarks/continual.py``): its data, its
base (a 41k-parameter GPT pre-trained on 2M tokens, D0 loss flattened) and its run machinery
(``plan_jobs`` / ``run_job`` / ``dispatch``), and its existing ``rewarm(+replay)`` sweep folders
where they are a cell of this grid. The grid, per shift (strong: D0 -> stdlib code; weak: D0 ->
the Python help topics), seed 0:

    replay {0, 0.05, 0.1, 0.25, 0.5} x re-warm peak {1e-2, 3e-3} x schedule {cosine, WSD}

(cosine re-decay and WSD, 20 % linear decay, both to 0.1 x peak after a 1 % linear re-warm).
Missing cells are trained into ``--out``; a finished run is re-read, not retrained (the continual
runner re-uses a folder only for the same inputs), so the script resumes where it stopped.

The law (:class:`evertrain.laws.cpt.CPTLaw`, as the library ships it, no setting tuned here) is
fitted on the base curve plus three runs of the grid and predicts every other run of
the grid from its schedule and replay ratio alone. Then the law chooses a recipe for
:data:`GOAL` over the grid's box (both schedules, peaks between the grid's, replay 0..0.5); a
choice that is not a grid cell is trained and measured. The headline fit set is
:data:`FIT_SET_DESIGNED`, the three runs the library's design rule picks from the grid's axes
(``evertrain law cpt design``); :data:`FIT_SET` (the replay sweep at one peak) and
:data:`FIT_SET_SPREAD` (another set the rule admits) are reported beside it, and the law is
point-fitted on every set the rule admits (``shifts.*.spanning``) and on random ones.

Writes ``benchmarks/results/cpt_law.json`` (keys in ``docs/laws.md``, "CPT law: evidence").
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import continual as bench  # noqa: E402  (the sibling benchmark script: its data and runs)
from evertrain._atomic import atomic_write_json  # noqa: E402
from evertrain.continual import runs as continual_runs  # noqa: E402
from evertrain.continual.jobs import Job  # noqa: E402
from evertrain.laws.cpt import (  # noqa: E402
    ANNEALING_TERMS,
    DEFAULT_ANNEALING,
    CPTLaw,
    Recipe,
    parse_goal,
    read_cpt_runs,
)
from evertrain.laws.design import design_fit_runs  # noqa: E402
from evertrain.laws.intervals import cv_quantile  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "cpt_law.json"
#: the law's LR-annealing term (--annealing); another than the library's default writes
#: cpt_law_<term>[_seed<N>].json
ANNEALING = DEFAULT_ANNEALING
REPLAYS = (0.0, 0.05, 0.1, 0.25, 0.5)
SCHEDULES = ("cosine", "wsd")
#: the continual benchmark's peak (its base's peak, its sweep's re-warm peak) and a lower one
PEAKS = (1e-2, 3e-3)
SEED = 0
GOAL = "weighted:0.5"
LEVEL = 0.9
BOOTSTRAP = 100
#: the toy's bootstrap (its bands mean nothing; the test only needs them drawn, quickly)
TOY_BOOTSTRAP = 5
#: The main fit set: a replay sweep at one peak and one schedule (replay 0, 0.25, 0.5 at the
#: base's peak, cosine) -- the runs a user already has after the usual replay sweep (they are
#: the continual benchmark's own runs), so every held-out run asks the law something it was not
#: shown: another replay (0.05, 0.1), another peak, another schedule, or both.
FIT_SET = (("cosine", 1e-2, 0.0), ("cosine", 1e-2, 0.25), ("cosine", 1e-2, 0.5))
#: A variant: three runs that differ in schedule, peak and replay at once.
FIT_SET_SPREAD = (("cosine", 1e-2, 0.0), ("wsd", 3e-3, 0.25), ("cosine", 3e-3, 0.5))
TOY_REPLAYS = (0.0, 0.25, 0.5)
TOY_PEAKS = (1e-2, 5e-3)
TOY_FIT_SET = (("cosine", 1e-2, 0.0), ("cosine", 1e-2, 0.25), ("cosine", 1e-2, 0.5))
TOY_FIT_SET_SPREAD = (("cosine", 1e-2, 0.0), ("wsd", 5e-3, 0.25), ("cosine", 5e-3, 0.5))


def designed_fit_set(
    peaks: tuple[float, ...], replays: tuple[float, ...], runs: int = 3
) -> tuple[Key, ...]:
    """The ``runs`` runs ``evertrain law cpt design`` picks from the grid (the library's rule)."""
    chosen = design_fit_runs(peaks, replays, SCHEDULES, runs=runs)
    return tuple((r.family, r.peak, r.replay) for r in chosen)


#: the fit set the library's design rule picks (``evertrain.laws.design_fit_runs``): the headline
FIT_SET_DESIGNED = designed_fit_set(PEAKS, REPLAYS)
TOY_FIT_SET_DESIGNED = designed_fit_set(TOY_PEAKS, TOY_REPLAYS)
#: at most this many of the rule's admissible fit sets are scored in --toy
TOY_SPANNING = 2
#: Cells re-trained from the same base with other stage seeds (data order): the run-to-run noise
#: of a final loss, the error even a law that knew each recipe's expected curve would make
#: against one single-seed run. Both peaks, both schedules, replay 0 to 0.5.
NOISE_CELLS = (("cosine", 1e-2, 0.0), ("cosine", 3e-3, 0.0), ("wsd", 1e-2, 0.25),
               ("cosine", 1e-2, 0.5))  # fmt: skip
NOISE_SEEDS = (1, 2)
TOY_NOISE_CELLS = (("cosine", 1e-2, 0.0),)
#: Random 3-run fit sets (two or more replay ratios, so kappa is fitted) the law is also scored
#: on, by point fits: the two named fit sets are two designs of many, and this says how typical
#: their figures are.
DESIGNS = 12
TOY_DESIGNS = 2
DESIGN_SEED = 1

Key = tuple[str, float, float]  # (schedule, peak, replay)


def key_name(key: Key) -> str:
    schedule, peak, replay = key
    return f"{schedule}-peak{peak:g}-replay{replay:g}"


def run_spec(specs: dict[str, dict], shift: str, key: Key, out: Path, scale: bench.Scale) -> dict:
    """The continual benchmark's spec of this grid cell: its own sweep run where the cell is one
    (cosine at its peak), else the same stage with the peak, schedule and replay overridden."""
    schedule, peak, replay = key
    in_sweep = replay in scale.replay_ratios
    # a replay the sweep has no run of (a choice of the law's, e.g. 0.4): the rewarm run's spec,
    # with the replay set below
    own = specs[f"seed-{SEED}/{shift}/{bench.ratio_name(replay if in_sweep else 0.0)}"]
    if schedule == "cosine" and math.isclose(peak, scale.peak) and in_sweep:
        return own
    overrides: dict[str, Any] = {"peak": peak, "decay_shape": schedule}
    if replay:
        overrides["replay"] = replay
    return {
        **own,
        "recipe": "rewarm+replay" if replay else "rewarm",
        "label": key_name(key),
        "out_dir": str(out / "runs" / f"seed-{SEED}" / shift / key_name(key)),
        "overrides": overrides,
    }


def train_missing(
    cells: dict[str, dict], specs: dict[str, dict], workers: int, log_name: str
) -> None:
    """Train the cells (job name -> spec) whose folders are not finished, and the base first
    when it is not finished either (every cell waits on it)."""
    base = f"seed-{SEED}/base"
    todo = {n: s for n, s in cells.items() if not bench.finished(Path(s["out_dir"]))}
    if not todo:
        return
    base_done = bench.finished(Path(specs[base]["out_dir"]))
    jobs = [
        Job(n, float(s["stage_tokens"]), {} if base_done else {base: 1.0}) for n, s in todo.items()
    ]
    all_specs = dict(todo)
    if not base_done:
        jobs.append(Job(base, 1e15))
        all_specs[base] = specs[base]
    print(f"{log_name}: {len(jobs)} run(s) to train on {workers} worker(s)", flush=True)
    bench.dispatch(jobs, all_specs, workers, Path("."))


# --------------------------------------------------------------------------------------------
# Fit, predict, choose


def measured_final(run: Any) -> dict[str, float]:
    return {"old": float(run.loss["old"][-1]), "new": float(run.loss["new"][-1])}


def band_rows(
    law: CPTLaw, runs: dict[Key, Any], fit_keys: tuple[Key, ...], probed: tuple[Key, ...] = ()
) -> tuple[dict[str, Any], dict[str, list[float]], dict[str, list[float]]]:
    """Every run predicted by ``law`` with its band at :data:`LEVEL`: per-run rows, the held-out
    runs' final and whole-curve relative errors, and whether each held-out point is inside.
    ``probed``: runs whose first evals the law was fitted on (``cpt_law_probes.py``), held out
    of the scores as the fitted runs are."""
    rows: dict[str, Any] = {}
    held: dict[str, list[float]] = {"final_old": [], "final_new": [], "curve_old": [],
                                    "curve_new": []}  # fmt: skip
    inside_by: dict[str, list[float]] = {"old": [], "new": []}
    for key, run in runs.items():
        recipe = Recipe(run.lr, run.replay, len(run.lr), name=key_name(key))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # replay outside the fitted ones: said in the notes
            pred = law.predict(recipe, steps=run.steps, interval=LEVEL)
        row: dict[str, Any] = {"schedule": key[0], "peak": key[1], "replay": key[2],
                               "in_fit": key in fit_keys}  # fmt: skip
        if probed:
            row["probed"] = key in probed
        for d in ("old", "new"):
            measured = run.loss[d]
            rel = np.abs(pred.loss[d] - measured) / measured
            inside = (measured >= pred.lower[d]) & (measured <= pred.upper[d])
            row[d] = {
                "measured_final": float(measured[-1]),
                "predicted_final": float(pred.loss[d][-1]),
                "band_final": [float(pred.lower[d][-1]), float(pred.upper[d][-1])],
                "final_rel_error": float(rel[-1]),
                "curve_rel_error": float(rel.mean()),
                "inside_band": float(inside.mean()),
            }
            if key not in fit_keys and key not in probed:
                held[f"final_{d}"].append(float(rel[-1]))
                held[f"curve_{d}"].append(float(rel.mean()))
                inside_by[d].extend(inside.astype(float).tolist())
        rows[key_name(key)] = row
    return rows, held, inside_by


def evaluate(
    base: Any,
    runs: dict[Key, Any],
    fit_keys: tuple[Key, ...],
    goal: str,
    steps: int,
    warmup: int,
    peaks: tuple[float, ...],
    replays: tuple[float, ...],
    bootstrap: int,
    probes: dict[Key, Any] | None = None,
) -> tuple[dict[str, Any], CPTLaw, dict[str, Any]]:
    """Fit on ``fit_keys`` (and the ``probes``' short runs), predict every other run; the law's
    choice for ``goal``."""
    probes = probes or {}
    started = time.perf_counter()
    law = CPTLaw(annealing=ANNEALING).fit(
        base, [runs[k] for k in fit_keys] + list(probes.values()), bootstrap=bootstrap, seed=0
    )
    fit_seconds = time.perf_counter() - started
    rows, held, inside_by = band_rows(law, runs, fit_keys, tuple(probes))
    objective = parse_goal(goal)
    reference = law.reference_losses()
    grid_objective = {
        key_name(k): objective(measured_final(r), reference)[0] for k, r in runs.items()
    }
    best_name = min(grid_objective, key=grid_objective.get)  # type: ignore[arg-type]
    search_peaks = tuple(float(f"{p:.4g}") for p in np.geomspace(min(peaks), max(peaks), 7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        choice = law.optimize(goal, steps=steps, warmup=warmup, floor_ratio=0.1,
                              replays=list(np.linspace(0.0, max(replays), 11)),
                              peaks=list(search_peaks), interval=LEVEL)  # fmt: skip
    spec = choice["recipe"].schedule
    chosen_key: Key = (spec["name"], float(spec["peak"]), round(float(choice["recipe"].replay), 6))
    inside_all = inside_by["old"] + inside_by["new"]
    result = {
        "fit_set": [key_name(k) for k in fit_keys],
        **({"probes": [key_name(k) for k in probes]} if probes else {}),
        "held_out": len(runs) - len(fit_keys) - len(probes),
        "prede_old": statistics.fmean(held["final_old"]),
        "prede_new": statistics.fmean(held["final_new"]),
        "prede_old_curve": statistics.fmean(held["curve_old"]),
        "prede_new_curve": statistics.fmean(held["curve_new"]),
        "worst_final_rel_error": {"old": max(held["final_old"]), "new": max(held["final_new"])},
        "interval_coverage": statistics.fmean(inside_all),
        "interval_coverage_by_distribution": {d: statistics.fmean(v) for d, v in inside_by.items()},
        "interval_level": LEVEL,
        "interval_points": len(inside_all),
        "fit_seconds": fit_seconds,
        "band": law.bootstrap["band"] if law.bootstrap else None,
        "band_cv_quantile": {d: cv_quantile(law, d, LEVEL) for d in ("old", "new")},
        "fit_prede": {d: v["prede"] for d, v in law.fit_report["per_distribution"].items()},
        "params": law.params,
        "kappa_fitted": law.kappa_fitted,
        "goal": goal,
        "best_grid_run": best_name,
        "best_grid_objective": grid_objective[best_name],
        "chosen": {
            "schedule": chosen_key[0],
            "peak": chosen_key[1],
            "replay": chosen_key[2],
            "predicted_final": choice["final"],
            "predicted_objective": choice["objective"],
            "band_final": {
                d: [
                    float(choice["prediction"].lower[d][-1]),
                    float(choice["prediction"].upper[d][-1]),
                ]
                for d in ("old", "new")
            },
            "extrapolates": choice["extrapolates"],
            "searched": choice["searched"],
        },
        "rows": rows,
    }
    return result, law, {"key": chosen_key, "grid_objective": grid_objective}


def held_out_errors(
    law: CPTLaw, runs: dict[Key, Any], fit_keys: tuple[Key, ...]
) -> dict[str, float]:
    """Mean relative error of the final loss over the runs not in ``fit_keys`` (point law)."""
    errors = final_errors(law, {k: r for k, r in runs.items() if k not in fit_keys})
    return {d: statistics.fmean(v) for d, v in errors.items()}


def final_errors(law: CPTLaw, runs: dict[Key, Any]) -> dict[str, list[float]]:
    """Each run's relative error of the predicted final loss, per distribution (point law)."""
    errors: dict[str, list[float]] = {"old": [], "new": []}
    for key, run in runs.items():
        recipe = Recipe(run.lr, run.replay, len(run.lr), name=key_name(key))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = law.predict(recipe, steps=run.steps[-1:])
        for d in errors:
            measured = float(run.loss[d][-1])
            errors[d].append(abs(float(pred.loss[d][-1]) - measured) / measured)
    return errors


def random_designs(keys: list[Key], n: int, seed: int, size: int = 3) -> list[tuple[Key, ...]]:
    """``n`` distinct ``size``-run fit sets with two or more replay ratios (seeded,
    reproducible)."""
    rng = random.Random(seed)
    designs: list[tuple[Key, ...]] = []
    for _ in range(1000 * max(1, n)):
        if len(designs) == n:
            break
        pick = tuple(sorted(rng.sample(keys, size)))
        if len({k[2] for k in pick}) >= 2 and pick not in designs:
            designs.append(pick)
    return designs


def spanning_designs(keys: list[Key], designed: tuple[Key, ...]) -> list[tuple[Key, ...]]:
    """Every fit set the design rule admits before its maximin choice: one run at each of the
    designed set's replay ratios, every peak and every schedule of the grid present (36 on the
    benchmark's grid); ``designed`` is the maximin one of them."""
    peaks, families = {k[1] for k in keys}, {k[0] for k in keys}
    levels = sorted(k[2] for k in designed)
    out = []
    for pick in itertools.product(*[[k for k in keys if k[2] == r] for r in levels]):
        if {k[1] for k in pick} == peaks and {k[0] for k in pick} == families:
            out.append(tuple(pick))
    return out


def design_spread(
    base: Any, runs: dict[Key, Any], fit_sets: list[tuple[Key, ...]]
) -> dict[str, Any]:
    """The law's held-out final errors over several fit sets (point fits, no bands)."""
    rows = []
    for fit_keys in fit_sets:
        law = CPTLaw(annealing=ANNEALING).fit(base, [runs[k] for k in fit_keys])
        errors = held_out_errors(law, runs, fit_keys)
        rows.append({"fit_set": [key_name(k) for k in fit_keys],
                     "prede_old": errors["old"], "prede_new": errors["new"]})  # fmt: skip
    return spread_summary(rows)


def spread_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Quartiles of ``rows``' ``prede_old`` / ``prede_new`` and the share meeting both 1 %
    targets (the rows kept)."""

    def quantiles(values: list[float]) -> dict[str, float]:
        q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
        return dict(zip(("min", "q25", "median", "q75", "max"), map(float, q), strict=True))

    return {
        "designs": len(rows),
        "prede_old": quantiles([r["prede_old"] for r in rows]),
        "prede_new": quantiles([r["prede_new"] for r in rows]),
        "share_meeting_both": statistics.fmean(
            float(r["prede_old"] <= 0.01 and r["prede_new"] <= 0.01) for r in rows
        ),
        "rows": rows,
    }


def noise_floor(
    shift: str,
    scale: bench.Scale,
    specs: dict[str, dict],
    out: Path,
    workers: int,
    cells: tuple[Key, ...],
    runs: dict[Key, Any],
    base_dir: Path,
) -> dict[str, Any]:
    """Re-train ``cells`` from the same base with stage seeds :data:`NOISE_SEEDS`: the spread of
    a final loss over seeds, and the mean |single run - seed mean| / seed mean (what a law that
    predicted each recipe's expected loss exactly would still score as prede)."""
    jobs: dict[str, dict] = {}
    for key in cells:
        for seed in NOISE_SEEDS:
            spec = copy.deepcopy(run_spec(specs, shift, key, out, scale))
            spec["setup"]["train"]["seed"] = seed
            name = f"{key_name(key)}-seed{seed}"
            spec["label"] = name
            spec["out_dir"] = str(out / "runs" / f"seed-{SEED}" / shift / "stage-seeds" / name)
            jobs[f"{shift}/stage-seeds/{name}"] = spec
    train_missing(jobs, specs, workers, shift)
    _, read = read_cpt_runs(base_dir, [s["out_dir"] for s in jobs.values()])
    repeats = dict(zip(jobs, read, strict=True))
    per_cell: dict[str, Any] = {}
    deviation: dict[str, list[float]] = {"old": [], "new": []}
    rel_std: dict[str, list[float]] = {"old": [], "new": []}
    for key in cells:
        seeds = [runs[key]] + [repeats[f"{shift}/stage-seeds/{key_name(key)}-seed{s}"]
                               for s in NOISE_SEEDS]  # fmt: skip
        cell = {}
        for d in deviation:
            finals = np.array([float(r.loss[d][-1]) for r in seeds])
            mean = float(finals.mean())
            cell[d] = {"finals": finals.tolist(), "rel_std": float(finals.std(ddof=1) / mean)}
            deviation[d].extend((np.abs(finals - mean) / mean).tolist())
            rel_std[d].append(cell[d]["rel_std"])
        per_cell[key_name(key)] = cell
    return {
        "seeds": [SEED, *NOISE_SEEDS],
        "cells": per_cell,
        "final_rel_std": {d: statistics.fmean(v) for d, v in rel_std.items()},
        "perfect_law_prede": {d: statistics.fmean(v) for d, v in deviation.items()},
    }


def close_key(key: Key, grid: dict[Key, Any]) -> Key | None:
    """The grid cell equal to ``key`` (peaks and replays compared with a tolerance)."""
    for cell in grid:
        if (
            cell[0] == key[0]
            and math.isclose(cell[1], key[1], rel_tol=1e-3)
            and abs(cell[2] - key[2]) < 1e-6
        ):
            return cell
    return None


# --------------------------------------------------------------------------------------------
# One shift


def grid_runs(
    shift: str,
    scale: bench.Scale,
    specs: dict[str, dict],
    out: Path,
    workers: int,
    grid_keys: list[Key],
) -> tuple[dict[Key, dict], Path, Any, dict[Key, Any]]:
    """The grid's cells of ``shift`` (trained first where not finished): their specs, the base
    folder, and the base and continual runs as the law reads them."""
    cells = {key: run_spec(specs, shift, key, out, scale) for key in grid_keys}
    train_missing({f"{shift}/{key_name(k)}": s for k, s in cells.items()}, specs, workers, shift)
    base_dir = Path(specs[f"seed-{SEED}/base"]["out_dir"])
    base, read = read_cpt_runs(base_dir, [s["out_dir"] for s in cells.values()])
    return cells, base_dir, base, dict(zip(cells, read, strict=True))


def measure_choice(
    result: dict[str, Any],
    law: CPTLaw,
    chosen_key: Key,
    shift: str,
    scale: bench.Scale,
    specs: dict[str, dict],
    out: Path,
    workers: int,
    runs: dict[Key, Any],
    base_dir: Path,
) -> None:
    """The law's choice measured (its grid run, else trained here) and its gap to the grid's
    best run, into ``result`` (``evaluate``'s)."""
    in_grid = close_key(chosen_key, runs)
    objective = parse_goal(GOAL)
    if in_grid is not None:
        measured = measured_final(runs[in_grid])
        source = f"grid run {key_name(in_grid)}"
    else:
        spec = run_spec(specs, shift, chosen_key, out, scale)
        spec = {**spec, "label": "chosen-" + key_name(chosen_key),
                "out_dir": str(Path(spec["out_dir"]).with_name("chosen-" + key_name(chosen_key)))}  # fmt: skip
        train_missing({f"{shift}/chosen-{key_name(chosen_key)}": spec}, specs, workers, shift)
        _, (chosen_run,) = read_cpt_runs(base_dir, [spec["out_dir"]])
        measured = measured_final(chosen_run)
        source = f"trained: {spec['out_dir']}"
    measured_objective = objective(measured, law.reference_losses())[0]
    best = result["best_grid_objective"]
    result["chosen"].update(
        {
            "in_grid": in_grid is not None,
            "measured_from": source,
            "measured_final": measured,
            "measured_objective": measured_objective,
        }
    )
    result["chosen_vs_best_gap"] = (measured_objective - best) / best


def run_shift(
    shift: str,
    scale: bench.Scale,
    specs: dict[str, dict],
    out: Path,
    workers: int,
    grid_keys: list[Key],
    fit_sets: dict[str, tuple[Key, ...]],
    peaks: tuple[float, ...],
    replays: tuple[float, ...],
    bootstrap: int,
    noise_cells: tuple[Key, ...] = (),
    designs: int = 0,
    spanning: int | None = None,
) -> dict[str, Any]:
    cells, base_dir, base, runs = grid_runs(shift, scale, specs, out, workers, grid_keys)
    walls = [continual_runs.load_run(s["out_dir"]).wall_seconds for s in cells.values()]
    steps = len(next(iter(runs.values())).lr)
    warmup = max(1, round(0.01 * steps))  # the grid's 1 % linear re-warm, in updates
    entry: dict[str, Any] = {"datasets": {"old": bench.OLD, "new": bench.SHIFTS[shift][0],
                                          "new_label": bench.SHIFTS[shift][1]}}  # fmt: skip
    # what training the grid cost (each run's own time, one thread; the runs went 2 at a time)
    entry["grid_run_wall_seconds"] = sum(w or 0.0 for w in walls)
    for label, fit_keys in fit_sets.items():
        result, law, extra = evaluate(
            base, runs, fit_keys, GOAL, steps, warmup, peaks, replays, bootstrap
        )
        measure_choice(result, law, extra["key"], shift, scale, specs, out, workers, runs,
                       base_dir)  # fmt: skip
        entry[label] = result
        print(f"{shift} {label}: fitted in {result['fit_seconds']:.0f} s; prede old "
              f"{result['prede_old']:.4f} new {result['prede_new']:.4f}", flush=True)  # fmt: skip
    if noise_cells:
        entry["noise_floor"] = noise_floor(
            shift, scale, specs, out, workers, noise_cells, runs, base_dir
        )
    if designs:
        print(f"{shift}: {designs} random fit sets (point fits)", flush=True)
        entry["designs"] = design_spread(
            base, runs, random_designs(list(runs), designs, DESIGN_SEED)
        )
    if "designed" in fit_sets:
        admitted = spanning_designs(list(runs), fit_sets["designed"])[:spanning]
        print(f"{shift}: {len(admitted)} fit sets the design rule admits (point fits)", flush=True)
        entry["spanning"] = design_spread(base, runs, admitted)
    return entry


def scale_info(scale: bench.Scale, base_dir: Path, peaks: tuple[float, ...]) -> dict[str, Any]:
    base = continual_runs.load_run(base_dir)
    summary = bench.base_summary(base)
    return {
        "model": scale.model,
        "params": summary["params"],
        "vocab_size": scale.vocab_size,
        "batch_size": scale.batch_size,
        "tokens_per_step": scale.batch_size * scale.seq_len,
        "base_tokens": summary["tokens"],
        "tokens_per_parameter_base": summary["tokens"] / max(1, summary["params"]),
        "base_flat": summary["flat"],
        "base_flat_note": "relative D0 improvement over the base's last 20 % of tokens "
        "(benchmarks/continual.py's criterion: flat when < 0.01)",
        "base_flat_constant_lr": summary["flat_constant_lr"],
        "base_anneal_gain": summary["anneal_gain"],
        "base_flat_detail_note": "the same measure over the last 20 % of the constant-LR phase "
        "(before the release anneal), and the release anneal's own relative D0 gain",
        "stage_tokens": scale.stage_tokens,
        "evals_per_stage": scale.evals_per_stage,
        "eval_tokens": scale.eval_tokens,
        "peaks": list(peaks),
        "seed": SEED,
        "base_dir": str(base_dir),
    }


def reading_notes(payload: dict[str, Any]) -> list[str]:
    """Sentences written from the figures (a re-run cannot leave a stale reading behind)."""
    notes = []
    for shift, entry in payload["shifts"].items():
        for label in ("designed", "main", "spread"):
            r = entry.get(label)
            if not r:
                continue
            hits = [
                f"prede_old {r['prede_old']:.4f} ({'meets' if r['prede_old'] <= 0.01 else 'misses'} <= 0.01)",
                f"prede_new {r['prede_new']:.4f} ({'meets' if r['prede_new'] <= 0.01 else 'misses'} <= 0.01)",
                f"coverage {r['interval_coverage']:.3f} ("
                + ("in" if 0.8 <= r["interval_coverage"] <= 0.97 else "outside")
                + " 0.8-0.97)",
                f"chosen_vs_best_gap {r['chosen_vs_best_gap']:+.4f} ("
                + ("meets" if r["chosen_vs_best_gap"] <= 0.005 else "misses")
                + " <= 0.005)",
            ]
            c = r["chosen"]
            notes.append(
                f"{shift}, fit set {label} ({', '.join(r['fit_set'])}), {r['held_out']} held-out "
                f"runs: " + "; ".join(hits) + f". The law chose {c['schedule']} peak "
                f"{c['peak']:g} replay {c['replay']:g} (measured from {c['measured_from'].split(':')[0]}); "
                f"the best grid run is {r['best_grid_run']}"
            )
            worst = max(
                (row for row in r["rows"].values() if not row["in_fit"]),
                key=lambda row: max(row["old"]["final_rel_error"], row["new"]["final_rel_error"]),
            )
            notes.append(
                f"{shift}, {label}: worst held-out final error "
                f"{max(worst['old']['final_rel_error'], worst['new']['final_rel_error']):.4f} at "
                f"{worst['schedule']} peak {worst['peak']:g} replay {worst['replay']:g}"
            )
        floor = entry.get("noise_floor")
        main = entry.get("main")
        if floor and main:
            perfect = floor["perfect_law_prede"]
            notes.append(
                f"{shift}: stage-seed noise of a final loss (same base, {len(floor['seeds'])} "
                f"seeds, {len(floor['cells'])} cells): a perfect law would score prede_old "
                f"{perfect['old']:.4f}, prede_new {perfect['new']:.4f}; the main fit set's "
                f"{main['prede_old']:.4f} / {main['prede_new']:.4f} are "
                f"{main['prede_old'] / max(perfect['old'], 1e-12):.0f}x / "
                f"{main['prede_new'] / max(perfect['new'], 1e-12):.0f}x that: the law's error, "
                "not the runs' noise"
            )
        for key, what in (("designs", "random 3-run fit sets"),
                          ("spanning", "fit sets the design rule admits")):  # fmt: skip
            designs = entry.get(key)
            if not designs:
                continue
            old, new = designs["prede_old"], designs["prede_new"]
            notes.append(
                f"{shift}: over {designs['designs']} {what}, prede_old median "
                f"{old['median']:.4f} (quartiles {old['q25']:.4f}-{old['q75']:.4f}), prede_new "
                f"median {new['median']:.4f} ({new['q25']:.4f}-{new['q75']:.4f}); "
                f"{designs['share_meeting_both']:.0%} of the sets meet both <= 0.01"
            )
    return notes


def markdown_table(payload: dict[str, Any]) -> str:
    """The docs' evidence table from a results file."""
    lines = [
        "| shift | fit set | held out | prede_old | prede_new | curve old / new | "
        "coverage (90 % band) | chosen (measured) | best grid run | chosen_vs_best_gap |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for shift, entry in payload["shifts"].items():
        for label in ("designed", "main", "spread"):
            r = entry.get(label)
            if not r:
                continue
            c = r["chosen"]
            lines.append(
                f"| {shift} | {label} | {r['held_out']} | {r['prede_old']:.4f} | "
                f"{r['prede_new']:.4f} | {r['prede_old_curve']:.4f} / {r['prede_new_curve']:.4f} | "
                f"{r['interval_coverage']:.2f} | {c['schedule']} {c['peak']:.3g} r={c['replay']:g}"
                f"{'' if c['in_grid'] else ' (trained)'} | {r['best_grid_run']} | "
                f"{r['chosen_vs_best_gap']:+.4f} |"
            )
    return "\n".join(lines)


def seed_table(paths: list[Path]) -> str:
    """The named fit sets' figures per base seed (one results file each), with their mean and
    sample standard deviation over the seeds."""
    rows = []
    figures = ("prede_old", "prede_new", "interval_coverage", "chosen_vs_best_gap",
               "designs: median prede_old", "designs: median prede_new",
               "spanning: median prede_old", "spanning: median prede_new")  # fmt: skip
    per_seed: dict[tuple[str, str], list[list[float]]] = {}
    for path in paths:
        payload = json.loads(path.read_text())
        seed = payload["scale"]["seed"]
        for shift, entry in payload["shifts"].items():
            for label in ("designed", "main", "spread"):
                if label not in entry:  # a file written before the design rule: no row
                    continue
                values = [float(entry[label][f]) for f in figures[:4]] + [
                    float(entry[group][f"prede_{d}"]["median"]) if group in entry else math.nan
                    for group in ("designs", "spanning")
                    for d in ("old", "new")
                ]  # the fit-set families: the same on every row of a shift
                per_seed.setdefault((shift, label), []).append(values)
                rows.append(f"| {shift} | {label} | {seed} | " + " | ".join(f"{v:+.4f}" if f ==
                            "chosen_vs_best_gap" else f"{v:.4f}" for f, v in zip(figures, values,
                            strict=True)) + " |")  # fmt: skip
    for (shift, label), values in per_seed.items():
        if len(values) < 2:
            continue
        arr = np.array(values)
        cells = [
            f"{m:.4f} ± {sd:.4f}" for m, sd in zip(arr.mean(0), arr.std(0, ddof=1), strict=True)
        ]
        rows.append(
            f"| {shift} | {label} | mean ± sd ({len(values)}) | " + " | ".join(cells) + " |"
        )
    head = "| shift | fit set | base seed | " + " | ".join(figures) + " |\n"
    return head + "|" + "---|" * (3 + len(figures)) + "\n" + "\n".join(rows)


def paired_terms(pairs: list[tuple[Path, Path]]) -> str:
    """The random fit sets scored under both annealing terms, design by design: on how many the
    default term's held-out error is lower / higher (by more than 1e-4) than the other's, with
    the median paired difference, summed over the base seeds of ``pairs`` (default, other)."""
    diffs: dict[tuple[str, str], list[float]] = {}
    for default_path, other_path in pairs:
        default, other = json.loads(default_path.read_text()), json.loads(other_path.read_text())
        for shift, entry in default["shifts"].items():
            rows, others = entry["designs"]["rows"], other["shifts"][shift]["designs"]["rows"]
            if [r["fit_set"] for r in rows] != [r["fit_set"] for r in others]:
                raise SystemExit(f"{default_path} and {other_path} score different fit sets")
            for d in ("old", "new"):
                diffs.setdefault((shift, d), []).extend(
                    r[f"prede_{d}"] - o[f"prede_{d}"] for r, o in zip(rows, others, strict=True)
                )
    lines = [f"| shift | data | {DEFAULT_ANNEALING} lower / higher | median difference |",
             "|---|---|---|---|"]  # fmt: skip
    for (shift, d), values in diffs.items():
        v = np.array(values)
        lines.append(f"| {shift} | {d} | {int((v < -1e-4).sum())} / {int((v > 1e-4).sum())} of "
                     f"{len(v)} | {float(np.median(v)):+.4f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    global SEED, ANNEALING  # --base-seed, --annealing: the grid's helpers read them at the call
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--continual-out",
        default=os.path.join(tempfile.gettempdir(), "evertrain-bench-continual-v3"),
        help="benchmarks/continual.py's --out: its data, base and sweep runs are re-used",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(tempfile.gettempdir(), "evertrain-bench-cpt-law-v3"),
        help="where the grid's new runs are trained",
    )
    parser.add_argument("--workers", type=int, default=2, help="parallel runs (one thread each)")
    parser.add_argument("--results", default=str(RESULTS), help="the JSON file to write")
    parser.add_argument(
        "--shifts", default=None, help="comma-separated: strong,weak (default both; --toy: strong)"
    )
    parser.add_argument("--tables", action="store_true", help="print the docs' table and exit")
    parser.add_argument(
        "--base-seed", type=int, default=SEED,
        help="the continual benchmark's base seed the grid continues (default 0; another seed "
        "replicates the grid on that base, without the noise cells, into cpt_law_seed<N>.json)",
    )  # fmt: skip
    parser.add_argument(
        "--annealing", default=DEFAULT_ANNEALING, choices=ANNEALING_TERMS,
        help=f"the law's LR-annealing term (default {DEFAULT_ANNEALING!r}, the library's; "
        "another writes cpt_law_<term>[_seed<N>].json)",
    )  # fmt: skip
    parser.add_argument("--toy", action="store_true", help="tiny sizes; prints the JSON")
    args = parser.parse_args()
    if args.workers < 1:
        print(f"--workers {args.workers} must be >= 1", file=sys.stderr)
        raise SystemExit(2)
    args.shifts = args.shifts or ("strong" if args.toy else "strong,weak")
    shifts = [s.strip() for s in args.shifts.split(",") if s.strip()]
    bad = [s for s in shifts if s not in bench.SHIFTS]
    if bad or not shifts:
        print(f"--shifts {args.shifts!r}: choose from strong, weak", file=sys.stderr)
        raise SystemExit(2)
    SEED = args.base_seed
    if SEED not in bench.BENCH.seeds:
        print(f"--base-seed {SEED}: the continual benchmark has bases {list(bench.BENCH.seeds)}",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    ANNEALING = args.annealing
    stem = "cpt_law" if ANNEALING == DEFAULT_ANNEALING else f"cpt_law_{ANNEALING}"
    if args.results == str(RESULTS):
        args.results = str(RESULTS.with_name(f"{stem}_seed{SEED}.json" if SEED else f"{stem}.json"))
    results_path = Path(args.results)
    if args.tables:
        print(markdown_table(json.loads(results_path.read_text())))
        seeds = [RESULTS.with_name(f"{stem}.json"),
                 *sorted(RESULTS.parent.glob(f"{stem}_seed*.json"))]  # fmt: skip
        print(seed_table([p for p in seeds if p.is_file()]))
        # the default annealing term against the other, where both scored the same bases
        other = next(t for t in ANNEALING_TERMS if t != DEFAULT_ANNEALING)
        pairs = [(p, p.with_name(p.name.replace("cpt_law", f"cpt_law_{other}", 1)))
                 for p in seeds if p.is_file() and ANNEALING == DEFAULT_ANNEALING]  # fmt: skip
        pairs = [(a, b) for a, b in pairs if b.is_file()]
        if pairs:
            print(f"\nrandom fit sets, {DEFAULT_ANNEALING} against {other} ({len(pairs)} bases):")
            print(paired_terms(pairs))
        return
    started = time.perf_counter()
    wall_started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if args.toy:
        scale = replace(bench.TOY, seeds=(SEED,), replay_ratios=TOY_REPLAYS)
        peaks, replays = TOY_PEAKS, TOY_REPLAYS
        fit_sets = {"designed": TOY_FIT_SET_DESIGNED, "main": TOY_FIT_SET,
                    "spread": TOY_FIT_SET_SPREAD}  # fmt: skip
        continual_out = Path(args.out) / "continual"
    else:
        scale = replace(bench.BENCH, seeds=(SEED,))
        peaks, replays = PEAKS, REPLAYS
        fit_sets = {"designed": FIT_SET_DESIGNED, "main": FIT_SET, "spread": FIT_SET_SPREAD}
        continual_out = Path(args.continual_out)
    out = Path(args.out)
    paths = bench.prepare_data(continual_out, scale)
    _, specs = bench.plan_jobs(continual_out, scale, paths)
    grid_keys = [(s, p, r) for s in SCHEDULES for p in peaks for r in replays]
    payload: dict[str, Any] = {"shifts": {}}
    for shift in shifts:
        payload["shifts"][shift] = run_shift(
            shift,
            scale,
            specs,
            out,
            args.workers,
            grid_keys,
            fit_sets,
            peaks,
            replays,
            TOY_BOOTSTRAP if args.toy else BOOTSTRAP,
            TOY_NOISE_CELLS if args.toy else (NOISE_CELLS if SEED == 0 else ()),
            TOY_DESIGNS if args.toy else DESIGNS,
            TOY_SPANNING if args.toy else None,
        )
    first = payload["shifts"][shifts[0]]["designed"]
    # The headline figures: the first shift's designed fit set (strong, unless --shifts says
    # otherwise): the runs the library tells a user to train first (`evertrain law cpt design`)
    for key in ("prede_old", "prede_new", "prede_old_curve", "prede_new_curve",
                "chosen_vs_best_gap", "interval_coverage", "fit_set"):  # fmt: skip
        payload[key] = first[key]
    payload["headline"] = (
        f"{shifts[0]} shift, fit set 'designed' (the runs `evertrain law cpt design` picks from "
        "the grid's axes); shifts.*.main (one peak, the replay sweep) and shifts.*.spread stay "
        "beside it"
    )
    payload["targets"] = {"prede_old": "<= 0.01", "prede_new": "<= 0.01",
                          "chosen_vs_best_gap": "<= 0.005", "interval_coverage": "0.8-0.97"}  # fmt: skip
    payload["grid"] = {"schedules": list(SCHEDULES), "peaks": list(peaks),
                       "replays": list(replays), "runs_per_shift": len(grid_keys),
                       "schedule_detail": "1 % linear re-warm from 0 to the peak, then cosine "
                       "(or WSD: constant, 20 % linear decay) to 0.1 x peak, per stage"}  # fmt: skip
    payload["fit_sets"] = {
        "designed": {"runs": [key_name(k) for k in fit_sets["designed"]],
                     "why": "the 3 runs evertrain.laws.design_fit_runs picks from the grid's "
                     "schedules, peaks and replay ratios (its rule, not these runs' losses, "
                     "chose them; docs/laws.md)"},
        "main": {"runs": [key_name(k) for k in fit_sets["main"]],
                 "why": "the usual replay sweep at one peak and schedule (the continual "
                 "benchmark's own runs): held-out runs differ in replay, peak and/or schedule"},
        "spread": {"runs": [key_name(k) for k in fit_sets["spread"]],
                   "why": "three runs differing in schedule, peak and replay at once"},
    }  # fmt: skip
    payload["annealing"] = ANNEALING
    payload["method"] = (
        f"CPTLaw(annealing={ANNEALING!r}).fit(base, 3 runs, bootstrap={TOY_BOOTSTRAP if args.toy else BOOTSTRAP}); each held-out run predicted from its "
        "logged per-step LR and replay ratio at its eval steps with interval=0.9 (the band: "
        "the bootstrap band widened by the leave-one-run-out discrepancy of the 3 fit runs, "
        "evertrain.laws.intervals); prede_* = mean "
        "over held-out runs of |pred - measured| / measured at the final eval (the *_curve keys: "
        "over all the stage's evals); interval_coverage = share of held-out eval points (old and "
        f"new) inside the 90 % band; the goal {GOAL!r} (0.5 L_new + 0.5 L_old at the end) is "
        "optimised by CPTLaw.optimize over both schedules, 7 peaks geometric between the grid's "
        "and replay 0..0.5 in steps of 0.05; a choice that is no grid cell is trained; "
        "chosen_vs_best_gap = (measured objective of the choice - best grid run's) / best"
    )
    payload["noise_floor_method"] = (
        "shifts.*.noise_floor: the cells re-trained from the same base with stage seeds "
        f"{list(NOISE_SEEDS)} (data order; seed {SEED} is the grid's run); final_rel_std = mean "
        "over cells of the seeds' relative standard deviation of the final loss; "
        "perfect_law_prede = mean |run - seed mean| / seed mean, the prede a law that knew every "
        "recipe's expected loss would still score against single-seed runs"
    )
    payload["spanning_method"] = (
        "shifts.*.spanning: the law point-fitted (no bootstrap) on every 3-run fit set the "
        "design rule admits before its maximin choice (one run at each replay ratio the rule "
        "keeps, every peak and schedule present); the designed set is one of them"
    )
    payload["designs_method"] = (
        f"shifts.*.designs: the law point-fitted (no bootstrap) on {DESIGNS if not args.toy else TOY_DESIGNS} "
        f"random 3-run fit sets of the grid with two or more replay ratios (random.Random({DESIGN_SEED})), "
        "prede_old / prede_new over each set's held-out runs; quartiles, and the share of sets "
        "meeting both <= 0.01"
    )
    payload["scale"] = scale_info(scale, Path(specs[f"seed-{SEED}/base"]["out_dir"]), peaks)
    payload["notes"] = reading_notes(payload)
    payload["benchmark_seconds"] = time.perf_counter() - started
    payload["benchmark_seconds_note"] = (
        "this invocation's wall time: training only the runs not finished before, then 2 fits "
        "per shift (bootstrap and leave-one-run-out refits dominate); "
        "shifts.*.grid_run_wall_seconds: the grid runs' "
        "own training times"
    )
    payload["benchmark_started"] = wall_started
    payload["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "workers": args.workers, "torch_threads_per_run": 1,
                          "note": "2-core machine shared with other work while measuring"}  # fmt: skip
    payload["command"] = (
        "python benchmarks/cpt_law.py"
        + (" --toy" if args.toy else "")
        + (f" --base-seed {SEED}" if SEED else "")
        + (f" --annealing {ANNEALING}" if ANNEALING != DEFAULT_ANNEALING else "")
    )
    payload["scale"]["bench_scale"] = asdict(scale)
    if args.toy:
        print(json.dumps(payload, indent=2, default=float))
        return
    atomic_write_json(results_path, payload)
    print(markdown_table(payload))
    print(f"wrote {results_path}")


if __name__ == "__main__":
    sys.exit(main())
