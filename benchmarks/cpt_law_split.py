"""Does anchoring the CPT law's replay / LR-level split on the base's own curve help (issue 13)?

    python benchmarks/cpt_law_split.py                  # ~10 min on 2 cores, cpt_law.py's grid
    python benchmarks/cpt_law_split.py --base-seed 1    # that base: cpt_law_split_seed1.json
    python benchmarks/cpt_law_split.py --tables         # the docs' table, every base seed
    python benchmarks/cpt_law_split.py --toy            # tiny sizes, prints the JSON (a test)

Fitted on three runs, the law's old-data ``kappa`` (how replay holds forgetting back) and
``gamma`` (how forgetting follows the LR level) are told apart by little more than noise: the
loss drop of the annealing term can take up what either explains. On ``cpt_law.py``'s designed
set, base 0, strong shift, holding ``kappa`` alone at its value in a fit on all 20 runs cut the
held-out old-data error from 1.1 % to 0.3 %. The base run's own curve (the old data's hidden
pre-training curve, in the paper's words) knows the annealing term without any shift, so:

* ``free``: the library's fit (:class:`evertrain.laws.cpt.CPTLaw`), every parameter at once;
* ``anchored``: per distribution, (1) the annealing part ``L0, A, alpha, B_drop, C_drop,
  beta_drop, gamma_drop`` fitted on the base curve alone; (2) the law fitted on every run with
  that part held, which sets ``kappa`` and ``gamma``; (3) the law refitted with those two held
  and the rest free again, so the annealing part can follow the stages' re-warm. With one
  replay ratio and one peak there is no split to anchor and both fits are the same.

Both are scored on every three-run fit set the design rule admits (``cpt_law.spanning_designs``:
one run at each of replay 0, 0.25, 0.5, both peaks, both schedules; 36 here), by the held-out
final-loss error of ``cpt_law.py``; per shift the medians, the paired comparison (set by set,
a difference under :data:`TIE` is a tie) and the designed set's figures. Nothing is tuned
here. Writes ``benchmarks/results/cpt_law_split.json`` (``docs/laws.md``, "Anchoring the split").
"""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpt_law  # noqa: E402
import cpt_law_runs  # noqa: E402  (same_runs_as)
from evertrain.laws._cpt_drop import fit_distribution  # noqa: E402
from evertrain.laws.cpt import DISTRIBUTIONS, N_STARTS, CPTLaw  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "cpt_law_split.json"
#: the annealing part of one distribution's law: what the base curve alone can tell
ANNEALING_PART = ("L0", "A", "alpha", "B_drop", "C_drop", "beta_drop", "gamma_drop")
#: a paired difference of held-out error smaller than this (0.01 % of the loss) counts as a tie
TIE = 1e-4


def anchored(law: CPTLaw, base: Any, fit_runs: list[Any]) -> CPTLaw:
    """``law`` (fitted free on ``base`` + ``fit_runs``) refitted with the anchored split."""
    if not (law.kappa_fitted or law.gamma_fitted):
        return law
    series, losses, _ = law._series(base, fit_runs)
    out = copy.copy(law)
    out.params = {}
    flags = {"kappa_free": law.kappa_fitted, "gamma_free": law.gamma_fitted, "n_starts": N_STARTS}
    for d in DISTRIBUTIONS:
        loss = np.concatenate([part[d] for part in losses])
        curve, _ = fit_distribution(series[:1], losses[0][d], kappa_free=False, n_starts=N_STARTS)
        split, _ = fit_distribution(series, loss, **flags,
                                    fixed={k: curve[k] for k in ANNEALING_PART})  # fmt: skip
        out.params[d], _ = fit_distribution(
            series, loss, **flags, fixed={"kappa": split["kappa"], "gamma": split["gamma"]}
        )
    return out


def score_sets(base: Any, runs: dict[cpt_law.Key, Any], sets: list[tuple]) -> list[dict[str, Any]]:
    rows = []
    for keys in sets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one replay ratio or peak: said by the law's flags
            free = CPTLaw(annealing="multi-power").fit(base, [runs[k] for k in keys])
            anchor = anchored(free, base, [runs[k] for k in keys])
        row: dict[str, Any] = {"fit_set": [cpt_law.key_name(k) for k in keys]}
        for label, law in (("free", free), ("anchored", anchor)):
            row[label] = cpt_law.held_out_errors(law, runs, keys)
            row[label]["kappa_old"] = law.params["old"]["kappa"]  # type: ignore[index]
            row[label]["gamma_old"] = law.params["old"]["gamma"]  # type: ignore[index]
        rows.append(row)
        print(f"  {' + '.join(row['fit_set'])}: old {row['free']['old']:.4f} -> "
              f"{row['anchored']['old']:.4f}, new {row['free']['new']:.4f} -> "
              f"{row['anchored']['new']:.4f}", flush=True)  # fmt: skip
    return rows


