"""Do the CPT law's 90 % bands hold over every three-run set the design rule admits (issue 13)?

    python benchmarks/cpt_law_bands.py                  # ~17-22 min, 2 cores, cpt_law.py's grid
    python benchmarks/cpt_law_bands.py --base-seed 1    # that base: cpt_law_bands_seed1.json
    python benchmarks/cpt_law_bands.py --tables         # the docs' table, every base seed
    python benchmarks/cpt_law_bands.py --toy            # tiny sizes, prints the JSON (a test)

``cpt_law.py`` measures the band's held-out coverage on one fit set per shift and base, the
designed one, and one set is one draw (``cpt_law_designs.py``: the rule's picks rank low among
their family). Here every one of the 36 spanning sets (``cpt_law.spanning_designs``) is fitted
as ``cpt_law.py`` fits its named sets (``CPTLaw().fit(..., bootstrap=100)``: the block
bootstrap and the leave-one-run-out widening, nothing tuned) and its band scored on the grid's
other 17 runs (``cpt_law.band_rows``): the share of held-out points inside the 90 % band, per
distribution and pooled (the issue's ``interval_coverage``, target 0.8-0.97), and the band's
median relative half-width at the final point. Per shift: the quartiles of coverage, the share
of sets in the target range, over it and under it, and the share meeting the prede and coverage
targets together; the same apart for the sets with and without an *interpolating fold*, a
leave-one-run-out fold whose held-out run lies inside the other two's peaks and replay ratios
(what the band is calibrated on for a recipe inside the fitted ranges: ``cv_scores``). Writes ``benchmarks/results/cpt_law_bands.json`` (``docs/laws.md``,
"Prediction bands over every spanning set").
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpt_law  # noqa: E402
import cpt_law_runs  # noqa: E402  (command line, grid, writer)
from evertrain.laws.cpt import CPTLaw  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "cpt_law_bands.json"
#: the issue's target range for the held-out coverage of a 90 % band
COVERAGE_RANGE = (0.8, 0.97)
_GRID: dict[str, Any] = {}  # a worker's base, runs and bootstrap size, set once by _init


def _init(base: Any, runs: dict[cpt_law.Key, Any], bootstrap: int) -> None:
    _GRID.update(base=base, runs=runs, bootstrap=bootstrap)


def score(keys: tuple[cpt_law.Key, ...]) -> dict[str, Any]:
    """One fit set's law with bands, scored on the grid's other runs."""
    base, runs = _GRID["base"], _GRID["runs"]
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fold of one peak or replay ratio: said by its flags
        law = CPTLaw(annealing=cpt_law.ANNEALING).fit(
            base, [runs[k] for k in keys], bootstrap=_GRID["bootstrap"], seed=0
        )
    rows, held, inside = cpt_law.band_rows(law, runs, keys)
    halfwidth = {
        d: float(np.median([(row[d]["band_final"][1] - row[d]["band_final"][0])
                            / (2 * row[d]["predicted_final"])
                            for row in rows.values() if not row["in_fit"]]))
        for d in ("old", "new")
    }  # fmt: skip
    return {
        "fit_set": [cpt_law.key_name(k) for k in keys],
        "prede_old": statistics.fmean(held["final_old"]),
        "prede_new": statistics.fmean(held["final_new"]),
        "interval_coverage": statistics.fmean(inside["old"] + inside["new"]),
        "interval_coverage_by_distribution": {d: statistics.fmean(v) for d, v in inside.items()},
        "final_halfwidth": halfwidth,
        "band": law.bootstrap["band"] if law.bootstrap else None,
        "interpolating_folds": interpolating_folds(law),
        "fit_seconds": time.perf_counter() - started,
    }


def interpolating_folds(law: CPTLaw) -> int:
    """How many of the law's leave-one-run-out folds are like the full law predicting inside
    its ranges (the held-out run inside the fold's own peaks and replay ratios, no parameter
    held): the folds :func:`evertrain.laws.intervals.cv_scores` calibrates such a recipe on."""
    cv = (law.bootstrap or {}).get("cross_validation") or {}
    unlike = set(cv.get("reduced") or {}) | set(cv.get("extrapolated") or {})
    return sum(name not in unlike for name in cv.get("held_out", []))


def summary(rows: list[dict[str, Any]], designed: list[str]) -> dict[str, Any]:
    """Coverage quartiles and shares over the sets, and apart for the sets with and without an
    interpolating fold; the designed set's row."""
    out = spread(rows)
    for label, keep in (("with_interpolating_fold", True), ("without", False)):
        part = [r for r in rows if (r["interpolating_folds"] > 0) == keep]
        out[label] = spread(part) if part else None
    out["designed"] = next((r for r in rows if sorted(r["fit_set"]) == sorted(designed)), None)
    return out


def spread(rows: list[dict[str, Any]]) -> dict[str, Any]:
    low, high = COVERAGE_RANGE
    coverage = np.array([r["interval_coverage"] for r in rows])
    meets = [r["prede_old"] <= 0.01 and r["prede_new"] <= 0.01 for r in rows]
    q = np.quantile(coverage, [0.0, 0.25, 0.5, 0.75, 1.0])
    by_distribution = {
        d: float(np.median([r["interval_coverage_by_distribution"][d] for r in rows]))
        for d in ("old", "new")
    }
    return {
        "sets": len(rows),
        "coverage": dict(zip(("min", "q25", "median", "q75", "max"), map(float, q), strict=True)),
        "median_coverage_by_distribution": by_distribution,
        "share_in_range": float(np.mean((coverage >= low) & (coverage <= high))),
        "share_over": float(np.mean(coverage > high)),
        "share_under": float(np.mean(coverage < low)),
        "share_meeting_prede": float(np.mean(meets)),
        "share_meeting_all": float(np.mean(
            [m and low <= c <= high for m, c in zip(meets, coverage, strict=True)])),
        "median_prede": {
            d: float(np.median([r[f"prede_{d}"] for r in rows])) for d in ("old", "new")
        },
        "median_final_halfwidth": {
            d: float(np.median([r["final_halfwidth"][d] for r in rows])) for d in ("old", "new")
        },
    }  # fmt: skip


