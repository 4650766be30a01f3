"""Which of evertrain's departures from the paper's CPT law the benchmark's runs support (issue 13).

    python benchmarks/cpt_law_forms.py          # ~20 min on 2 cores; the runs of cpt_law.py
    python benchmarks/cpt_law_forms.py --forms evertrain,paper   # a subset, merged into the JSON

The paper's law (Wang, Tissue et al., ICML 2025, arXiv 2505.07796: Eq. 4, with the replay ratio
of its Appendix H, Eq. 8), per validation set, ``r`` the replay ratio::

    L = L0 + A (S1pt + S1cpt)^-alpha - C1 S2pt - C2 e^(a1 r) S2cpt
        + B f(r) [1 - (1 + E S1cpt)^-beta],     lambda = 0.999 (not fitted)

``f`` is exponential in the new data's share ``1 - r``: ``1 - e^(-a2 (1 - r))`` on the old data,
``e^(a2 (1 - r)) - 1`` on the new; with ``B`` free both are ``expm1(k (1 - r)) / expm1(k)`` up to
``B``'s scale, ``k`` of either sign (``k = 0``: ``1 - r``), which is how it is fitted here.

The law evertrain ships (:class:`evertrain.laws.cpt.CPTLaw`) departs from it in six places: the
five below and, by default, the multi-power law's loss drop for ``C S2`` (measured by
``cpt_law.py`` against ``--annealing annealing``). Here the law has the paper's annealing term
(``CPTLaw(annealing="annealing")``); each form below is that law with one departure undone, and
``paper`` undoes all five:

* ``c_split``: ``C1 S2pt + C2 e^(a1 r) S2cpt`` (the paper) instead of one ``C`` over the whole
  history's ``S2`` (evertrain);
* ``exp_replay``: the paper's ``f(r)`` instead of evertrain's rates form
  ``(1 - r) / ((1 - r) + kappa r)``;
* ``area_speed``: the shift's clock ``E S1cpt`` (the paper) instead of ``E (1 - r) S1cpt``;
* ``no_level``: no LR-level factor ``G`` (the paper) instead of ``G`` fitted across two peaks;
* ``lambda_fixed``: ``lambda = 0.999`` (the paper) instead of fitted.

Every form is fitted as the library fits its law (Huber on log residuals, the same grid of
starts screened by linear least squares, 8 bounded trust-region refinements); the form
``evertrain`` reproduces ``CPTLaw(annealing="annealing")`` (a test checks it). The paper minimised the same Huber
objective with L-BFGS from several starts; the optimiser is kept the same across forms so that
only the form differs. Scored, per form and shift, on the named fit sets of ``cpt_law.py`` and
its 12 random 3-run fit sets (the point law's held-out final-loss errors, as ``designs`` there).

Writes ``benchmarks/results/cpt_law_forms.json`` (summarised in ``docs/laws.md``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import continual as bench  # noqa: E402
import cpt_law  # noqa: E402  (its grid, fit sets and random designs)
from evertrain._atomic import atomic_write_json  # noqa: E402
from evertrain.laws.annealing import AnnealingLaw, warmup_length  # noqa: E402
from evertrain.laws.base import HUBER_DELTA  # noqa: E402
from evertrain.laws.cpt import (  # noqa: E402
    DISTRIBUTIONS,
    BaseRun,
    ContinualRun,
    CPTLaw,
    _huber,
    _Model,
    _stage_series,
    lr_level_factor,
    read_cpt_runs,
    replay_share,
)

RESULTS = Path(__file__).parent / "results" / "cpt_law_forms.json"
DEPARTURES = ("c_split", "exp_replay", "area_speed", "no_level", "lambda_fixed")


@dataclass(frozen=True)
class Form:
    """Which of the paper's choices a form takes (all False: the law evertrain ships)."""

    c_split: bool = False
    exp_replay: bool = False
    area_speed: bool = False
    no_level: bool = False
    lambda_fixed: bool = False
    #: not a form: the grid of starting E values scaled by this, to measure how far the fit's
    #: own sensitivity to its starts moves the scores (a difference between forms below that
    #: is no difference)
    start_scale: float = 1.0


