"""How many continual runs to fit the CPT law on (issue 13): held-out error by run count.

    python benchmarks/cpt_law_runs.py                  # ~4-5 min on 2 cores, cpt_law.py's grid
    python benchmarks/cpt_law_runs.py --base-seed 1    # that base's grid: cpt_law_runs_seed1.json
    python benchmarks/cpt_law_runs.py --tables         # the docs' table, every base seed
    python benchmarks/cpt_law_runs.py --toy --workers 1    # tiny sizes, prints the JSON (a test)

``cpt_law.py`` fits the law on three continual runs, as the issue asks, and on the strong shift
misses the old data's target there. This asks whether more runs would, on the same grid (the
runs of ``cpt_law.py``, trained here where missing). Per shift:

* ``all_runs``: the law fitted on every run of the grid, scored on the same runs: how well one
  law of this form fits every recipe at once (a reference, not a strict floor: a fit set scored
  on the other runs only can do better on those);
* ``by_run_count[n]``, ``n`` in :data:`RUN_COUNTS`: the ``n`` runs ``evertrain law cpt design
  --runs n`` picks, point-fitted and scored on the other runs; beside it
  :data:`cpt_law.DESIGNS` random ``n``-run sets (two or more replay ratios), their quartiles;
* ``designed_<n>``, ``n`` in :data:`FULL_COUNTS`: ``cpt_law.py``'s whole evaluation (90 % bands
  with ``n`` leave-one-run-out folds, the law's choice for the goal, measured) on the
  designed ``n``-run set;
* ``same_runs_as``: the largest difference of a final loss between these runs and those the
  matching ``cpt_law*.json`` was measured on (0 when it was measured on these runs; CPU
  training is not bitwise the same on another machine).

The law is the library's (:class:`evertrain.laws.cpt.CPTLaw`), nothing tuned here; the design
rule reads no loss. Writes ``benchmarks/results/cpt_law_runs.json`` (``docs/laws.md``, "How
many runs to fit on").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import continual as bench  # noqa: E402  (the sibling benchmarks: data, base, runs, scoring)
import cpt_law  # noqa: E402
from evertrain._atomic import atomic_write_json  # noqa: E402
from evertrain.laws.cpt import CPTLaw  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "cpt_law_runs.json"
RUN_COUNTS = (3, 4, 5, 6)
#: the counts evaluated in full (bands, choice) besides the point fits
FULL_COUNTS = (5,)
TOY_RUN_COUNTS = (3, 4)
TOY_FULL_COUNTS = (4,)
TOY_RANDOM = 2


def all_runs_fit(base: Any, runs: dict[cpt_law.Key, Any]) -> dict[str, Any]:
    """The law fitted on every run and scored on the same runs (final-loss errors)."""
    law = CPTLaw(annealing=cpt_law.ANNEALING).fit(base, list(runs.values()))
    errors = cpt_law.final_errors(law, runs)
    return {
        "runs": len(runs),
        **{f"prede_{d}": statistics.fmean(v) for d, v in errors.items()},
        **{f"worst_{d}": max(v) for d, v in errors.items()},
        "kappa": {d: law.params[d]["kappa"] for d in errors},  # type: ignore[index]
        "gamma": {d: law.params[d]["gamma"] for d in errors},  # type: ignore[index]
    }


def by_run_count(
    base: Any,
    runs: dict[cpt_law.Key, Any],
    counts: tuple[int, ...],
    peaks: tuple[float, ...],
    replays: tuple[float, ...],
    n_random: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in counts:
        designed = cpt_law.designed_fit_set(peaks, replays, runs=n)
        law = CPTLaw(annealing=cpt_law.ANNEALING).fit(base, [runs[k] for k in designed])
        errors = cpt_law.held_out_errors(law, runs, designed)
        sets = cpt_law.random_designs(list(runs), n_random, cpt_law.DESIGN_SEED, size=n)
        out[str(n)] = {
            "designed": {
                "fit_set": [cpt_law.key_name(k) for k in designed],
                "prede_old": errors["old"],
                "prede_new": errors["new"],
            },  # fmt: skip
            "random": cpt_law.design_spread(base, runs, sets),
        }
        print(f"  {n} runs: designed {errors['old']:.4f}/{errors['new']:.4f}, random median "
              f"{out[str(n)]['random']['prede_old']['median']:.4f}/"
              f"{out[str(n)]['random']['prede_new']['median']:.4f}", flush=True)  # fmt: skip
    return out


def same_runs_as(path: Path, shift: str, runs: dict[cpt_law.Key, Any]) -> dict[str, Any] | None:
    """Largest |final loss difference| between ``runs`` and the rows of a cpt_law results file."""
    if not path.is_file():
        return None
    rows = json.loads(path.read_text())["shifts"].get(shift, {}).get("designed", {}).get("rows")
    if not rows or any(cpt_law.key_name(k) not in rows for k in runs):
        return None  # another grid's file
    diff = max(
        abs(rows[cpt_law.key_name(k)][d]["measured_final"] - float(run.loss[d][-1]))
        for k, run in runs.items()
        for d in ("old", "new")
    )
    return {"file": path.name, "max_abs_final_loss_difference": diff}


def table(payloads: list[dict[str, Any]]) -> str:
    """The docs' tables, one figure per base in each cell (the bases' files in seed order)."""
    bases = " / ".join(str(p["scale"]["seed"]) for p in payloads)

    def cells(shift: str, *path: str, fmt: str = "{:.4f}") -> str:
        values = []
        for payload in payloads:
            value: Any = payload["shifts"][shift]
            for key in path:
                value = value[key]
            values.append(fmt.format(value))
        return " / ".join(values)

    lines = [f"| shift | runs | designed: prede_old (bases {bases}) | designed: prede_new | "
             "random sets: median prede_old | random sets: median prede_new | random sets "
             "meeting both <= 0.01 |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for shift, entry in payloads[0]["shifts"].items():
        for n in entry["by_run_count"]:
            at = ("by_run_count", n)
            lines.append(
                f"| {shift} | {n} | {cells(shift, *at, 'designed', 'prede_old')} | "
                f"{cells(shift, *at, 'designed', 'prede_new')} | "
                f"{cells(shift, *at, 'random', 'prede_old', 'median')} | "
                f"{cells(shift, *at, 'random', 'prede_new', 'median')} | "
                f"{cells(shift, *at, 'random', 'share_meeting_both', fmt='{:.0%}')} |"
            )
        lines.append(
            f"| {shift} | all {entry['all_runs']['runs']}, in-sample | "
            f"{cells(shift, 'all_runs', 'prede_old')} | {cells(shift, 'all_runs', 'prede_new')} "
            "| | | |"
        )
    full = [f"| shift | fit set | prede_old (bases {bases}) | prede_new | coverage (90 % band) "
            "| chosen_vs_best_gap |", "|---|---|---|---|---|---|"]  # fmt: skip
    for shift, entry in payloads[0]["shifts"].items():
        for label in (k for k in entry if k.startswith("designed_")):
            full.append(
                f"| {shift} | {label} | {cells(shift, label, 'prede_old')} | "
                f"{cells(shift, label, 'prede_new')} | "
                f"{cells(shift, label, 'interval_coverage', fmt='{:.2f}')} | "
                f"{cells(shift, label, 'chosen_vs_best_gap', fmt='{:+.4f}')} |"
            )
    return "\n".join(lines) + "\n\n" + "\n".join(full)


def grid_args(doc: str, results: Path) -> argparse.Namespace:
    """The command line of a script that scores laws on ``cpt_law.py``'s grid (this one,
    ``cpt_law_split.py``), checked: a bad ``--workers`` or ``--base-seed`` exits 2. Sets the
    grid's base seed and, for another base, the default results file's ``_seed<N>`` name."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--continual-out",
                        default=os.path.join(tempfile.gettempdir(), "evertrain-bench-continual-v3"),
                        help="benchmarks/continual.py's --out (its data and base)")  # fmt: skip
    parser.add_argument("--out",
                        default=os.path.join(tempfile.gettempdir(), "evertrain-bench-cpt-law-v3"),
                        help="cpt_law.py's --out (its grid runs; missing ones are trained)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="parallel runs (one thread each)")
    parser.add_argument("--results", default=str(results), help="the JSON file to write")
    parser.add_argument("--base-seed", type=int, default=0,
                        help="the grid of `cpt_law.py --base-seed N` (default 0)")  # fmt: skip
    parser.add_argument("--tables", action="store_true", help="print the docs' tables and exit")
    parser.add_argument("--toy", action="store_true", help="tiny sizes; prints the JSON")
    args = parser.parse_args()
    if args.workers < 1:
        print(f"--workers {args.workers} must be >= 1", file=sys.stderr)
        raise SystemExit(2)
    if args.base_seed not in bench.BENCH.seeds:
        print(f"--base-seed {args.base_seed}: choose from {list(bench.BENCH.seeds)}",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    cpt_law.SEED = args.base_seed  # the grid's helpers read it at the call
    if args.base_seed and args.results == str(results):
        args.results = str(results.with_name(f"{results.stem}_seed{args.base_seed}.json"))
    return args


def seed_payloads(results: Path) -> list[dict[str, Any]]:
    """The results of every base seed written so far: ``results``, then the ``_seed<N>`` files
    :func:`grid_args` names, in order."""
    paths = [results, *sorted(results.parent.glob(f"{results.stem}_seed*.json"))]
    return [json.loads(p.read_text()) for p in paths if p.is_file()]


def grid_scale(args: argparse.Namespace
               ) -> tuple[bench.Scale, tuple[float, ...], tuple[float, ...], Path, tuple[str, ...]]:  # fmt: skip
    """The grid's scale, peaks, replay ratios, data folder and shifts: ``cpt_law.py``'s grid on
    the chosen base seed, or its tiny ``--toy`` one (strong shift only, under ``--out``)."""
    if args.toy:
        scale = replace(bench.TOY, seeds=(cpt_law.SEED,), replay_ratios=cpt_law.TOY_REPLAYS)
        toy_out = Path(args.out) / "continual"
        return scale, cpt_law.TOY_PEAKS, cpt_law.TOY_REPLAYS, toy_out, ("strong",)
    scale = replace(bench.BENCH, seeds=(cpt_law.SEED,))
    return scale, cpt_law.PEAKS, cpt_law.REPLAYS, Path(args.continual_out), ("strong", "weak")


def grid_start(doc: str, results: Path, tables: Any) -> tuple[Any, ...] | None:
    """The start every script that scores laws on ``cpt_law.py``'s grid shares: its checked
    command line (:func:`grid_args`); with ``--tables``, ``tables`` of every base's results
    printed and ``None`` (nothing more to do); else ``(args, started, scale, peaks, replays,
    continual_out, shifts)`` (the clock started, :func:`grid_scale`'s grid)."""
    args = grid_args(doc, results)
    if args.tables:
        print(tables(seed_payloads(results)))
        return None
    return (args, time.perf_counter(), *grid_scale(args))


def grid_plan(args: argparse.Namespace, scale: bench.Scale, continual_out: Path,
              peaks: tuple[float, ...], replays: tuple[float, ...]
              ) -> tuple[dict[str, dict], Path, list[cpt_law.Key], str]:  # fmt: skip
    """The grid's run specs (the data prepared first), where its runs live, its cells, and the
    stem of the ``cpt_law*.json`` measured on the same base."""
    paths = bench.prepare_data(continual_out, scale)
    _, specs = bench.plan_jobs(continual_out, scale, paths)
    grid_keys = [(s, p, r) for s in cpt_law.SCHEDULES for p in peaks for r in replays]
    stem = "cpt_law" + (f"_seed{cpt_law.SEED}" if cpt_law.SEED else "")
    return specs, Path(args.out), grid_keys, stem


def grid_shifts(args: argparse.Namespace, scale: bench.Scale, continual_out: Path,
                peaks: tuple[float, ...], replays: tuple[float, ...], shifts: tuple[str, ...]
                ) -> Iterator[tuple[str, Any, dict[cpt_law.Key, Any], dict[str, Any] | None]]:  # fmt: skip
    """Each shift's base and grid runs (trained first where missing), as the scripts that only
    read the grid take them, with :func:`same_runs_as` against the ``cpt_law*.json`` of the
    same base (``None`` under ``--toy``, which has no such file)."""
    specs, out, grid_keys, stem = grid_plan(args, scale, continual_out, peaks, replays)
    for shift in shifts:
        print(f"{shift}:", flush=True)
        _, _, base, runs = cpt_law.grid_runs(shift, scale, specs, out, args.workers, grid_keys)
        compared = cpt_law.RESULTS.with_name(f"{stem}.json")
        yield shift, base, runs, None if args.toy else same_runs_as(compared, shift, runs)


def finish(payload: dict[str, Any], args: argparse.Namespace, script: str, started: float,
           tables: Any) -> None:  # fmt: skip
    """Time, machine and command into ``payload``; print it (``--toy``) or write it atomically
    and print its ``tables``."""
    payload["benchmark_seconds"] = time.perf_counter() - started
    payload["machine"] = {"cpus": os.cpu_count(), "workers": args.workers}
    payload["command"] = f"python benchmarks/{script}" + (
        " --toy" if args.toy else f" --base-seed {cpt_law.SEED}" if cpt_law.SEED else ""
    )
    if args.toy:
        print(json.dumps(payload, indent=2, default=float))
        return
    atomic_write_json(Path(args.results), payload)
    print(tables([payload]))
    print(f"wrote {args.results}")


def main() -> None:
    if (start := grid_start(__doc__, RESULTS, table)) is None:
        return  # --tables: printed
    args, started, scale, peaks, replays, continual_out, shifts = start
    if args.toy:
        counts, full, n_random = TOY_RUN_COUNTS, TOY_FULL_COUNTS, TOY_RANDOM
        bootstrap = cpt_law.TOY_BOOTSTRAP
    else:
        counts, full, n_random = RUN_COUNTS, FULL_COUNTS, cpt_law.DESIGNS
        bootstrap = cpt_law.BOOTSTRAP
    specs, out, grid_keys, stem = grid_plan(args, scale, continual_out, peaks, replays)
    payload: dict[str, Any] = {"shifts": {}}
    for shift in shifts:
        print(f"{shift}:", flush=True)
        _, _, base, runs = cpt_law.grid_runs(shift, scale, specs, out, args.workers, grid_keys)
        entry: dict[str, Any] = {"all_runs": all_runs_fit(base, runs)}
        print(f"  all {len(runs)} runs, in-sample: {entry['all_runs']['prede_old']:.4f}/"
              f"{entry['all_runs']['prede_new']:.4f}", flush=True)  # fmt: skip
        entry["by_run_count"] = by_run_count(base, runs, counts, peaks, replays, n_random)
        fit_sets = {f"designed_{n}": cpt_law.designed_fit_set(peaks, replays, runs=n) for n in full}
        evaluated = cpt_law.run_shift(shift, scale, specs, out, args.workers, grid_keys, fit_sets,
                                      peaks, replays, bootstrap)  # fmt: skip
        entry.update({label: evaluated[label] for label in fit_sets})
        if not args.toy:
            entry["same_runs_as"] = same_runs_as(RESULTS.with_name(f"{stem}.json"), shift, runs)
        payload["shifts"][shift] = entry
    payload["method"] = (
        "per shift, on cpt_law.py's grid: all_runs = CPTLaw fitted on every grid run, mean "
        "|pred - measured| / measured of the final loss over the same runs (in-sample); "
        f"by_run_count[n] = the n runs design_fit_runs picks (point fit), and {n_random} random "
        f"n-run sets with two or more replay ratios (random.Random({cpt_law.DESIGN_SEED})), each "
        "scored on the grid's other runs as cpt_law.py's prede_*; designed_<n> = cpt_law.py's "
        f"evaluation (bootstrap={bootstrap}, 90 % bands, goal {cpt_law.GOAL!r}) on that set"
    )
    payload["run_counts"], payload["full_counts"] = list(counts), list(full)
    payload["scale"] = {"seed": cpt_law.SEED, "peaks": list(peaks), "replays": list(replays),
                        "schedules": list(cpt_law.SCHEDULES), "annealing": cpt_law.ANNEALING}  # fmt: skip
    finish(payload, args, "cpt_law_runs.py", started, table)


if __name__ == "__main__":
    main()
