"""Would another rule for choosing the fit runs help the CPT law (issue 13)? Whole families scored.

    python benchmarks/cpt_law_designs.py                  # ~15 min, 2 cores, cpt_law.py's grid
    python benchmarks/cpt_law_designs.py --base-seed 1    # that base: cpt_law_designs_seed1.json
    python benchmarks/cpt_law_designs.py --tables         # the docs' table, every base seed
    python benchmarks/cpt_law_designs.py --toy            # tiny sizes, prints the JSON (a test)

Three runs that span the axes (``evertrain law cpt design``: one run at each of replay 0, 0.25,
0.5, both peaks, both schedules) miss the strong shift's old data, and the fit's ``kappa`` /
``gamma`` split is the reason measured (``cpt_law_split.py``): no two of those runs share a
replay ratio, so the lower forgetting of the run at the other peak can be read as replay or as
LR level. Two rules that would give the fit a clean contrast, each scored over every set it
admits rather than over one pick of it (one set is one draw: ``docs/laws.md``):

* ``contrast``: 3-run sets holding a pair at one replay ratio and two peaks and a pair at one
  peak and two replay ratios, what a one-factor-at-a-time design gives; ``contrast_extremes`` the ones among them whose two replay
  ratios are the grid's lowest and highest (none in between);
* ``spanning``: the rule's own admissible sets (``cpt_law.spanning_designs``), for reference;
* ``four_runs_high_<k>``: 4-run sets on the replay ratios of the rule's ``runs=4`` pick (one run
  each), both peaks and schedules, by the number ``k`` of runs at the highest peak: ``k = 3``
  learns ``kappa`` from three replay ratios at one LR level.

Each set is point-fitted with the library's law (:class:`evertrain.laws.cpt.CPTLaw`, nothing
tuned) and scored by ``cpt_law.py``'s held-out final-loss errors. Writes
``benchmarks/results/cpt_law_designs.json`` (``docs/laws.md``, "How many runs to fit on").
"""

from __future__ import annotations

import itertools
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpt_law  # noqa: E402
import cpt_law_runs  # noqa: E402  (command line, grid, writer)
from evertrain.laws.cpt import CPTLaw  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "cpt_law_designs.json"
#: at most this many sets of each family in --toy
TOY_SETS = 2
_GRID: dict[str, Any] = {}  # a worker's base and runs, set once by _init


def contrast(pick: tuple[cpt_law.Key, ...]) -> bool:
    """Two runs differ in peak alone by replay held equal, and two at one peak in replay."""
    pairs = list(itertools.combinations(pick, 2))
    return any(a[2] == b[2] and a[1] != b[1] for a, b in pairs) and any(
        a[1] == b[1] and a[2] != b[2] for a, b in pairs
    )


def families(keys: list[cpt_law.Key], designed_3: tuple, designed_4: tuple) -> dict[str, list]:
    """Every family's fit sets, in the grid's order."""
    replays = sorted({k[2] for k in keys})
    peaks, schedules = {k[1] for k in keys}, {k[0] for k in keys}
    out: dict[str, list] = {"spanning": cpt_law.spanning_designs(keys, designed_3)}
    out["contrast"] = [c for c in itertools.combinations(keys, 3) if contrast(c)]
    out["contrast_extremes"] = [c for c in out["contrast"]
                                if {replays[0], replays[-1]} <= {k[2] for k in c}]  # fmt: skip
    levels = sorted(k[2] for k in designed_4)
    four = [c for c in itertools.combinations(keys, 4)
            if sorted(k[2] for k in c) == levels and {k[1] for k in c} == peaks
            and {k[0] for k in c} == schedules]  # fmt: skip
    for high in (3, 2, 1):
        out[f"four_runs_high_{high}"] = [c for c in four
                                         if sum(k[1] == max(peaks) for k in c) == high]  # fmt: skip
    return out


def _init(base: Any, runs: dict[cpt_law.Key, Any]) -> None:
    _GRID["base"], _GRID["runs"] = base, runs