FORMS: dict[str, Form] = {
    "evertrain": Form(),
    **{name: Form(**{name: True}) for name in DEPARTURES},
    "paper": Form(**{name: True for name in DEPARTURES}),
    # the paper's lambda = 0.999 was set for runs of 10^4+ steps; this one fits it as evertrain does
    "paper_lambda_fitted": Form(**{name: True for name in DEPARTURES if name != "lambda_fixed"}),
    "evertrain_starts_x0.98": Form(start_scale=0.98),
    "evertrain_starts_x1.02": Form(start_scale=1.02),
}


class _FormModel(_Model):
    """The library's per-distribution model with the S2 split at the stage start and the
    form's replay factor, clock and level."""

    def __init__(self, series: list, warmup_steps: int | None, form: Form, offset: int) -> None:
        super().__init__(series, warmup_steps)
        self.form, self.offset = form, offset
        self.replay = 1.0 - self.keep
        self._split: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def split(self, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """(S2pt, S2cpt): the annealing area up to the stage's start (update offset - 1) and
        after it; the momentum runs on over the boundary, as in the shipped law."""
        if lam not in self._split:
            total = self.s2(lam)
            before, start = total.copy(), 0  # the base curve: all of it is pre-training
            for eta, s in zip(self.eta, self.series, strict=True):
                if s.level is not None:  # a stage: the base's share is frozen at its start
                    drops = np.r_[0.0, eta[:-1] - eta[1:]]
                    at = AnnealingLaw._s2(drops, lam, np.array([self.offset - 1]), False)[0]
                    before[start : start + len(s.points)] = at[0]
                start += len(s.points)
            self._split[lam] = (before, total - before)
        return self._split[lam]

    def shape(self, E: float, beta: float, kappa: float, gamma: float) -> np.ndarray:
        if self.form.exp_replay:  # kappa is the paper's exponent k here
            share = (
                self.keep if abs(kappa) < 1e-8 else np.expm1(kappa * self.keep) / math.expm1(kappa)
            )
        else:
            share = replay_share(self.keep, kappa)
        clock = self.s1_cpt if self.form.area_speed else self.keep * self.s1_cpt
        return share * lr_level_factor(self.level, gamma) * (1.0 - (1.0 + E * clock) ** -beta)

    def annealing(self, p: Mapping[str, float]) -> np.ndarray:
        if not self.form.c_split:
            return p["C"] * self.s2(p["lam"])
        before, after = self.split(p["lam"])
        return p["C"] * before + p["C2"] * np.exp(p["a1"] * self.replay) * after

    def predict(self, theta: np.ndarray) -> np.ndarray:  # type: ignore[override]
        p = params_of(theta)
        return (p["L0"] + p["A"] * self.s1 ** -p["alpha"] - self.annealing(p)
                + p["B"] * self.shape(p["E"], p["beta"], p["kappa"], p["gamma"]))  # fmt: skip


def theta_of(p: Mapping[str, float], form: Form) -> np.ndarray:
    """The library's parameter vector (evertrain.laws.cpt._theta), then C2 and a1 when the form
    splits C: a form without the split fits exactly the library's vector."""
    theta = [p["L0"], math.log(p["A"]), p["alpha"], math.log(p["C"]), math.log1p(-p["lam"]),
             p["B"], math.log(p["E"]), p["beta"], p["kappa"], p["gamma"]]  # fmt: skip
    if form.c_split:
        theta += [math.log(p["C2"]), p["a1"]]
    return np.array(theta)


def params_of(theta: np.ndarray) -> dict[str, float]:
    v = [float(x) for x in theta]
    split = len(v) > 10
    return {"L0": v[0], "A": math.exp(v[1]), "alpha": v[2], "C": math.exp(v[3]),
            "lam": -math.expm1(v[4]), "B": v[5], "E": math.exp(v[6]), "beta": v[7],
            "kappa": v[8], "gamma": v[9], "C2": math.exp(v[10]) if split else math.exp(v[3]),
            "a1": v[11] if split else 0.0}  # fmt: skip


def _pin(lower: list[float], upper: list[float], i: int, value: float) -> None:
    lower[i], upper[i] = value - 1e-12, value + 1e-12


def bounds(loss: np.ndarray, form: Form, kappa_free: bool, gamma_free: bool):
    top = float(loss.max())
    # the library's bounds (evertrain.laws.cpt._bounds), then C2 and a1
    lower = [0.0, math.log(1e-6), 1e-3, math.log(1e-8), math.log(1e-6), -top, math.log(1e-6),
             1e-2, 0.0, 0.0, math.log(1e-8), -5.0]  # fmt: skip
    upper = [top, math.log(1e4), 3.0, math.log(1e8), math.log(0.5), top, math.log(1e8), 10.0,
             20.0, 2.0, math.log(1e8), 5.0]  # fmt: skip
    if form.exp_replay:
        lower[8], upper[8] = -10.0, 10.0
    if not kappa_free:
        _pin(lower, upper, 8, 0.0 if form.exp_replay else 1.0)
    if not gamma_free or form.no_level:
        lower[9], upper[9] = 0.0, 1e-12
    if form.lambda_fixed:
        _pin(lower, upper, 4, math.log1p(-0.999))
    if not form.c_split:
        return np.array(lower[:10]), np.array(upper[:10])
    if not kappa_free:  # one replay ratio cannot identify a1
        _pin(lower, upper, 11, 0.0)
    return np.array(lower), np.array(upper)


def fit(model: _FormModel, loss: np.ndarray, form: Form, kappa_free: bool, gamma_free: bool,
        n_starts: int = 8) -> dict[str, float]:  # fmt: skip
    """The library's fitting (evertrain.laws.cpt._fit_distribution) with the form's parameters."""
    from scipy.optimize import least_squares

    lower, upper = bounds(loss, form, kappa_free, gamma_free)
    log_loss = np.log(loss)
    neutral_kappa = 0.0 if form.exp_replay else 1.0

    def residual(theta: np.ndarray) -> np.ndarray:
        pred = model.predict(theta)
        if not np.all(np.isfinite(pred)) or np.any(pred <= 0):
            return np.full_like(loss, 1.0)
        return log_loss - np.log(pred)

    stage_area = model.s1_cpt[model.in_stage]
    scale = 1.0 / float(np.median(stage_area)) if len(stage_area) else 1.0
    gammas = (0.0, 0.5, 1.0) if gamma_free and not form.no_level else (0.0,)
    lams = (0.999,) if form.lambda_fixed else (0.99, 0.999)
    top = float(loss.max())
    candidates = []
    for alpha, lam, e_rel, beta, gamma in itertools.product(
        (0.3, 0.5, 0.8), lams, (0.3, 1.0, 3.0, 10.0), (0.5, 1.0, 2.0), gammas
    ):
        e_rel *= form.start_scale
        shape = model.shape(e_rel * scale, beta, neutral_kappa, gamma)
        if form.c_split:
            before, after = model.split(lam)
            columns = [np.ones_like(loss), model.s1**-alpha, -before, -after, shape]
        else:
            columns = [np.ones_like(loss), model.s1**-alpha, -model.s2(lam), shape]
        coef, *_ = np.linalg.lstsq(np.column_stack(columns) / loss[:, None], np.ones_like(loss),
                                   rcond=None)  # fmt: skip
        c2 = float(np.clip(coef[3], 1e-7, 1e7)) if form.c_split else 1.0
        p = {"L0": float(np.clip(coef[0], 0.0, top)), "A": float(np.clip(coef[1], 1e-5, 1e3)),
             "alpha": alpha, "C": float(np.clip(coef[2], 1e-7, 1e7)), "lam": lam,
             "B": float(np.clip(coef[-1], -top, top)), "E": e_rel * scale, "beta": beta,
             "kappa": neutral_kappa, "gamma": gamma, "C2": c2, "a1": 0.0}  # fmt: skip
        candidates.append(np.clip(theta_of(p, form), lower, upper))
    candidates.sort(key=lambda th: float(np.sum(_huber(residual(th)))))
    best = None
    for theta0 in candidates[:n_starts]:
        result = least_squares(
            residual, theta0, bounds=(lower, upper), loss="huber", f_scale=HUBER_DELTA,
            x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=400,
        )  # fmt: skip
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    return params_of(best.x)


def held_out_errors(base: BaseRun, runs: dict[Any, ContinualRun], fit_keys: tuple, form: Form,
                    ) -> dict[str, float]:  # fmt: skip
    """Fit the form on the base and ``fit_keys``; the mean relative error of the final loss of
    every other run (as cpt_law.held_out_errors for the library's law)."""
    fit_runs = [runs[k] for k in fit_keys]
    offset = fit_runs[0].offset
    law = CPTLaw(annealing="annealing")  # only for the series it fits (the base curve up to offset, then the stages)
    law.offset = offset
    series, losses, _ = law._series(base, fit_runs)
    warmup = warmup_length(base.lr[:offset])
    kappa_free = len({r.replay for r in fit_runs}) >= 2
    peaks = [float(np.max(r.lr)) for r in fit_runs]
    gamma_free = max(peaks) > 1.001 * min(peaks)
    held_out = {  # one model per held-out run's final eval, shared by both distributions
        key: _FormModel([_stage_series(base.lr, offset, run.lr, run.steps[-1:], run.replay)],
                        warmup, form, offset)
        for key, run in runs.items()
        if key not in fit_keys
    }  # fmt: skip
    errors: dict[str, list[float]] = {d: [] for d in DISTRIBUTIONS}
    for d in DISTRIBUTIONS:
        loss = np.concatenate([losses[i][d] for i in range(len(series))])
        p = fit(_FormModel(series, warmup, form, offset), loss, form, kappa_free, gamma_free)
        for key, model in held_out.items():
            pred = model.predict(theta_of(p, form))[-1]
            measured = float(runs[key].loss[d][-1])
            errors[d].append(abs(float(pred) - measured) / measured)
    return {d: statistics.fmean(v) for d, v in errors.items()}


def score_form(base: BaseRun, runs: dict, form: Form, fit_sets: dict[str, tuple],
               designs: list[tuple]) -> dict[str, Any]:  # fmt: skip
    entry: dict[str, Any] = {}
    for label, keys in fit_sets.items():
        e = held_out_errors(base, runs, keys, form)
        entry[label] = {"prede_old": e["old"], "prede_new": e["new"]}
    rows = [held_out_errors(base, runs, keys, form) for keys in designs]
    for d in DISTRIBUTIONS:
        q = np.quantile([r[d] for r in rows], [0.25, 0.5, 0.75])
        entry[f"designs_prede_{d}"] = dict(
            zip(("q25", "median", "q75"), map(float, q), strict=True)
        )
    entry["designs_share_meeting_both"] = statistics.fmean(
        float(r["old"] <= 0.01 and r["new"] <= 0.01) for r in rows
    )
    # per design, in the order of cpt_law.random_designs: forms are compared design by design
    entry["designs"] = [[r["old"], r["new"]] for r in rows]
    return entry


#: a paired difference of held-out error smaller than this (0.01 % of the loss) counts as a tie
TIE = 1e-4


def paired(entry: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Design by design against the shipped law: on how many of the same fit sets the form's
    error is lower / higher by more than :data:`TIE`, and the median of (form - shipped)."""
    diff = np.array(entry["designs"]) - np.array(reference["designs"])
    return {
        d: {"lower": int(np.sum(diff[:, i] < -TIE)), "higher": int(np.sum(diff[:, i] > TIE)),
            "of": len(diff), "median_difference": float(np.median(diff[:, i]))}
        for i, d in enumerate(DISTRIBUTIONS)
    }  # fmt: skip


def load_runs(continual_out: Path, out: Path, shift: str) -> tuple[BaseRun, dict]:
    """The grid's runs as cpt_law.py trained them (it must have run first)."""
    scale = replace(bench.BENCH, seeds=(cpt_law.SEED,))
    paths = bench.prepare_data(continual_out, scale)
    _, specs = bench.plan_jobs(continual_out, scale, paths)
    keys = [(s, p, r) for s in cpt_law.SCHEDULES for p in cpt_law.PEAKS for r in cpt_law.REPLAYS]
    cells = {k: cpt_law.run_spec(specs, shift, k, out, scale) for k in keys}
    missing = [
        s["out_dir"] for s in cells.values() if not (Path(s["out_dir"]) / "log.jsonl").is_file()
    ]
    if missing:
        print(f"{len(missing)} grid runs missing (first: {missing[0]}): run "
              "`python benchmarks/cpt_law.py` first", file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    base_dir = Path(specs[f"seed-{cpt_law.SEED}/base"]["out_dir"])
    base, read = read_cpt_runs(base_dir, [s["out_dir"] for s in cells.values()])
    return base, dict(zip(cells, read, strict=True))


def _paired_cell(entry: dict[str, Any], reference: dict[str, Any] | None, name: str) -> str:
    if name == "evertrain" or reference is None or "designs" not in entry:
        return "-"
    p = paired(entry, reference)
    return " / ".join(
        f"{p[d]['lower']}-{p[d]['higher']} ({p[d]['median_difference']:+.4f})" for d in DISTRIBUTIONS
    )


def markdown_table(payload: dict[str, Any]) -> str:
    """The docs' table: per form, the random designs' median held-out errors (old / new) and the
    share of designs meeting both targets, then the named fit sets, per shift."""
    shifts = list(payload["shifts"])
    head = "| form | " + " | ".join(
        f"{s}: designs median old / new (both <= 0.01) | {s}: designs lower-higher than "
        f"`evertrain`, old / new (median difference) | {s}: main old / new | {s}: spread old / new"
        for s in shifts
    )
    lines = [head + " |", "|---|" + "---|" * (4 * len(shifts))]
    for name in FORMS:
        if not all(name in payload["shifts"][s] for s in shifts):
            continue
        cells = []
        for s in shifts:
            e = payload["shifts"][s][name]
            cells += [f"{e['designs_prede_old']['median']:.4f} / {e['designs_prede_new']['median']:.4f}"
                      f" ({e['designs_share_meeting_both']:.2f})",
                      _paired_cell(e, payload["shifts"][s].get("evertrain"), name),
                      f"{e['main']['prede_old']:.4f} / {e['main']['prede_new']:.4f}",
                      f"{e['spread']['prede_old']:.4f} / {e['spread']['prede_new']:.4f}"]  # fmt: skip
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bases_table(payloads: list[dict[str, Any]]) -> str:
    """Per form and shift, over the results of several bases (``--base-seed``): the random fit
    sets' median old / new error per base, and the design-by-design comparison with the shipped
    law summed over the bases."""
    seeds = [p.get("base_seed", 0) for p in payloads]
    head = "| form | shift | " + " | ".join(f"base {s}: median old / new" for s in seeds)
    lines = [head + " | lower-higher than `evertrain` over all bases, old / new |",
             "|---|---|" + "---|" * (len(seeds) + 1)]  # fmt: skip
    for name in FORMS:
        for shift in ("strong", "weak"):
            entries = [p["shifts"].get(shift, {}).get(name) for p in payloads]
            if any(e is None for e in entries):
                continue
            cells = [f"{e['designs_prede_old']['median']:.4f} / {e['designs_prede_new']['median']:.4f}"
                     for e in entries]  # fmt: skip
            if name == "evertrain":
                cells.append("-")
            else:
                counts = {d: [0, 0, 0] for d in DISTRIBUTIONS}
                for p, e in zip(payloads, entries, strict=True):
                    for d, c in paired(e, p["shifts"][shift]["evertrain"]).items():
                        counts[d] = [counts[d][0] + c["lower"], counts[d][1] + c["higher"],
                                     counts[d][2] + c["of"]]  # fmt: skip
                cells.append(" / ".join(f"{lo}-{hi} of {of}" for lo, hi, of in counts.values()))
            lines.append(f"| `{name}` | {shift} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--continual-out",
        default=os.path.join(tempfile.gettempdir(), "evertrain-bench-continual-v3"),
    )
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "evertrain-bench-cpt-law-v3"),
                        help="cpt_law.py's --out (its grid runs)")  # fmt: skip
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument(
        "--forms", default=",".join(FORMS), help=f"comma-separated of {list(FORMS)}"
    )
    parser.add_argument("--table", action="store_true", help="print the docs' table and exit")
    parser.add_argument(
        "--base-seed", type=int, default=0,
        help="the grid of `cpt_law.py --base-seed N` (default 0); N > 0 writes "
        "cpt_law_forms_seed<N>.json",
    )  # fmt: skip
    args = parser.parse_args()
    if args.base_seed not in bench.BENCH.seeds:
        print(f"--base-seed {args.base_seed}: choose from {list(bench.BENCH.seeds)}", file=sys.stderr)
        raise SystemExit(2)
    cpt_law.SEED = args.base_seed  # the grid's helpers read it at the call
    if args.base_seed and args.results == str(RESULTS):
        args.results = str(RESULTS.with_name(f"cpt_law_forms_seed{args.base_seed}.json"))
    if args.table:
        print(markdown_table(json.loads(Path(args.results).read_text())))
        others = sorted(RESULTS.parent.glob("cpt_law_forms_seed*.json"))
        if others and RESULTS.is_file():
            print()
            print(bases_table([json.loads(p.read_text()) for p in [RESULTS, *others]]))
        return
    forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    bad = [f for f in forms if f not in FORMS]
    if bad or not forms:
        print(f"--forms {args.forms!r}: choose from {', '.join(FORMS)}", file=sys.stderr)
        raise SystemExit(2)
    results = Path(args.results)
    payload = json.loads(results.read_text()) if results.is_file() else {"shifts": {}}
    started = time.perf_counter()
    for shift in ("strong", "weak"):
        base, runs = load_runs(Path(args.continual_out), Path(args.out), shift)
        designs = cpt_law.random_designs(list(runs), cpt_law.DESIGNS, cpt_law.DESIGN_SEED)
        fit_sets = {"main": cpt_law.FIT_SET, "spread": cpt_law.FIT_SET_SPREAD}
        for name in forms:
            t = time.perf_counter()
            entry = score_form(base, runs, FORMS[name], fit_sets, designs)
            entry["seconds"] = round(time.perf_counter() - t, 1)
            payload["shifts"].setdefault(shift, {})[name] = entry
            print(f"{shift:6s} {name:12s} main {entry['main']['prede_old']:.4f}/"
                  f"{entry['main']['prede_new']:.4f} spread {entry['spread']['prede_old']:.4f}/"
                  f"{entry['spread']['prede_new']:.4f} designs median "
                  f"{entry['designs_prede_old']['median']:.4f}/{entry['designs_prede_new']['median']:.4f}"
                  f" both<=0.01 {entry['designs_share_meeting_both']:.2f} ({entry['seconds']:.0f} s)",
                  flush=True)  # fmt: skip
    payload["forms"] = {name: {k: v for k, v in vars(FORMS[name]).items()
                               if v and not (k == "start_scale" and v == 1.0)} for name in FORMS}  # fmt: skip
    payload["method"] = (
        "each form fitted per distribution on the base curve plus 3 runs (cpt_law.py's fit sets "
        f"'main', 'spread' and its {cpt_law.DESIGNS} random designs, seed {cpt_law.DESIGN_SEED}); "
        "prede_* = mean over the held-out runs of |pred - measured| / measured at the final eval"
    )
    payload["base_seed"] = args.base_seed
    payload["machine"] = {"platform": platform.platform(), "python": platform.python_version()}
    payload["last_run_seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(results, payload)
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
