"""Probes (issue 13): three CPT runs plus the first fifth of three more, against three runs.

    python benchmarks/cpt_law_probes.py                  # ~6-7 min on 2 cores, cpt_law.py's grid
    python benchmarks/cpt_law_probes.py --base-seed 1    # that base: cpt_law_probes_seed1.json
    python benchmarks/cpt_law_probes.py --tables         # the docs' table, every base seed
    python benchmarks/cpt_law_probes.py --toy --workers 1    # tiny sizes, prints the JSON (a test)

Three runs that span the grid's axes (``evertrain law cpt design``) see each replay ratio at one
peak only, so the fit trades the replay factor's ``kappa`` against the LR level's ``gamma``, and
on the strong shift it misses the old data's 1 % target (``cpt_law.py``). A *probe* is a run
of another recipe stopped after :data:`evertrain.laws.design.PROBE_FRACTION` of its stage (its
schedule unchanged, so it is also the start of that run, resumable to the end):
:func:`evertrain.laws.design.probe_runs` adds, for each fitted run, its replay ratio at the
other peak. Here a probe is the grid run's own log cut after that share of its updates (a run
paused by ``evertrain.train.run(..., stop_at_tokens=...)`` also evaluates where it stops: one
point more than this). Per shift:

* ``spanning``: over every 3-run set the design rule admits (36), the law point-fitted on the
  set alone (``runs``) and on the set plus its probes (``probes``), each scored on the grid's
  runs that are neither fitted nor probed (the same runs for both); per distribution the
  quartiles, and on how many sets the probes' error is lower / higher by more than 1e-4
  (``paired``);
* ``designed`` / ``designed_probes``: ``cpt_law.py``'s whole evaluation (90 % bands, the law's
  choice for the goal, measured) on the designed set without / with its probes, scored on
  the same held-out runs;
* ``one_peak``: ``cpt_law.py``'s ``main`` set (replay 0, 0.25, 0.5 at one peak, the fit set that
  misses most, since it cannot see the LR level) point-fitted alone and with its probes, each
  replay ratio at the other peak: what probes buy a user who has trained a replay sweep at one
  peak; the same held-out runs for both;
* ``same_runs_as``: the largest difference of a final loss between these runs and those the
  matching ``cpt_law*.json`` was measured on (CPU training is not bitwise the same on another
  machine).

The law is the library's (:class:`evertrain.laws.cpt.CPTLaw`), nothing tuned here; neither
rule reads a loss. Writes ``benchmarks/results/cpt_law_probes.json`` (``docs/laws.md``,
"Probes").
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpt_law  # noqa: E402
import cpt_law_runs  # noqa: E402  (the grid's command line, scale, plan and JSON writing)
from evertrain.laws.cpt import ContinualRun, CPTLaw  # noqa: E402
from evertrain.laws.design import PROBE_FRACTION, FitRun, probe_runs  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "cpt_law_probes.json"
#: a paired difference smaller than this is counted as neither lower nor higher
TIE = 1e-4


def probe_keys(fit_keys: tuple[cpt_law.Key, ...], peaks: tuple[float, ...]) -> list[cpt_law.Key]:
    """The grid cells :func:`probe_runs` adds to ``fit_keys``."""
    fit_runs = [FitRun(*key) for key in fit_keys]
    return [(p.family, p.peak, p.replay) for p in probe_runs(fit_runs, peaks)]


def prefix(run: ContinualRun, fraction: float = PROBE_FRACTION) -> ContinualRun:
    """``run`` as its probe: its first ``fraction`` of updates and the evals inside them."""
    n = max(2, round(fraction * len(run.lr)))
    keep = run.steps < n
    if not keep.any():
        raise SystemExit(f"run {run.name}: no eval in its first {n} updates to probe with")
    return ContinualRun(f"{run.name}-probe", run.lr[:n], run.replay, run.offset,
                        run.steps[keep], {d: v[keep] for d, v in run.loss.items()})  # fmt: skip


def spanning(base: Any, runs: dict[cpt_law.Key, Any], designed_keys: tuple[cpt_law.Key, ...],
             peaks: tuple[float, ...], limit: int | None) -> dict[str, Any]:  # fmt: skip
    """Every admitted 3-run set point-fitted without and with its probes, scored alike."""
    rows: dict[str, list[dict[str, Any]]] = {"runs": [], "probes": []}
    for fit_keys in cpt_law.spanning_designs(list(runs), designed_keys)[:limit]:
        probed = probe_keys(fit_keys, peaks)
        held = {k: r for k, r in runs.items() if k not in fit_keys and k not in probed}
        fits = {"runs": [runs[k] for k in fit_keys]}
        fits["probes"] = fits["runs"] + [prefix(runs[k]) for k in probed]
        for label, fit_runs in fits.items():
            law = CPTLaw(annealing=cpt_law.ANNEALING).fit(base, fit_runs)
            errors = cpt_law.final_errors(law, held)
            rows[label].append({"fit_set": [cpt_law.key_name(k) for k in fit_keys],
                                "probes": [cpt_law.key_name(k) for k in probed],
                                **{f"prede_{d}": statistics.fmean(v) for d, v in errors.items()}})  # fmt: skip
    out: dict[str, Any] = {label: cpt_law.spread_summary(r) for label, r in rows.items()}
    out["paired"] = {}
    for d in ("old", "new"):
        diff = np.array([p[f"prede_{d}"] - r[f"prede_{d}"]
                         for r, p in zip(rows["runs"], rows["probes"], strict=True)])  # fmt: skip
        out["paired"][d] = {"lower": int((diff < -TIE).sum()), "higher": int((diff > TIE).sum()),
                            "median_difference": float(np.median(diff))}  # fmt: skip
    return out


def one_peak(base: Any, runs: dict[cpt_law.Key, Any], fit_keys: tuple[cpt_law.Key, ...],
             peaks: tuple[float, ...]) -> dict[str, Any]:  # fmt: skip
    """``cpt_law.py``'s ``main`` set (a replay sweep at one peak, the case that misses most),
    point-fitted alone and with its probes (each replay at the other peak), scored alike."""
    probed = probe_keys(fit_keys, peaks)
    held = {k: r for k, r in runs.items() if k not in fit_keys and k not in probed}
    fits = {"runs": [runs[k] for k in fit_keys]}
    fits["probes"] = fits["runs"] + [prefix(runs[k]) for k in probed]
    out: dict[str, Any] = {"fit_set": [cpt_law.key_name(k) for k in fit_keys],
                           "probed": [cpt_law.key_name(k) for k in probed], "held_out": len(held)}  # fmt: skip
    for label, fit_runs in fits.items():
        errors = cpt_law.final_errors(CPTLaw(annealing=cpt_law.ANNEALING).fit(base, fit_runs), held)
        out[label] = {**{f"prede_{d}": statistics.fmean(v) for d, v in errors.items()},
                      **{f"worst_{d}": max(v) for d, v in errors.items()}}  # fmt: skip
    return out


def held_out_view(result: dict[str, Any], skip: list[str]) -> dict[str, Any]:
    """``cpt_law.evaluate``'s figures over its held-out rows less ``skip`` (each run has the
    same evals, so the mean of the runs' coverage is the points' coverage)."""
    held = [row for name, row in result["rows"].items()
            if not row["in_fit"] and not row.get("probed") and name not in skip]  # fmt: skip
    return {
        "held_out": len(held),
        **{f"prede_{d}": statistics.fmean(r[d]["final_rel_error"] for r in held)
           for d in ("old", "new")},
        **{f"prede_{d}_curve": statistics.fmean(r[d]["curve_rel_error"] for r in held)
           for d in ("old", "new")},
        "interval_coverage": statistics.fmean(r[d]["inside_band"] for r in held
                                              for d in ("old", "new")),
        "chosen_vs_best_gap": result["chosen_vs_best_gap"],
    }  # fmt: skip


def designed(shift: str, scale: Any, specs: dict[str, dict], out: Path, workers: int,
             runs: dict[cpt_law.Key, Any], base: Any, base_dir: Path,
             fit_keys: tuple[cpt_law.Key, ...], peaks: tuple[float, ...],
             replays: tuple[float, ...], bootstrap: int) -> dict[str, Any]:  # fmt: skip
    """``cpt_law.py``'s evaluation of the designed set without and with its probes."""
    probed = probe_keys(fit_keys, peaks)
    steps = len(next(iter(runs.values())).lr)
    warmup = max(1, round(0.01 * steps))
    entry: dict[str, Any] = {"probes": [cpt_law.key_name(k) for k in probed]}
    for label, probes in (
        ("designed", {}),
        ("designed_probes", {k: prefix(runs[k]) for k in probed}),
    ):
        result, law, extra = cpt_law.evaluate(base, runs, fit_keys, cpt_law.GOAL, steps, warmup,
                                              peaks, replays, bootstrap, probes=probes)  # fmt: skip
        cpt_law.measure_choice(result, law, extra["key"], shift, scale, specs, out, workers, runs,
                               base_dir)  # fmt: skip
        entry[label] = held_out_view(result, entry["probes"])
        entry[label]["params"] = {d: {k: law.params[d][k] for k in ("kappa", "gamma")}
                                  for d in ("old", "new")}  # fmt: skip
        entry[label]["chosen"] = {k: result["chosen"][k] for k in ("schedule", "peak", "replay")}
        print(f"  {label}: prede old {entry[label]['prede_old']:.4f} new "
              f"{entry[label]['prede_new']:.4f}, coverage {entry[label]['interval_coverage']:.2f}, "
              f"gap {entry[label]['chosen_vs_best_gap']:+.4f}", flush=True)  # fmt: skip
    return entry