def summary(rows: list[dict[str, Any]], designed: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"sets": len(rows)}
    for d in DISTRIBUTIONS:
        free = np.array([r["free"][d] for r in rows])
        anchor = np.array([r["anchored"][d] for r in rows])
        diff = anchor - free
        out[d] = {
            "median_free": float(np.median(free)),
            "median_anchored": float(np.median(anchor)),
            "anchored_lower": int(np.sum(diff < -TIE)),
            "anchored_higher": int(np.sum(diff > TIE)),
            "median_difference": float(np.median(diff)),
            "worst_free": float(free.max()),
            "worst_anchored": float(anchor.max()),
        }
    match = [r for r in rows if r["fit_set"] == designed]
    out["designed"] = match[0] if match else None
    return out


def table(payloads: list[dict[str, Any]]) -> str:
    bases = " / ".join(str(p["scale"]["seed"]) for p in payloads)
    lines = [f"| shift | data | median free (bases {bases}) | median anchored | anchored lower-"
             "higher (of 36) | worst free | worst anchored | designed set: free -> anchored |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for shift in payloads[0]["shifts"]:
        summaries = [p["shifts"][shift]["summary"] for p in payloads]  # one per base
        for d in DISTRIBUTIONS:
            cells = [" / ".join(f"{s[d][key]:.4f}" for s in summaries)
                     for key in ("median_free", "median_anchored", "worst_free", "worst_anchored")]  # fmt: skip
            counts = " / ".join(f"{s[d]['anchored_lower']}-{s[d]['anchored_higher']}"
                                for s in summaries)  # fmt: skip
            designed = " / ".join(f"{s['designed']['free'][d]:.4f} -> "
                                  f"{s['designed']['anchored'][d]:.4f}" for s in summaries)  # fmt: skip
            lines.append(f"| {shift} | {d} | {cells[0]} | {cells[1]} | {counts} | {cells[2]} | "
                         f"{cells[3]} | {designed} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    if (start := cpt_law_runs.grid_start(__doc__, RESULTS, table)) is None:
        return  # --tables: printed
    args, started, scale, peaks, replays, continual_out, shifts = start
    designed = cpt_law.TOY_FIT_SET_DESIGNED if args.toy else cpt_law.FIT_SET_DESIGNED
    payload: dict[str, Any] = {"shifts": {}}
    grids = cpt_law_runs.grid_shifts(args, scale, continual_out, peaks, replays, shifts)
    for shift, base, runs, same_runs_as in grids:
        sets = cpt_law.spanning_designs(list(runs), designed)
        if args.toy:
            sets = sets[: cpt_law.TOY_SPANNING]
        rows = score_sets(base, runs, sets)
        entry: dict[str, Any] = {
            "summary": summary(rows, [cpt_law.key_name(k) for k in designed]),
            "rows": rows,
        }
        if not args.toy:
            entry["same_runs_as"] = same_runs_as
        payload["shifts"][shift] = entry
    payload["method"] = (
        "per shift, on cpt_law.py's grid and its spanning 3-run fit sets: free = CPTLaw() "
        "(multi-power annealing term) fitted as the library fits it; anchored = per distribution "
        f"{', '.join(ANNEALING_PART)} fitted on the base curve alone, then kappa and gamma from a "
        "fit of every fitted run with those held, then everything else refitted with kappa and "
        "gamma held; each scored by the mean relative error of the final loss over the other "
        f"grid runs (cpt_law.held_out_errors); paired differences under {TIE} count as ties"
    )
    payload["scale"] = {"seed": cpt_law.SEED, "peaks": list(peaks), "replays": list(replays),
                        "schedules": list(cpt_law.SCHEDULES)}  # fmt: skip
    cpt_law_runs.finish(payload, args, "cpt_law_split.py", started, table)


if __name__ == "__main__":
    main()
