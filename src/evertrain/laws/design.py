"""Which continual runs to train first, so that a CPT law fitted on them predicts the rest.

The CPT law (:mod:`evertrain.laws.cpt`) learns each of its extrapolating parameters from a
difference between the fitted runs: ``kappa`` (how replay holds the shift back) from two or more
replay ratios, ``gamma`` (how the shift's size follows the LR) from two or more peaks, and the
loss drop's shape from schedules that decay differently (cosine, WSD). A fit set that lacks one
of these differences leaves that parameter at its default and the law extrapolates along that
axis. On evertrain's CPT benchmark a fit on three runs at one peak missed the other peak's final
losses by 2 % (median) and up to 5 %; over the 36 three-run sets this rule admits there, the
median held-out error was 0.4-1.2 % (``docs/laws.md``, "CPT law: evidence"). Spanning the axes
is what avoids the one-peak failure; it does not make any one such set good (their errors range
0.2-3.1 %). More runs do: there, the five runs the rule picks for ``runs=5`` predicted the strong
shift's old data to 0.4-0.5 % on three bases, against 1.1-1.3 % for its three
(``benchmarks/cpt_law_runs.py``; "How many runs to fit on" in the docs).

:func:`design_fit_runs` picks ``runs`` recipes from a candidate grid (families x peaks x
replay ratios) in two steps. First each numeric axis on its own: of its values it keeps
``min(runs, count)``, spread as evenly as the grid allows (the extremes, then the values farthest
from those kept; replay scaled linearly, peak in log), and no value is used more often than
``runs`` forces. Three runs on the replay ratios 0, 0.05, 0.1, 0.25, 0.5 use 0, 0.25 and 0.5,
so the law interpolates in replay instead of leaning on the form of ``R(r)``; a design that
is only far apart in all axes together would take 0, 0.05, 0.5 (the projections matter, as in
Joseph et al.'s MaxPro designs). Then the combination: every family appears when ``runs``
allows, and among such sets the one whose closest two runs are farthest apart (maximin, each
axis scaled to [0, 1], family 0 / 1). Ties go to the larger sum of distances, then to the grid's order:
families as given, highest peak first, lowest replay first, so the first run is the recipe most
users start from.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evertrain.laws.cpt import RECIPE_FAMILIES
from evertrain.laws.curves import LawError

#: exhaustive search up to this many candidate sets; beyond it, greedy maximin
EXHAUSTIVE_LIMIT = 200_000
#: a probe trains the first fifth of its recipe (same schedule, stopped early): on the CPT
#: benchmark's stages that held two of each run's evals (docs/laws.md, "Probes")
PROBE_FRACTION = 0.2


@dataclass(frozen=True)
class FitRun:
    """One continual run to train for the fit: schedule family, peak LR, replay ratio."""

    family: str
    peak: float
    replay: float


def design_fit_runs(
    peaks: Sequence[float],
    replays: Sequence[float],
    families: Sequence[str] = RECIPE_FAMILIES,
    runs: int = 3,
) -> list[FitRun]:
    """The ``runs`` recipes of the grid ``families x peaks x replays`` to fit the law on (see the
    module's docstring for the rule). Raises :class:`LawError` for an empty axis, a family other
    than :data:`~evertrain.laws.cpt.RECIPE_FAMILIES`, a peak <= 0, a replay ratio outside [0, 1)
    or ``runs`` outside [1, grid size]."""
    peaks = sorted({float(p) for p in peaks}, reverse=True)
    replays = sorted({float(r) for r in replays})
    families = list(dict.fromkeys(families))
    for name, axis in (("peaks", peaks), ("replays", replays), ("families", families)):
        if not axis:
            raise LawError(f"design: give one or more {name}")
    unknown = [f for f in families if f not in RECIPE_FAMILIES]
    if unknown:
        raise LawError(f"design: families {unknown}: choose from {', '.join(RECIPE_FAMILIES)}")
    if min(peaks) <= 0:
        raise LawError(f"design: peaks {peaks} must be > 0")
    if min(replays) < 0 or max(replays) >= 1:
        raise LawError(f"design: replay ratios {replays} must be in [0, 1)")
    size = len(families) * len(peaks) * len(replays)
    if not 1 <= runs <= size:
        raise LawError(
            f"design: runs={runs} must be in [1, {size}], the grid's size ({len(families)} "
            f"families x {len(peaks)} peaks x {len(replays)} replay ratios): add values or "
            "ask for fewer runs"
        )
    peaks = _spread_levels(peaks, runs, log=True)
    replays = _spread_levels(replays, runs, log=False)
    grid = [FitRun(f, p, r) for f, p, r in itertools.product(families, peaks, replays)]
    coords = _coordinates(grid, peaks, replays, families)
    distance = np.sqrt(((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1))
    required = _required(peaks, replays, families, runs)
    caps = {"peak": math.ceil(runs / len(peaks)), "replay": math.ceil(runs / len(replays))}
    if math.comb(len(grid), runs) <= EXHAUSTIVE_LIMIT:
        best: tuple[float, float] | None = None
        chosen: tuple[int, ...] = tuple(range(runs))
        for pick in itertools.combinations(range(len(grid)), runs):  # in the grid's order
            if not _covers([grid[i] for i in pick], required, caps):
                continue
            score = _score(distance, pick)
            if best is None or score > best:  # strict: the first of equal scores stays
                best, chosen = score, pick
        return [grid[i] for i in chosen]
    return [grid[i] for i in _greedy(grid, distance, runs, caps)]


def _spread_levels(values: list[float], runs: int, *, log: bool) -> list[float]:
    """``min(runs, len(values))`` of ``values`` (kept in their order): the extremes, then one at a
    time the value farthest from those kept (ties: the first)."""
    if runs >= len(values):
        return values
    position = [math.log(v) if log else v for v in values]
    kept = {0, len(values) - 1} if runs >= 2 else {0}
    while len(kept) < runs:
        rest = [i for i in range(len(values)) if i not in kept]
        kept.add(
            max(
                rest,
                key=lambda i: (round(min(abs(position[i] - position[j]) for j in kept), 12), -i),
            )
        )
    return [values[i] for i in sorted(kept)]


def _coordinates(
    grid: list[FitRun], peaks: list[float], replays: list[float], families: list[str]
) -> np.ndarray:
    def scaled(value: float, low: float, high: float) -> float:
        return 0.0 if high <= low else (value - low) / (high - low)

    log_low, log_high = math.log(min(peaks)), math.log(max(peaks))
    rows = []
    for run in grid:
        row = [scaled(run.replay, replays[0], replays[-1]),
               scaled(math.log(run.peak), log_low, log_high)]  # fmt: skip
        row += [1.0 if run.family == f else 0.0 for f in families[1:]]  # one-hot past the first
        rows.append(row)
    return np.asarray(rows, dtype=np.float64)


def _required(
    peaks: list[float], replays: list[float], families: list[str], runs: int
) -> list[tuple[str, set]]:
    """What a fit set of ``runs`` runs must contain: each axis's extremes, every family."""
    out: list[tuple[str, set]] = []
    if runs >= 2:
        out += [("peak", {peaks[0], peaks[-1]}), ("replay", {replays[0], replays[-1]})]
    if runs >= len(families):
        out.append(("family", set(families)))
    return out


def _covers(pick: list[FitRun], required: list[tuple[str, set]], caps: dict[str, int]) -> bool:
    if not all(values <= {getattr(run, axis) for run in pick} for axis, values in required):
        return False
    return all(_counts(pick, axis) <= cap for axis, cap in caps.items())


def _counts(pick: Sequence[FitRun], axis: str) -> int:
    """How often the most used value of ``axis`` appears in ``pick``."""
    values = [getattr(run, axis) for run in pick]
    return max(values.count(v) for v in values) if values else 0


def _score(distance: np.ndarray, pick: Sequence[int]) -> tuple[float, float]:
    if len(pick) < 2:
        return (0.0, 0.0)
    pairs = [distance[i, j] for i, j in itertools.combinations(pick, 2)]
    return (round(min(pairs), 12), round(sum(pairs), 12))  # rounded: ties by order, not by ulp


def _greedy(grid: list[FitRun], distance: np.ndarray, runs: int, caps: dict[str, int]) -> list[int]:
    """Grow the set from the grid's first run (first family, highest peak, lowest replay), each
    time adding the run farthest from those chosen that keeps within ``caps``."""
    chosen = [0]
    while len(chosen) < runs:
        rest = [i for i in range(len(distance)) if i not in chosen
                and all(_counts([grid[j] for j in chosen] + [grid[i]], axis) <= cap
                        for axis, cap in caps.items())]  # fmt: skip
        chosen.append(max(rest, key=lambda i: (round(distance[i, chosen].min(), 12),
                                               round(distance[i, chosen].sum(), 12), -i)))  # fmt: skip
    return sorted(chosen)


def probe_runs(fit_runs: Sequence[FitRun], peaks: Sequence[float]) -> list[FitRun]:
    """Short runs to train beside ``fit_runs`` (each only its first :data:`PROBE_FRACTION`, its
    schedule unchanged): for every fitted run, the same family and replay ratio at the peak of
    ``peaks`` farthest from its own (in log; ties: the higher), unless that recipe is fitted or
    probed already. Why: three runs that span the axes see each replay ratio at one peak, so
    the fit trades ``kappa`` (replay) against ``gamma`` (LR level); a probe shows the same
    ratio at another peak. Where the old data's loss jumps early in the stage (a strong
    shift), the probe's first evals carry that level; on the CPT benchmark's strong shift they
    lowered the old-data error on most three-run sets for 0.6 of a run, and changed
    nothing on its weak shift (``docs/laws.md``, "Probes"). Empty with fewer than two peaks."""
    levels = sorted({float(p) for p in peaks}, reverse=True)
    if len(levels) < 2:
        return []
    fitted = {(r.family, r.peak, r.replay) for r in fit_runs}
    out: list[FitRun] = []
    for run in fit_runs:
        other = max(levels, key=lambda p: (round(abs(math.log(p / run.peak)), 12), p))
        probe = FitRun(run.family, other, run.replay)
        if (probe.family, probe.peak, probe.replay) not in fitted and probe not in out:
            out.append(probe)
    return out