def table(payloads: list[dict[str, Any]]) -> str:
    """The docs' table: per shift, distribution and base, the spanning sets' medians and worst
    without / with probes, the paired counts, and the designed set's figures."""
    lines = ["| shift | data | base | 36 sets: median, worst (3 runs -> + probes) | probes lower / "
             "higher | sets meeting both targets | designed: prede, coverage (3 runs -> + probes) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for shift in ("strong", "weak"):
        for d in ("old", "new"):
            for p in payloads:
                e = p["shifts"].get(shift)
                if e is None:
                    continue
                s, pr = e["spanning"], e["spanning"]["paired"][d]
                a, b = e["designed"]["designed"], e["designed"]["designed_probes"]
                lines.append(
                    f"| {shift} | {d} | {p['scale']['seed']} | "
                    f"{s['runs'][f'prede_{d}']['median']:.4f}, {s['runs'][f'prede_{d}']['max']:.4f}"
                    f" -> {s['probes'][f'prede_{d}']['median']:.4f}, "
                    f"{s['probes'][f'prede_{d}']['max']:.4f} | {pr['lower']} / {pr['higher']} | "
                    f"{s['runs']['share_meeting_both']:.0%} -> {s['probes']['share_meeting_both']:.0%} | "
                    f"{a[f'prede_{d}']:.4f}, {a['interval_coverage']:.2f} -> "
                    f"{b[f'prede_{d}']:.4f}, {b['interval_coverage']:.2f} |"
                )
    lines += ["", "| shift | one peak (main): prede_old (bases 0 / 1 / 2), 3 runs -> + probes | "
              "prede_new | worst old | worst new |", "|---|---|---|---|---|"]  # fmt: skip
    for shift in ("strong", "weak"):
        views = [p["shifts"][shift]["one_peak"] for p in payloads if shift in p["shifts"]]
        lines.append(f"| {shift} | " + " | ".join(
            " / ".join(f"{v['runs'][key]:.4f}" for v in views) + " -> "
            + " / ".join(f"{v['probes'][key]:.4f}" for v in views)
            for key in ("prede_old", "prede_new", "worst_old", "worst_new")) + " |")  # fmt: skip
    lines += ["", "| shift | fit set | prede_old (bases 0 / 1 / 2) | prede_new | coverage (90 % band) "
              "| chosen_vs_best_gap |", "|---|---|---|---|---|---|"]  # fmt: skip
    for shift in ("strong", "weak"):
        for label, name in (("designed", "designed"), ("designed_probes", "designed + 3 probes")):
            views = [
                p["shifts"][shift]["designed"][label] for p in payloads if shift in p["shifts"]
            ]

            def cell(key: str, fmt: str, views: list[dict[str, Any]] = views) -> str:
                return " / ".join(fmt.format(v[key]) for v in views)

            lines.append(f"| {shift} | {name} | {cell('prede_old', '{:.4f}')} | "
                         f"{cell('prede_new', '{:.4f}')} | {cell('interval_coverage', '{:.2f}')} | "
                         f"{cell('chosen_vs_best_gap', '{:+.4f}')} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    if (start := cpt_law_runs.grid_start(__doc__, RESULTS, table)) is None:
        return  # --tables: printed
    args, started, scale, peaks, replays, continual_out, shifts = start
    bootstrap = cpt_law.TOY_BOOTSTRAP if args.toy else cpt_law.BOOTSTRAP
    limit = cpt_law.TOY_SPANNING if args.toy else None
    fit_keys = cpt_law.TOY_FIT_SET_DESIGNED if args.toy else cpt_law.FIT_SET_DESIGNED
    specs, out, grid_keys, stem = cpt_law_runs.grid_plan(args, scale, continual_out, peaks, replays)
    payload: dict[str, Any] = {"shifts": {}}
    for shift in shifts:
        print(f"{shift}:", flush=True)
        _, base_dir, base, runs = cpt_law.grid_runs(shift, scale, specs, out, args.workers,
                                                    grid_keys)  # fmt: skip
        entry = {"spanning": spanning(base, runs, fit_keys, peaks, limit)}
        for d in ("old", "new"):
            s = entry["spanning"]
            print(f"  {d}: {s['runs']['designs']} sets, median {s['runs'][f'prede_{d}']['median']:.4f}"
                  f" -> {s['probes'][f'prede_{d}']['median']:.4f} with probes (lower on "
                  f"{s['paired'][d]['lower']}, higher on {s['paired'][d]['higher']})", flush=True)  # fmt: skip
        main_keys = cpt_law.TOY_FIT_SET if args.toy else cpt_law.FIT_SET
        entry["one_peak"] = one_peak(base, runs, main_keys, peaks)
        print(f"  one peak: {entry['one_peak']['runs']['prede_old']:.4f} / "
              f"{entry['one_peak']['runs']['prede_new']:.4f} -> "
              f"{entry['one_peak']['probes']['prede_old']:.4f} / "
              f"{entry['one_peak']['probes']['prede_new']:.4f} with probes", flush=True)  # fmt: skip
        entry["designed"] = designed(shift, scale, specs, out, args.workers, runs, base, base_dir,
                                     fit_keys, peaks, replays, bootstrap)  # fmt: skip
        if not args.toy:  # these runs against those the same base's cpt_law*.json scored
            entry["same_runs_as"] = cpt_law_runs.same_runs_as(
                cpt_law.RESULTS.with_name(f"{stem}.json"), shift, runs
            )
        payload["shifts"][shift] = entry
    payload["method"] = (
        f"per shift, on cpt_law.py's grid: a probe = a grid run's log cut after "
        f"round({PROBE_FRACTION} x its updates) (its evals before that), the cells "
        "evertrain.laws.design.probe_runs adds to a fit set (each fitted run's replay ratio at "
        "the other peak); spanning = every 3-run set cpt_law.spanning_designs admits, point-"
        "fitted without (runs) and with (probes) its probes, prede_* = mean |pred - measured| / "
        "measured of the final loss over the grid runs neither fitted nor probed (the same for "
        f"both), paired = sets where probes' error is lower / higher by more than {TIE}; "
        f"designed(_probes) = cpt_law.evaluate (bootstrap={bootstrap}, 90 % bands, goal "
        f"{cpt_law.GOAL!r}) on the designed set without / with its probes, over the same "
        "held-out runs; one_peak = cpt_law.py's main set (one peak) point-fitted without / with "
        "its probes (each replay at the other peak), over the runs neither fitted nor probed"
    )
    payload["probe_fraction"] = PROBE_FRACTION
    payload["scale"] = {"seed": cpt_law.SEED, "peaks": list(peaks), "replays": list(replays),
                        "schedules": list(cpt_law.SCHEDULES), "annealing": cpt_law.ANNEALING}  # fmt: skip
    cpt_law_runs.finish(payload, args, "cpt_law_probes.py", started, table)


if __name__ == "__main__":
    main()
