"""Loss-curve laws on the real curves: the shared protocol, fit time, LD speed, optimised schedule.

    python benchmarks/laws.py [--curves DIR] [--out benchmarks/results]

``--curves`` is a folder holding ``25M/`` and ``100M/`` CSV folders; by default the copy packaged
with evertrain (``evertrain.laws.shared_curves_dir``), so the benchmark runs wherever it is installed.

For each model size (25M, 100M) and law (multi-power ``mpl`` fitted by the reference protocol,
the default, and ``mpl_multistart`` by converged multi-start L-BFGS-B; annealing ``annealing``
with the paper's warmup-at-peak convention, and ``annealing_as_is``): fit on cosine_24000,
constant_24000, wsdcon_9; predict the six other curves from their schedules; PredE / WorstE /
R^2 per held-out curve, averaged over the six (and the largest WorstE). For both MPL fitting
methods, a validation that uses the three training curves only (held-out tails, left-out curve). Side by side in one process: the cost of
one fitting-objective evaluation with the naive O(T^2) LD (the reference implementation's loop)
against the exact change-point LD and the bucketed LD the fit uses. Then the schedule that
minimises the 25M MPL fit's predicted loss at 24,000 steps against cosine and the best WSD.
Writes ``benchmarks/results/laws.json`` and PNG plots next to it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from evertrain._atomic import atomic_write_json
from evertrain.laws import (
    SHARED_FIT,
    SHARED_TEST,
    AnnealingLaw,
    LossCurve,
    MultiPowerLaw,
    load_shared_curves,
    lr_array,
    multi_power_ld_naive,
    shared_curves_dir,
)
from evertrain.laws.optimize import optimize_schedule
from evertrain.laws.plots import plot_held_out, plot_predictions

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = {  # Luo et al. 2025 repository README, test set, averaged over the six curves
    "25M": {"r2": 0.9988, "prede": 0.00110, "worste": 0.00409},
    "100M": {"r2": 0.9983, "prede": 0.00142, "worste": 0.00583},
}
PUBLISHED_PARAMS = {  # the same repository's fitted parameters (src/config.py)
    "25M": {
        "L0": 3.04045406,
        "A": 0.52468604,
        "alpha": 0.50786857,
        "B": 363.78751622,
        "C": 2.06560812,
        "beta": 0.58279013,
        "gamma": 0.64142257,
    },
    "100M": {
        "L0": 2.6514477,
        "A": 0.60115152,
        "alpha": 0.45295811,
        "B": 437.9464276,
        "C": 2.13245612,
        "beta": 0.59785199,
        "gamma": 0.65523644,
    },
}
LAWS = {  # key -> (fresh law, fitting method)
    "mpl": (lambda: MultiPowerLaw(), "reference"),
    "mpl_multistart": (lambda: MultiPowerLaw(), "multistart"),
    "annealing": (lambda: AnnealingLaw(warmup="peak"), "multistart"),
    "annealing_as_is": (lambda: AnnealingLaw(warmup="as-is"), "multistart"),
}


def protocol(law_key: str, curves: dict, out_dir: Path, size: str) -> dict:
    make, method = LAWS[law_key]
    law = make()
    fit = law.fit([curves[name] for name in SHARED_FIT], seed=0, method=method)
    held_out = law.score([curves[name] for name in SHARED_TEST])
    plot_held_out(
        law,
        list(curves.values()),
        SHARED_FIT,
        out_dir / f"laws_{law_key}_{size}.png",
        f"{law_key} law, {size}: fitted on {', '.join(SHARED_FIT)} (solid), held out (dashed)",
    )
    return {
        "prede": held_out["prede"],
        "worste": held_out["worste"],
        "worste_max": held_out["worste_max"],
        "r2": held_out["r2"],
        "fit_method": fit.method,
        "fit_seconds": fit.fit_seconds,
        "fit_objective": fit.objective,
        "fit_converged": fit.converged,
        "params": fit.params,
        "options": fit.options,
        "fitted_curves": {"prede": fit.prede, "worste": fit.worste, "r2": fit.r2},
        "per_curve": held_out["per_curve"],
    }


def _split_tail(curve: LossCurve, fraction: float) -> tuple[LossCurve, LossCurve]:
    """(head, tail): the tail holds the logged points in the last ``fraction`` of the curve's
    logged step range; both keep the full LR array (the schedule is known in advance)."""
    cut = curve.steps[0] + (1.0 - fraction) * (curve.steps[-1] - curve.steps[0])
    head = curve.steps <= cut
    return (
        LossCurve(curve.name, curve.steps[head], curve.loss[head], curve.lr),
        LossCurve(f"{curve.name}_tail", curve.steps[~head], curve.loss[~head], curve.lr),
    )


def training_only_validation(method: str, curves: dict) -> dict:
    """PredE of the MPL fitted by ``method`` on splits of the three TRAINING curves only (no test
    curve is used): the last 25 % / 50 % of every training curve held out at once, and each
    training curve left out in turn (fit on the other two, both keep a decay curve)."""
    fitted = [curves[name] for name in SHARED_FIT]
    result = {}
    for fraction in (0.25, 0.5):
        parts = [_split_tail(curve, fraction) for curve in fitted]
        law = MultiPowerLaw()
        law.fit([head for head, _ in parts], method=method)
        result[f"tail_{int(fraction * 100)}"] = law.score([tail for _, tail in parts])["prede"]
    for i, curve in enumerate(fitted):
        law = MultiPowerLaw()
        law.fit([c for j, c in enumerate(fitted) if j != i], method=method)
        result[f"leave_out_{curve.name}"] = law.score([curve])["prede"]
    result["mean"] = float(np.mean(list(result.values())))
    return result


def objective_speed(curves: dict) -> dict:
    """Seconds per evaluation of the fitting objective's LD on the three fitted curves."""
    fitted = [curves[name] for name in SHARED_FIT]
    law = MultiPowerLaw(PUBLISHED_PARAMS["25M"])
    law._setup(fitted)
    p = law.params
    assert p is not None

    def timed(fn, repeat: int) -> float:
        fn()
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        return (time.perf_counter() - started) / repeat

    def naive() -> None:
        for c in fitted:
            multi_power_ld_naive(c.lr, c.steps, p["B"], p["C"], p["beta"], p["gamma"])

    theta = law._theta(p)
    loss = np.concatenate([c.loss for c in fitted])
    data = {level: law._prepare(fitted, level) for level in ("exact", "fine", "coarse")}
    result = {"naive_ld_seconds": timed(naive, 3)}
    for level, prepared in data.items():
        result[f"{level}_objective_and_gradient_seconds"] = timed(
            lambda d=prepared: law._objective(theta, d, loss), 5
        )
        result[f"{level}_pairs"] = len(prepared.pairs)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--curves",
        type=Path,
        default=shared_curves_dir("25M").parent,
        help="folder with 25M/ and 100M/ curve CSVs (default: the packaged copy)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "command": "python benchmarks/laws.py",
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "protocol": {
            "fit": list(SHARED_FIT),
            "test": list(SHARED_TEST),
            "metrics": "averaged over the six test curves",
        },
    }
    fits = {}
    for law_key in LAWS:
        results[law_key] = {}
    for size in ("25M", "100M"):
        curves = load_shared_curves(args.curves / size)
        for law_key in LAWS:
            entry = protocol(law_key, curves, out_dir, size)
            results[law_key][size] = entry
            print(
                f"{law_key:16s} {size:5s} R2={entry['r2']:.4f} PredE={entry['prede']:.5f} "
                f"WorstE={entry['worste']:.5f} (max {entry['worste_max']:.5f}) fit {entry['fit_seconds']:.2f} s",
                flush=True,
            )
            if law_key == "mpl":
                fits[size] = MultiPowerLaw(entry["params"])
        published_law = MultiPowerLaw(PUBLISHED_PARAMS[size])
        ours = published_law.score([curves[name] for name in SHARED_TEST])
        results.setdefault("published_mpl", {})[size] = {
            **PUBLISHED[size],
            "params": PUBLISHED_PARAMS[size],
            "published_params_scored_here": {
                k: ours[k] for k in ("prede", "worste", "worste_max", "r2")
            },
        }
        for method in ("reference", "multistart"):
            validation = training_only_validation(method, curves)
            results.setdefault("training_only_validation", {}).setdefault(size, {})[method] = (
                validation
            )
            print(f"training-only validation {size} {method}: {validation}", flush=True)
        if size == "25M":
            results["objective_speed_25M"] = objective_speed(curves)
            print("objective speed", results["objective_speed_25M"], flush=True)

    law = fits["25M"]
    started = time.perf_counter()
    optimum = optimize_schedule(law, 24000, 3e-4, 3e-5, 2160)
    seconds = time.perf_counter() - started
    results["optimized_schedule_25M"] = {
        "law": "mpl (25M fit above)",
        "steps": 24000,
        "predicted_final_loss": optimum.final_loss,
        "cosine_final_loss": optimum.cosine["final_loss"],
        "best_wsd": optimum.wsd,
        "gain_vs_cosine": optimum.gain_vs_cosine,
        "gain_vs_best_wsd": optimum.gain_vs_wsd,
        "optimize_seconds": seconds,
        "schedule": optimum.spec,
    }
    grid = np.unique(np.r_[np.arange(2160, 24000, 24), 23999])
    curves_to_plot = {}
    for label, lr in (
        ("optimised", optimum.lr),
        ("cosine", lr_array(optimum.cosine["schedule"], 24000)),
        (optimum.wsd["label"], lr_array(optimum.wsd["schedule"], 24000)),
    ):
        curves_to_plot[label] = (grid, lr[grid], law.predict_lr(lr, grid))
    plot_predictions(
        law,
        curves_to_plot,
        out_dir / "laws_optimized_25M.png",
        title="25M MPL fit: optimised schedule",
    )
    print(
        f"optimised 25M schedule: {optimum.final_loss:.5f} vs cosine {optimum.cosine['final_loss']:.5f}, "
        f"best WSD {optimum.wsd['label']} {optimum.wsd['final_loss']:.5f} ({seconds:.1f} s)",
        flush=True,
    )
    atomic_write_json(out_dir / "laws.json", results)
    print(f"-> {out_dir / 'laws.json'}")


if __name__ == "__main__":
    main()