def table(payloads: list[dict[str, Any]]) -> str:
    bases = " / ".join(str(p["scale"]["seed"]) for p in payloads)
    lines = [f"| shift | sets | median coverage (bases {bases}) | q25-q75 | min-max | in 0.8-0.97 "
             "| over 0.97 | under 0.8 | meeting prede and coverage | median final half-width "
             "old, new | designed set: coverage |", "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for shift in payloads[0]["shifts"]:
        s = [p["shifts"][shift]["summary"] for p in payloads]
        cov = [x["coverage"] for x in s]
        cells = [
            " / ".join(f"{c['median']:.2f}" for c in cov),
            " / ".join(f"{c['q25']:.2f}-{c['q75']:.2f}" for c in cov),
            " / ".join(f"{c['min']:.2f}-{c['max']:.2f}" for c in cov),
            *(" / ".join(f"{x[k]:.0%}" for x in s)
              for k in ("share_in_range", "share_over", "share_under", "share_meeting_all")),
            " / ".join(f"{x['median_final_halfwidth']['old']:.2%}, "
                       f"{x['median_final_halfwidth']['new']:.2%}" for x in s),
            " / ".join(f"{x['designed']['interval_coverage']:.2f}" if x["designed"] else "-"
                       for x in s),
        ]  # fmt: skip
        lines.append(f"| {shift} | {s[0]['sets']} | " + " | ".join(cells) + " |")
    lines += ["", f"| shift | sets | interpolating fold | median coverage (bases {bases}) | in "
              "0.8-0.97 | over 0.97 | under 0.8 | median prede_old | median prede_new | meeting "
              "both prede |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for shift in payloads[0]["shifts"]:
        for label, name in (("with_interpolating_fold", "yes"), ("without", "no")):
            s = [p["shifts"][shift]["summary"][label] for p in payloads]
            if any(x is None for x in s):
                continue
            cells = [
                " / ".join(f"{x['coverage']['median']:.2f}" for x in s),
                *(" / ".join(f"{x[k]:.0%}" for x in s)
                  for k in ("share_in_range", "share_over", "share_under")),
                *(" / ".join(f"{x['median_prede'][d]:.4f}" for x in s) for d in ("old", "new")),
                " / ".join(f"{x['share_meeting_prede']:.0%}" for x in s),
            ]  # fmt: skip
            sets = "/".join(str(x["sets"]) for x in s)
            lines.append(f"| {shift} | {sets} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if (start := cpt_law_runs.grid_start(__doc__, RESULTS, table)) is None:
        return  # --tables: printed
    args, started, scale, peaks, replays, continual_out, shifts = start
    designed = cpt_law.designed_fit_set(peaks, replays)
    bootstrap = cpt_law.TOY_BOOTSTRAP if args.toy else cpt_law.BOOTSTRAP
    payload: dict[str, Any] = {"shifts": {}}
    grids = cpt_law_runs.grid_shifts(args, scale, continual_out, peaks, replays, shifts)
    for shift, base, runs, same_runs_as in grids:
        sets = cpt_law.spanning_designs(list(runs), designed)
        if args.toy:
            sets = sets[: cpt_law.TOY_SPANNING]
        with ProcessPoolExecutor(args.workers, initializer=_init,
                                 initargs=(base, runs, bootstrap)) as pool:  # fmt: skip
            rows = []
            for row in pool.map(score, sets):
                rows.append(row)
                print(f"  {len(rows)}/{len(sets)} {' + '.join(row['fit_set'])}: coverage "
                      f"{row['interval_coverage']:.2f}, prede {row['prede_old']:.4f} / "
                      f"{row['prede_new']:.4f}", flush=True)  # fmt: skip
        entry: dict[str, Any] = {"summary": summary(rows, [cpt_law.key_name(k) for k in designed]),
                                 "rows": rows}  # fmt: skip
        if not args.toy:
            entry["same_runs_as"] = same_runs_as
        payload["shifts"][shift] = entry
    payload["method"] = (
        f"per shift, on cpt_law.py's grid: every spanning 3-run fit set fitted with "
        f"CPTLaw().fit(bootstrap={bootstrap}, seed=0) as the library fits it (block bootstrap + "
        f"leave-one-run-out widening) and scored on the other runs: share of held-out points "
        f"inside the {cpt_law.LEVEL:.0%} band (both distributions pooled), target range "
        f"{COVERAGE_RANGE}; prede as cpt_law.py; half-width = (upper - lower) / 2 / prediction "
        "at each held-out run's final point"
    )
    payload["scale"] = {"seed": cpt_law.SEED, "peaks": list(peaks), "replays": list(replays),
                        "schedules": list(cpt_law.SCHEDULES), "bootstrap": bootstrap}  # fmt: skip
    cpt_law_runs.finish(payload, args, "cpt_law_bands.py", started, table)


if __name__ == "__main__":
    main()