def _score(keys: tuple[cpt_law.Key, ...]) -> dict[str, Any]:
    base, runs = _GRID["base"], _GRID["runs"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a set of one peak or replay ratio: said by its flags
        law = CPTLaw(annealing=cpt_law.ANNEALING).fit(base, [runs[k] for k in keys])
    errors = cpt_law.held_out_errors(law, runs, keys)
    return {"fit_set": [cpt_law.key_name(k) for k in keys],
            "prede_old": errors["old"], "prede_new": errors["new"]}  # fmt: skip


def score_families(base: Any, runs: dict, sets: dict[str, list], workers: int) -> dict[str, Any]:
    """Each family's spread (``cpt_law.spread_summary``), every distinct set fitted once."""
    unique = list(dict.fromkeys(s for family in sets.values() for s in family))
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(base, runs)) as pool:
        rows = dict(zip(unique, pool.map(_score, unique, chunksize=4), strict=True))
    return {name: cpt_law.spread_summary([rows[s] for s in family])
            for name, family in sets.items() if family}  # fmt: skip


def named(entry: dict[str, Any], fit_set: tuple) -> dict[str, Any] | None:
    """A named set's errors and its rank (1 = lowest) in each family that holds it."""
    names = sorted(cpt_law.key_name(k) for k in fit_set)
    out: dict[str, Any] = {"fit_set": names, "in": {}}
    for family, spread in entry.items():
        for row in spread["rows"]:
            if sorted(row["fit_set"]) == names:
                out["prede_old"], out["prede_new"] = row["prede_old"], row["prede_new"]
                out["in"][family] = {d: 1 + sum(r[f"prede_{d}"] < row[f"prede_{d}"]
                                                for r in spread["rows"]) for d in ("old", "new")}  # fmt: skip
    return out if out["in"] else None


def table(payloads: list[dict[str, Any]]) -> str:
    bases = " / ".join(str(p["scale"]["seed"]) for p in payloads)
    lines = [f"| shift | fit sets | sets | median prede_old (bases {bases}) | q75 prede_old | "
             "worst prede_old | median prede_new | worst prede_new | meeting both <= 0.01 |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for shift, entry in payloads[0]["shifts"].items():
        for family in entry["families"]:
            spreads = [p["shifts"][shift]["families"][family] for p in payloads]
            cells = [" / ".join(f"{s[f'prede_{d}'][q]:.4f}" for s in spreads)
                     for d, q in (("old", "median"), ("old", "q75"), ("old", "max"),
                                  ("new", "median"), ("new", "max"))]  # fmt: skip
            share = " / ".join(f"{s['share_meeting_both']:.0%}" for s in spreads)
            lines.append(f"| {shift} | `{family}` | {spreads[0]['designs']} | "
                         + " | ".join(cells) + f" | {share} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    if (start := cpt_law_runs.grid_start(__doc__, RESULTS, table)) is None:
        return  # --tables: printed
    args, started, scale, peaks, replays, continual_out, shifts = start
    designed = {n: cpt_law.designed_fit_set(peaks, replays, runs=n) for n in (3, 4)}
    payload: dict[str, Any] = {"shifts": {}}
    grids = cpt_law_runs.grid_shifts(args, scale, continual_out, peaks, replays, shifts)
    for shift, base, runs, same_runs_as in grids:
        sets = families(list(runs), designed[3], designed[4])
        if args.toy:  # the first few of each family, and the rule's picks where they belong
            picks = {tuple(sorted(fit_set)) for fit_set in designed.values()}
            sets = {name: family[:TOY_SETS] + [s for s in family[TOY_SETS:]
                                               if tuple(sorted(s)) in picks]
                    for name, family in sets.items()}  # fmt: skip
        spreads = score_families(base, runs, sets, args.workers)
        for name, spread in spreads.items():
            print(f"  {name} ({spread['designs']}): median {spread['prede_old']['median']:.4f} / "
                  f"{spread['prede_new']['median']:.4f}", flush=True)  # fmt: skip
        entry: dict[str, Any] = {"families": spreads}
        entry.update({f"designed_{n}": named(spreads, fit_set) for n, fit_set in designed.items()})
        if not args.toy:
            entry["same_runs_as"] = same_runs_as
        payload["shifts"][shift] = entry
    payload["method"] = (
        "per shift, on cpt_law.py's grid: every fit set of each family (module docstring) "
        "point-fitted with CPTLaw() as the library fits it and scored by the mean relative "
        "error of the final loss over the grid's other runs (cpt_law.held_out_errors); per "
        "family the quartiles and the share meeting both 1 % targets; designed_3 / designed_4: "
        "the rule's own picks, their errors and rank (1 = lowest) in each family holding them"
    )
    payload["scale"] = {"seed": cpt_law.SEED, "peaks": list(peaks), "replays": list(replays),
                        "schedules": list(cpt_law.SCHEDULES)}  # fmt: skip
    cpt_law_runs.finish(payload, args, "cpt_law_designs.py", started, table)


if __name__ == "__main__":
    main()
