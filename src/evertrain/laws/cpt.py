"""The continual pre-training (CPT) law (Wang, Tissue et al., ICML 2025, arXiv 2505.07796).

A continual stage moves the loss from one *hidden* pre-training curve (the base run continued on
its own data) towards another (a run trained on the new data). The law decouples the two causes
of the change: the LR schedule, through the annealing law of the whole LR history (base, then
stage), and the distribution shift, a saturating power law of the stage's forward area. For each
validation distribution ``d`` (``old``: the base's data, ``new``: the stage's data)::

    L_d(t) = L0 + A S1(t)^(-alpha) - C S2(t)                                      (annealing term)
             + B R(r) G(t) [1 - (1 + E (1 - r) S1cpt(t))^(-beta)]                (shift term)
    R(r) = (1 - r) / ((1 - r) + kappa r)                                          (replay)
    G(t) = (mean stage LR so far / the base's peak LR)^gamma                      (LR level)

with ``annealing="annealing"`` (the paper's annealing term). The default,
``annealing="multi-power"``, has the multi-power law's loss drop over the same LR history in
place of ``C S2`` (:mod:`evertrain.laws._cpt_drop`; parameters ``B_drop, C_drop, beta_drop,
gamma_drop`` instead of ``C, lam``); the shift term is the same. It credits an LR drop as the
LR area after it grows, so a short WSD cool-down from a high peak gains less than a cosine's
long one; on the CPT benchmark's runs of three bases it predicted held-out runs better on most
random fit sets (``docs/laws.md``).

* ``S1(t)``, ``S2(t)``: the annealing law's forward and annealing areas of the concatenated
  per-step LR (base updates ``0 .. offset-1``, then the stage's); the momentum of ``S2`` carries
  over the stage boundary, so a re-warm (the LR rising again) is negative annealing and raises
  the loss, and a base that never decayed keeps its *loss potential* for the stage to use;
* ``S1cpt(t)``: the stage's own forward area (0 before the stage);
* ``B > 0`` on the old data (forgetting), ``B < 0`` on the new data (adaptation);
* ``r``: the replay ratio (share of the stage's tokens drawn from the old data). The paper
  (Appendix H, Eq. 8) makes the shift exponential in the new data's share ``1 - r``;
  evertrain models it instead as two competing rates (the benchmark's runs favour it,
  ``docs/laws.md``): the new-data updates (share ``1 - r``) drive the shift, the replayed
  old-data updates (share ``r``) pull it back ``kappa`` times as hard, so the shift settles at
  the share ``R(r)`` of its full size (1 at ``r = 0``, 0 at ``r = 1``, ``1 - r`` at
  ``kappa = 1``), and its speed follows the new data's share of the area, ``(1 - r) S1cpt``. ``kappa`` is fitted when the fitted runs
  have at least two distinct replay ratios, else it stays at 1 (``kappa_fitted`` records which,
  and predictions at another ratio warn once). evertrain's first form, ``(1 - r)^kappa``, is
  compared with this one on the CPT benchmark's grid in ``docs/laws.md``;
* ``G(t)``: evertrain's too, not the paper's: the size of the shift grows with the LR the stage
  learns the new data at (a re-warm to a lower peak forgets less), through the stage's mean LR
  so far, ``S1cpt(t) / (t + 1)``, relative to the base's peak. ``gamma`` is fitted when the
  fitted runs have two or more distinct peaks, else it stays 0 (``G = 1``, the paper's form;
  ``gamma_fitted`` records which): one peak cannot tell the LR level from the forward area.

The paper's own form (its Eq. 4) has ``C1 S2pt + C2 S2cpt`` (separate coefficients for the base's
and the stage's annealing areas), no ``R``, ``G`` or ``(1 - r)`` in the clock, and a fixed
``lambda = 0.999``; ``benchmarks/cpt_law_forms.py`` puts each of these back in turn and measures
it on the CPT benchmark's runs (``docs/laws.md``, "The paper's form and evertrain's").

Fitting (per distribution, independently; the annealing form here, the multi-power one in
:mod:`evertrain.laws._cpt_drop`, the same way): the Huber loss (delta 1e-3) of log residuals over the
base run's points and every continual run's points, as the annealing law's fit; the law is linear
in ``L0, A, C, B`` given the rest, so a grid over ``(alpha, lambda, E, beta)`` is screened with
those four by weighted least squares, and the best starts are refined by bounded
trust-region least squares (scipy ``least_squares``, loss ``huber``). The paper minimises the
same kind of objective with L-BFGS (scipy ``minimize``) from several starts.

Bands (``fit(bootstrap=N)``): a block bootstrap of the residuals, widened by a leave-one-run-out
discrepancy term when two or more continual runs are fitted (:mod:`evertrain.laws.intervals`).
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evertrain._atomic import atomic_write_json
from evertrain.laws.annealing import AnnealingLaw
from evertrain.laws.base import HUBER_DELTA
from evertrain.laws.curves import LawError, _as_schedule, lr_array, schedule_label, schedule_total

DISTRIBUTIONS = ("old", "new")
PARAM_NAMES = ("L0", "A", "alpha", "C", "lam", "B", "E", "beta", "kappa", "gamma")
#: the LR-annealing terms the law can take: the annealing law's ``- C S2`` (the paper's) or the
#: multi-power law's loss drop (:mod:`evertrain.laws._cpt_drop`)
ANNEALING_TERMS = ("annealing", "multi-power")
#: the term a law fitted without saying takes: on the CPT benchmark's grid the multi-power loss
#: drop predicted held-out runs better on most fit sets of three bases (``docs/laws.md``)
DEFAULT_ANNEALING = "multi-power"
#: the stage schedule families a searched or designed recipe can take (:func:`recipe_spec`)
RECIPE_FAMILIES = ("cosine", "wsd")
#: parameters a law written before they existed may lack, and the value that keeps its meaning
DEFAULT_PARAMS = {"gamma": 0.0}
#: Local fits from the best starts of the 72-point grid (216 when gamma is fitted), ranked by
#: their starting loss. Three left the new-data fit of the continual benchmark's strong shift
#: at an optimum stuck at its bounds (held-out error 3.6 %); eight found a better one (0.7 %)
#: at ~1.6x the fitting time.
N_STARTS = 8


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


@dataclass
class BaseRun:
    """The base (pre-training) run: its per-step LR and both distributions' losses.

    ``steps`` are 0-based update indices: the loss at ``steps[i]`` is measured after update
    ``steps[i]`` (an evertrain eval record at step ``S`` is update ``S - 1``).
    """

    name: str
    lr: np.ndarray
    steps: np.ndarray
    loss: dict[str, np.ndarray]
    tokens_per_step: float | None = None
    #: what the law is fitted on, kept in its JSON so that it is never applied to runs of other
    #: data or another base unsaid (:func:`read_cpt_runs` fills it from run folders): ``old`` /
    #: ``new`` (dataset names), ``data`` (name -> its validation shards' sha256), ``base``
    #: (``name``, ``fingerprint``: the base run's inputs hash), ``offset_tokens``
    fitted_on: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.lr = np.asarray(self.lr, dtype=np.float64)
        self.steps = np.asarray(self.steps, dtype=np.int64)
        self.loss = {d: np.asarray(self.loss[d], dtype=np.float64) for d in DISTRIBUTIONS}
        _check_points(self.name, self.steps, self.loss, len(self.lr))


@dataclass
class ContinualRun:
    """One continual stage from the base: its per-step LR from the stage's first update, its
    replay ratio, where it starts in the base (``offset``: base updates before it) and both
    distributions' losses at stage update indices ``steps`` (0-based, as :class:`BaseRun`)."""

    name: str
    lr: np.ndarray
    replay: float
    offset: int
    steps: np.ndarray
    loss: dict[str, np.ndarray]
    schedule: Any = None

    def __post_init__(self) -> None:
        self.lr = np.asarray(self.lr, dtype=np.float64)
        self.steps = np.asarray(self.steps, dtype=np.int64)
        self.loss = {d: np.asarray(self.loss[d], dtype=np.float64) for d in DISTRIBUTIONS}
        if not 0.0 <= float(self.replay) < 1.0:
            raise LawError(
                f"run {self.name!r}: replay ratio {self.replay} must be in [0, 1) "
                "(the share of the stage's tokens drawn from the old data)"
            )
        self.replay = float(self.replay)
        if self.offset < 1:
            raise LawError(f"run {self.name!r}: offset {self.offset} must be >= 1 base update")
        _check_points(self.name, self.steps, self.loss, len(self.lr))


def _check_points(name: str, steps: np.ndarray, loss: Mapping[str, np.ndarray], n_lr: int) -> None:
    if steps.ndim != 1 or len(steps) == 0:
        raise LawError(f"run {name!r}: no evaluated points (give eval losses on old and new data)")
    if np.any(np.diff(steps) <= 0) or steps[0] < 0:
        raise LawError(f"run {name!r}: eval steps must be >= 0 and strictly increasing")
    if int(steps[-1]) >= n_lr:
        raise LawError(
            f"run {name!r}: a loss at update {int(steps[-1])} but the LR covers {n_lr} updates"
        )
    for d in DISTRIBUTIONS:
        values = loss[d]
        if len(values) != len(steps) or not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise LawError(
                f"run {name!r}: the {d}-data losses must be one finite positive value per eval step"
            )


@dataclass
class Recipe:
    """A continual stage to predict: the stage's schedule (spec, ``Schedule`` or per-step LR),
    its replay ratio and its length in optimizer steps."""

    schedule: Any
    replay: float
    steps: int
    name: str = ""

    def label(self) -> str:
        return self.name or f"{schedule_label(self.schedule)} replay={self.replay:g}"


# --------------------------------------------------------------------------------------------
# The formula
# --------------------------------------------------------------------------------------------


def shift_term(
    s1_cpt: np.ndarray,
    replay: float,
    B: float,
    E: float,
    beta: float,
    kappa: float,
    level: np.ndarray | float = 1.0,
    gamma: float = 0.0,
) -> np.ndarray:
    """``B R(r) level^gamma [1 - (1 + E (1 - r) S1cpt)^(-beta)]``: the distribution-shift term
    (``level``: the stage's mean LR so far over the base's peak LR)."""
    keep = 1.0 - replay
    growth = 1.0 - (1.0 + E * keep * np.asarray(s1_cpt)) ** -beta
    return B * replay_share(keep, kappa) * lr_level_factor(level, gamma) * growth


def lr_level_factor(level: np.ndarray | float, gamma: float) -> np.ndarray | float:
    """``G = level^gamma``; exactly 1 when ``gamma`` is 0 (the paper's form), ``0^0`` included."""
    if gamma == 0.0:
        return np.ones_like(np.asarray(level, dtype=np.float64))
    return np.asarray(level, dtype=np.float64) ** gamma


def replay_share(keep: float | np.ndarray, kappa: float) -> float | np.ndarray:
    """``R = (1 - r) / ((1 - r) + kappa r)`` with ``keep = 1 - r``: the share of the full shift a
    stage settles at when its replayed updates undo the shift ``kappa`` times as fast as its
    new-data updates make it (0 only at ``r = 1``; ``kappa = 0``: replay does not help)."""
    return keep / (keep + kappa * (1.0 - keep))


@dataclass
class _Series:
    """One curve as the law sees it: the whole LR history and where its losses were measured."""

    lr: np.ndarray  # base LR [0, offset) then the stage's
    points: np.ndarray  # global update indices of the losses
    s1_cpt: np.ndarray  # the stage's forward area at the points (0 on the base curve)
    replay: float
    #: the stage's mean LR up to each point over the base's peak LR (None: 1, the base curve)
    level: np.ndarray | None = None

    def lr_level(self) -> np.ndarray:
        return np.ones(len(self.points)) if self.level is None else self.level


def _annealing(params: Mapping[str, float], warmup_steps: int | None) -> AnnealingLaw:
    return AnnealingLaw(
        {k: params[k] for k in ("L0", "A", "alpha", "C", "lam")},
        warmup="peak",
        warmup_steps=warmup_steps,
    )


def param_names(annealing: str) -> tuple[str, ...]:
    """The parameters of one distribution's law with the given annealing term."""
    if annealing == "multi-power":
        from evertrain.laws._cpt_drop import PARAM_NAMES as DROP_NAMES

        return DROP_NAMES
    return PARAM_NAMES


def _schedule_term(
    lr: np.ndarray, points: np.ndarray, params: Mapping[str, float], warmup_steps: int | None
) -> np.ndarray:
    """``L0 + A S1^-alpha`` minus the annealing term (which one: read from the parameters)."""
    if "B_drop" in params:
        from evertrain.laws._cpt_drop import drop_power

        return drop_power(lr, points, params)
    return _annealing(params, warmup_steps).predict_lr(lr, points)


def _series_predict(
    series: _Series, params: Mapping[str, float], warmup_steps: int | None
) -> np.ndarray:
    base = _schedule_term(series.lr, series.points, params, warmup_steps)
    shift = shift_term(
        series.s1_cpt, series.replay, params["B"], params["E"], params["beta"], params["kappa"],
        series.lr_level(), params.get("gamma", 0.0),
    )  # fmt: skip
    return base + shift


def _stage_series(base_lr: np.ndarray, offset: int, stage_lr: np.ndarray, steps: np.ndarray,
                  replay: float) -> _Series:  # fmt: skip
    if offset > len(base_lr):
        raise LawError(
            f"the stage starts after base update {offset} but the base LR covers {len(base_lr)}"
        )
    lr = np.concatenate([base_lr[:offset], stage_lr])
    steps = np.asarray(steps, dtype=np.int64)
    s1 = np.cumsum(stage_lr)[steps]
    peak = float(np.max(base_lr[:offset]))
    level = s1 / (steps + 1) / peak if peak > 0 else np.ones(len(steps))
    return _Series(lr=lr, points=offset + steps, s1_cpt=s1, replay=replay, level=level)


# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------


@dataclass
class CPTPrediction:
    """Predicted old- and new-data losses of one recipe at stage update indices ``steps``;
    ``lower``/``upper`` hold the prediction band of each distribution when one was asked for."""

    recipe: Recipe
    steps: np.ndarray
    lr: np.ndarray
    loss: dict[str, np.ndarray]
    lower: dict[str, np.ndarray] = field(default_factory=dict)
    upper: dict[str, np.ndarray] = field(default_factory=dict)
    level: float | None = None

    def final(self, d: str) -> float:
        return float(self.loss[d][-1])


# --------------------------------------------------------------------------------------------
# The law
# --------------------------------------------------------------------------------------------


class CPTLaw:
    """The CPT law: per-distribution parameters ``params[d]`` (``d`` in ``old``, ``new``) and
    the base run's LR history the stages start from.

    ``annealing``: the LR-annealing term, ``"multi-power"`` (the default when fitting; the
    multi-power law's loss drop, parameters ``param_names("multi-power")``) or ``"annealing"``
    (the annealing law's ``C S2``, the paper's; :data:`PARAM_NAMES`). Left out with ``params``
    given, it is read from them (a law saved before the option existed loads as it was fitted).

    ``bootstrap`` (optional) holds resampled parameter sets and log residuals for prediction
    bands and, when fitted on two or more continual runs, the leave-one-run-out residuals and
    scores that widen them to the law's error on unseen recipes (``"cross_validation"``; how
    the band is made: ``"band"``; see :mod:`evertrain.laws.intervals`).
    """

    name = "cpt"

    def __init__(
        self,
        params: Mapping[str, Mapping[str, float]] | None = None,
        *,
        base_lr: Sequence[float] | np.ndarray | None = None,
        offset: int | None = None,
        warmup_steps: int | None = None,
        tokens_per_step: float | None = None,
        kappa_fitted: bool = True,
        gamma_fitted: bool = False,
        fitted_replays: Sequence[float] = (),
        fitted_peaks: Sequence[float] = (),
        fitted_steps: Sequence[int] = (),
        bootstrap: Mapping[str, Any] | None = None,
        annealing: str | None = None,
        fitted_on: Mapping[str, Any] | None = None,
    ) -> None:
        if annealing is None:  # the parameters given say which; none given: the default
            drop = params is not None and any("B_drop" in (p or {}) for p in params.values())
            annealing = (
                ("multi-power" if drop else "annealing") if params is not None else DEFAULT_ANNEALING
            )
        if annealing not in ANNEALING_TERMS:
            raise LawError(
                f"annealing={annealing!r}: choose from {', '.join(ANNEALING_TERMS)} (the "
                "annealing law's S2, the paper's; or the multi-power law's loss drop)"
            )
        self.annealing = annealing
        names = param_names(annealing)
        self.params: dict[str, dict[str, float]] | None = None
        if params is not None:
            self.params = {}
            for d in DISTRIBUTIONS:
                given = params.get(d)
                given = None if given is None else {**DEFAULT_PARAMS, **given}
                missing = [p for p in names if given is None or p not in given]
                if missing:
                    raise LawError(
                        f"cpt law params[{d!r}] missing {missing}: give all of {list(names)} "
                        f"(annealing={annealing!r})"
                    )
                self.params[d] = {p: float(given[p]) for p in names}  # type: ignore[index]
        self.base_lr = None if base_lr is None else np.asarray(base_lr, dtype=np.float64)
        self.offset = None if offset is None else int(offset)
        self.warmup_steps = warmup_steps
        self.tokens_per_step = tokens_per_step
        self.kappa_fitted = bool(kappa_fitted)
        self.gamma_fitted = bool(gamma_fitted)
        self.fitted_replays = [float(r) for r in fitted_replays]
        self.fitted_peaks = [float(p) for p in fitted_peaks]
        self.fitted_steps = [int(s) for s in fitted_steps]
        self.bootstrap = dict(bootstrap) if bootstrap else None
        #: the data and base the law was fitted on (:attr:`BaseRun.fitted_on`); None: unknown
        #: (fitted from CSV or arrays, or a law file written before it was recorded)
        self.fitted_on = dict(fitted_on) if fitted_on else None
        self.fit_report: dict[str, Any] = {}

    # ---- prediction ---------------------------------------------------------------------------
    def _require(self) -> dict[str, dict[str, float]]:
        if self.params is None or self.base_lr is None or self.offset is None:
            raise LawError("the cpt law has no parameters yet: fit it or load a cpt law JSON")
        return self.params

    def stage_lr(self, recipe: Recipe) -> np.ndarray:
        """The recipe's per-step LR over its ``steps`` stage updates."""
        if recipe.steps < 2:
            raise LawError(f"recipe {recipe.label()!r}: steps={recipe.steps} must be >= 2")
        return lr_array(recipe.schedule, recipe.steps, tokens_per_step=self.tokens_per_step)

    def _grid(self, recipe: Recipe, steps: np.ndarray | None) -> np.ndarray:
        if steps is None:
            stride = max(1, recipe.steps // 400)
            return np.unique(np.r_[np.arange(0, recipe.steps, stride), recipe.steps - 1])
        steps = np.asarray(steps, dtype=np.int64)
        if steps.ndim != 1 or len(steps) == 0 or steps.min() < 0 or steps.max() >= recipe.steps:
            raise LawError(f"steps must be stage updates in [0, {recipe.steps - 1}]")
        return steps

    def predict_with(
        self,
        params: Mapping[str, Mapping[str, float]],
        recipe: Recipe,
        steps: np.ndarray,
        stage_lr: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Both distributions' losses of ``recipe`` at ``steps`` under ``params``."""
        assert self.base_lr is not None and self.offset is not None
        series = _stage_series(self.base_lr, self.offset, stage_lr, steps, recipe.replay)
        return {d: _series_predict(series, params[d], self.warmup_steps) for d in DISTRIBUTIONS}

    def predict(
        self,
        recipe: Recipe,
        steps: Sequence[int] | np.ndarray | None = None,
        *,
        interval: float | None = None,
        warn: bool = True,
    ) -> CPTPrediction:
        """Old- and new-data losses of ``recipe`` at stage updates ``steps`` (default ~400
        points over the stage); with ``interval`` (e.g. 0.9) also the bootstrap prediction band
        (the law must have been fitted with ``bootstrap > 0``). A recipe whose peak, replay
        ratio or length lies outside the fitted runs' warns once (``warn=False``: the caller
        reports :meth:`extrapolation` itself)."""
        params = self._require()
        self._check_recipe(recipe)
        grid = self._grid(recipe, None if steps is None else np.asarray(steps))
        lr = self.stage_lr(recipe)
        if warn:
            outside = self._outside(self._recipe_row(recipe, lr))
            if not self.kappa_fitted:  # the replay ratio has had its own warning above
                outside.pop("replay", None)
            if outside:
                why = (
                    " (fitted at one peak, it missed the other peak's final losses by 2 % "
                    "(median) and up to 5 % on evertrain's CPT benchmark)"
                    if "peak" in outside
                    else ""
                )
                warnings.warn(
                    f"recipe {recipe.label()!r}: {'; '.join(outside.values())}: the law "
                    f"extrapolates there{why}; fit on runs that span what you predict "
                    "(evertrain.laws.design_fit_runs, `evertrain law cpt design`)",
                    stacklevel=2,
                )
        loss = self.predict_with(params, recipe, grid, lr)
        out = CPTPrediction(recipe=recipe, steps=grid, lr=lr[grid], loss=loss)
        if interval is not None:
            from evertrain.laws.intervals import cpt_band

            out.lower, out.upper = cpt_band(self, recipe, grid, lr, interval)
            out.level = float(interval)
        return out

    def _check_recipe(self, recipe: Recipe) -> None:
        if not 0.0 <= recipe.replay < 1.0:
            raise LawError(f"recipe {recipe.label()!r}: replay={recipe.replay} must be in [0, 1)")
        if not isinstance(recipe.schedule, np.ndarray | list | tuple):
            total = schedule_total(recipe.schedule, tokens_per_step=self.tokens_per_step)
            if total is not None and recipe.steps > total:
                warnings.warn(
                    f"recipe {recipe.label()!r}: {recipe.steps} steps run past its schedule's end "
                    f"(total {total}), so the last {recipe.steps - total} hold its final LR: "
                    f"set the schedule's total to the stage length, or steps={total}",
                    stacklevel=3,
                )
        if (
            not self.kappa_fitted
            and self.fitted_replays
            and all(abs(recipe.replay - r) > 1e-9 for r in self.fitted_replays)
        ):
            warnings.warn(
                f"replay={recipe.replay:g} was not among the fitted runs' replay ratios "
                f"({', '.join(f'{r:g}' for r in sorted(set(self.fitted_replays)))}) and the "
                "law's kappa was not fitted (stays 1): fit on runs with two or more replay "
                "ratios for a law that extrapolates in replay",
                stacklevel=3,
            )

    # ---- fitting ------------------------------------------------------------------------------
    def fit(
        self,
        base: BaseRun,
        runs: Sequence[ContinualRun],
        *,
        n_starts: int | None = None,
        bootstrap: int = 0,
        block: int | None = None,
        seed: int = 0,
    ) -> CPTLaw:
        """Fit both distributions' parameters to the base run and one or more continual runs;
        ``bootstrap > 0`` also draws that many block-bootstrap parameter sets for bands and, with
        two or more continual runs, refits once per run held out (leave-one-run-out) to widen
        the bands to the law's error on unseen recipes (:mod:`evertrain.laws.intervals`).
        ``n_starts``: local fits per distribution from the best grid starts (default
        :data:`N_STARTS`, read when called)."""
        runs = list(runs)
        n_starts = N_STARTS if n_starts is None else n_starts  # read at the call: patchable
        if not runs:
            raise LawError("the cpt law needs at least one continual run besides the base run")
        names = [base.name] + [r.name for r in runs]
        if len(set(names)) != len(names):
            raise LawError(f"run names must be distinct, got {names}")
        offsets = {r.offset for r in runs}
        if len(offsets) != 1:
            raise LawError(
                f"the continual runs start at different base updates {sorted(offsets)}: fit one "
                "law per starting checkpoint"
            )
        offset = offsets.pop()
        if offset > len(base.lr):
            raise LawError(
                f"the continual runs start after base update {offset} but the base run "
                f"{base.name!r} covers {len(base.lr)} updates: give the base they branched from"
            )
        from evertrain.laws.annealing import warmup_length

        self.base_lr = base.lr[:offset].copy()
        self.offset = offset
        self.warmup_steps = (
            warmup_length(self.base_lr) if self.warmup_steps is None else self.warmup_steps
        )
        self.tokens_per_step = base.tokens_per_step or self.tokens_per_step
        self.fitted_on = dict(base.fitted_on) if base.fitted_on else None
        replays = sorted({r.replay for r in runs})
        self.kappa_fitted = len(replays) >= 2
        self.fitted_replays = [r.replay for r in runs]
        self.fitted_peaks = [float(np.max(r.lr)) for r in runs]
        self.gamma_fitted = max(self.fitted_peaks) > 1.001 * min(self.fitted_peaks)
        self.fitted_steps = [len(r.lr) for r in runs]
        series, losses, labels = self._series(base, runs)
        params: dict[str, dict[str, float]] = {}
        report: dict[str, Any] = {"runs": names, "per_distribution": {}}
        for d in DISTRIBUTIONS:
            loss = np.concatenate([losses[i][d] for i in range(len(series))])
            fitted, cost = _fit_distribution(
                series, loss, self.warmup_steps, kappa_free=self.kappa_fitted,
                gamma_free=self.gamma_fitted, n_starts=n_starts, annealing=self.annealing,
            )  # fmt: skip
            params[d] = fitted
            pred = np.concatenate([_series_predict(s, fitted, self.warmup_steps) for s in series])
            rel = np.abs(pred - loss) / loss
            report["per_distribution"][d] = {
                "prede": float(rel.mean()),
                "worste": float(rel.max()),
                "objective": cost,
                "residuals": {
                    label: (np.log(loss) - np.log(pred))[idx].tolist()
                    for label, idx in labels.items()
                },
            }
        self.params = params
        self.fit_report = report
        if bootstrap > 0:
            from evertrain.laws.intervals import (
                BAND_BOOTSTRAP_ONLY,
                BAND_WITH_CV,
                bootstrap_cpt,
                cross_validate_cpt,
            )

            self.bootstrap = bootstrap_cpt(
                self, series, losses, n=bootstrap, block=block, seed=seed
            )
            # the bootstrap only sees the fitted runs' noise; holding each run out measures the
            # law's error on a recipe it was not fitted on, which the band must also cover
            cv = cross_validate_cpt(
                self, base, runs, n_starts=n_starts, n_bootstrap=min(bootstrap, 20), seed=seed
            )
            if cv is not None:
                self.bootstrap["cross_validation"] = cv
            self.bootstrap["band"] = BAND_WITH_CV if cv is not None else BAND_BOOTSTRAP_ONLY
        return self

    def _series(
        self, base: BaseRun, runs: Sequence[ContinualRun]
    ) -> tuple[list[_Series], list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        assert self.offset is not None
        keep = base.steps < self.offset  # the base curve up to where the stages branch off
        if not keep.any():
            raise LawError(f"base run {base.name!r} has no eval before update {self.offset}")
        series = [_Series(base.lr[: self.offset], base.steps[keep], np.zeros(int(keep.sum())), 0.0)]
        losses = [{d: base.loss[d][keep] for d in DISTRIBUTIONS}]
        for run in runs:
            series.append(_stage_series(base.lr, self.offset, run.lr, run.steps, run.replay))
            losses.append(run.loss)
        labels, start = {}, 0
        for name, s in zip([base.name] + [r.name for r in runs], series, strict=True):
            labels[name] = np.arange(start, start + len(s.points))
            start += len(s.points)
        return series, losses, labels

    # ---- optimisation -------------------------------------------------------------------------
    def optimize(
        self,
        goal: str,
        *,
        steps: int | None = None,
        warmup: int | None = None,
        floor_ratio: float = 0.1,
        replays: Sequence[float] | None = None,
        peaks: Sequence[float] | None = None,
        families: Sequence[str] = RECIPE_FAMILIES,
        interval: float | None = None,
    ) -> dict[str, Any]:
        """The recipe (schedule family, peak LR, replay ratio) best for ``goal`` at a stage of
        ``steps`` updates (default: the longest fitted run). See :func:`parse_goal`. The default
        search: replay 0, 0.05, ..., 0.5; 7 peaks geometrically spaced over the fitted runs'
        peaks (0.5x-2x when they share one); ``families`` cosine and WSD."""
        self._require()
        objective = parse_goal(goal)
        steps = int(steps or max(self.fitted_steps or [0]))
        if steps < 2:
            raise LawError("give the stage length: steps >= 2")
        warmup = int(warmup if warmup is not None else max(0, steps // 50))
        if not 0 <= warmup < steps:
            raise LawError(f"warmup={warmup} must be in [0, steps={steps})")
        replays = list(replays) if replays is not None else list(np.linspace(0.0, 0.5, 11))
        if peaks is None:
            # within the fitted peaks (the law interpolates there); one fitted peak: 0.5x-2x it
            fitted = self.fitted_peaks or [float(np.max(self.base_lr))]  # type: ignore[arg-type]
            low, high = min(fitted), max(fitted)
            if high <= low * 1.001:
                low, high = 0.5 * low, 2.0 * high
            peaks = [float(f"{p:.4g}") for p in np.geomspace(low, high, 7)]
        bad = [f for f in families if f not in RECIPE_FAMILIES]
        if bad:
            raise LawError(f"schedule families {bad}: choose from cosine, wsd")
        params = self._require()
        reference = self.reference_losses()
        rows = []
        for family, peak, replay in itertools.product(families, peaks, replays):
            recipe = Recipe(
                recipe_spec(family, float(peak), steps, warmup, floor_ratio), float(replay), steps
            )
            lr = self.stage_lr(recipe)
            last = np.array([steps - 1])
            final = {d: float(v[0]) for d, v in self.predict_with(params, recipe, last, lr).items()}
            value, feasible = objective(final, reference)
            rows.append({"family": family, "peak": float(peak), "replay": float(replay),
                         "recipe": recipe, "final": final, "objective": value,
                         "feasible": feasible})  # fmt: skip
        feasible_rows = [r for r in rows if r["feasible"]]
        if not feasible_rows:
            least = min(rows, key=lambda r: r["final"]["old"])
            raise LawError(
                f"no recipe meets goal {goal!r}: the lowest predicted old-data loss is "
                f"{least['final']['old']:.5f} (replay {least['replay']:g}, peak "
                f"{least['peak']:.3g}); relax the goal or widen the search"
            )
        best = min(feasible_rows, key=lambda r: r["objective"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prediction = self.predict(best["recipe"], interval=interval, warn=False)
        return {
            "goal": goal,
            "reference": reference,
            "recipe": best["recipe"],
            "final": best["final"],
            "objective": best["objective"],
            "prediction": prediction,
            "searched": len(rows),
            "extrapolates": list(self._outside({**best, "steps": steps}).values()),
        }

    def mismatch(self, run: str | Path) -> str | None:
        """Why this law does not describe the run folder ``run`` (other data, another base,
        another branch point), naming both values; None where it does, or where the law or the
        run records nothing to compare (:attr:`fitted_on`, :func:`run_provenance`)."""
        fitted = self.fitted_on
        if not fitted:
            return None
        have = run_provenance(run)
        for role in DISTRIBUTIONS:
            if fitted.get(role) and have[role] != list(fitted[role]):
                return (f"its {role} data is {', '.join(have[role]) or 'none'}, the law's is "
                        f"{', '.join(fitted[role])}")  # fmt: skip
        for name, sha in (fitted.get("data") or {}).items():
            theirs = have["data"].get(name)
            if theirs and theirs != sha:
                return (f"its {name} validation shards (sha256 {theirs[:12]}) are not the law's "
                        f"({sha[:12]})")  # fmt: skip
        base = fitted.get("base") or {}
        if base.get("fingerprint") and have["base_fingerprint"] not in (None, base["fingerprint"]):
            return (f"its base run has fingerprint {have['base_fingerprint']}, the law's base "
                    f"{base.get('name')} has {base['fingerprint']}")  # fmt: skip
        at, offset = have["offset_tokens"], fitted.get("offset_tokens")
        if at is not None and offset is not None and int(at) != int(offset):
            return (f"it branched at {int(at):,} tokens into the base, the law's runs at "
                    f"{int(offset):,}")  # fmt: skip
        return None

    def extrapolation(self, recipe: Recipe, stage_lr: np.ndarray | None = None) -> list[str]:
        """What about ``recipe`` lies outside the fitted runs: its peak LR, replay ratio or
        length (one note each; empty when the law interpolates)."""
        lr = self.stage_lr(recipe) if stage_lr is None else stage_lr
        return list(self._outside(self._recipe_row(recipe, lr)).values())

    @staticmethod
    def _recipe_row(recipe: Recipe, stage_lr: np.ndarray) -> dict[str, Any]:
        return {"peak": float(np.max(stage_lr)), "replay": recipe.replay, "steps": recipe.steps}

    def _outside(self, row: Mapping[str, Any]) -> dict[str, str]:
        """A note per value of ``row`` (``peak``, ``replay``, ``steps``) outside the fitted runs
        (said, not hidden)."""
        notes: dict[str, str] = {}
        if self.fitted_peaks and not (
            0.999 * min(self.fitted_peaks) <= row["peak"] <= 1.001 * max(self.fitted_peaks)
        ):
            notes["peak"] = (
                f"peak {row['peak']:.3g} outside the fitted peaks "
                f"[{min(self.fitted_peaks):.3g}, {max(self.fitted_peaks):.3g}]"
            )
        if self.fitted_replays and not (
            min(self.fitted_replays) - 1e-9 <= row["replay"] <= max(self.fitted_replays) + 1e-9
        ):
            notes["replay"] = (
                f"replay {row['replay']:g} outside the fitted ratios "
                f"[{min(self.fitted_replays):g}, {max(self.fitted_replays):g}]"
            )
        steps = row.get("steps")
        if steps is not None and self.fitted_steps and steps > 1.001 * max(self.fitted_steps):
            notes["steps"] = (
                f"{steps} steps, longer than the longest fitted stage ({max(self.fitted_steps)})"
            )
        return notes

    def predict_base(self, steps: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """Both distributions' losses on the base curve at base updates ``steps`` (< offset)."""
        params = self._require()
        assert self.base_lr is not None and self.offset is not None
        points = np.asarray(steps, dtype=np.int64)
        if points.ndim != 1 or len(points) == 0 or points.min() < 0 or points.max() >= self.offset:
            raise LawError(f"base steps must be updates in [0, {self.offset - 1}]")
        return {
            d: _schedule_term(self.base_lr, points, params[d], self.warmup_steps)
            for d in DISTRIBUTIONS
        }

    def reference_losses(self) -> dict[str, float]:
        """Both distributions' losses of the base at the stages' start (update ``offset - 1``)."""
        assert self.offset is not None or self._require()
        return {d: float(v[0]) for d, v in self.predict_base([int(self.offset or 1) - 1]).items()}

    # ---- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        params = self._require()
        assert self.base_lr is not None
        payload: dict[str, Any] = {
            "law": "cpt",
            "params": params,
            "options": {
                "offset": self.offset,
                "warmup_steps": self.warmup_steps,
                "tokens_per_step": self.tokens_per_step,
                "kappa_fitted": self.kappa_fitted,
                "gamma_fitted": self.gamma_fitted,
                "fitted_replays": self.fitted_replays,
                "fitted_peaks": self.fitted_peaks,
                "fitted_steps": self.fitted_steps,
                "annealing": self.annealing,
                "fitted_on": self.fitted_on,
            },
            "base_lr": self.base_lr.tolist(),
            "fit": {k: v for k, v in self.fit_report.items()},
        }
        if self.bootstrap:
            payload["bootstrap"] = self.bootstrap
        return payload

    def save(self, path: str | Path) -> Path:
        """Write the law as JSON (loadable with :func:`load_cpt_law`), atomically."""
        atomic_write_json(path, self.to_dict())
        return Path(path)


def cpt_law_from_dict(payload: Mapping[str, Any]) -> CPTLaw:
    """Rebuild a :class:`CPTLaw` from :meth:`CPTLaw.to_dict` output."""
    if payload.get("law") != "cpt" or "params" not in payload or "base_lr" not in payload:
        raise LawError(
            "not a cpt law JSON (needs 'law': 'cpt', 'params', 'base_lr'): write it with "
            "`evertrain law cpt fit ... -o law.json`"
        )
    options = dict(payload.get("options") or {})
    try:
        law = CPTLaw(
            payload["params"],
            base_lr=payload["base_lr"],
            bootstrap=payload.get("bootstrap"),
            **options,
        )
    except TypeError as exc:
        raise LawError(f"bad options in the cpt law JSON: {exc}") from exc
    law.fit_report = dict(payload.get("fit") or {})
    return law


def load_cpt_law(path: str | Path) -> CPTLaw:
    """Load a law saved by :meth:`CPTLaw.save` / ``evertrain law cpt fit``."""
    path = Path(path)
    if not path.is_file():
        raise LawError(f"law file {path} does not exist: run `evertrain law cpt fit ... -o {path}`")
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LawError(f"{path} is not valid JSON ({exc})") from exc
    return cpt_law_from_dict(payload)


# --------------------------------------------------------------------------------------------
# Fitting one distribution
# --------------------------------------------------------------------------------------------


class _ShiftData:
    """The shift term's inputs over fixed series, stacked point by point; both annealing
    terms' models (this module's and :mod:`evertrain.laws._cpt_drop`'s) build on it."""

    def __init__(self, series: Sequence[_Series]) -> None:
        self.s1_cpt = np.concatenate([s.s1_cpt for s in series])
        self.keep = np.concatenate([np.full(len(s.points), 1.0 - s.replay) for s in series])
        self.level = np.concatenate([s.lr_level() for s in series])
        self.in_stage = self.s1_cpt > 0

    def shape(self, E: float, beta: float, kappa: float, gamma: float) -> np.ndarray:
        """The shift term divided by B."""
        share = replay_share(self.keep, kappa) * lr_level_factor(self.level, gamma)
        return share * (1.0 - (1.0 + E * self.keep * self.s1_cpt) ** -beta)


class _Model(_ShiftData):
    """The law of one distribution over fixed series, with the S2 of each lambda cached."""

    def __init__(self, series: list[_Series], warmup_steps: int | None) -> None:
        super().__init__(series)
        self.series = series
        probe = AnnealingLaw(warmup="peak", warmup_steps=warmup_steps)
        self.eta = [probe.effective_lr(s.lr) for s in series]
        self.s1 = np.concatenate(
            [np.cumsum(e)[s.points] for e, s in zip(self.eta, series, strict=True)]
        )
        self._s2: dict[float, np.ndarray] = {}

    def s2(self, lam: float) -> np.ndarray:
        if lam not in self._s2:
            if len(self._s2) > 8:
                self._s2.clear()
            parts = []
            for eta, s in zip(self.eta, self.series, strict=True):
                drops = np.r_[0.0, eta[:-1] - eta[1:]]
                parts.append(AnnealingLaw._s2(drops, lam, s.points, with_grad=False)[0])
            self._s2[lam] = np.concatenate(parts)
        return self._s2[lam]

    def predict(self, theta: np.ndarray) -> np.ndarray:
        p = _params(theta)
        return (
            p["L0"]
            + p["A"] * self.s1 ** -p["alpha"]
            - p["C"] * self.s2(p["lam"])
            + p["B"] * self.shape(p["E"], p["beta"], p["kappa"], p["gamma"])
        )


def _theta(p: Mapping[str, float]) -> np.ndarray:
    return np.array([p["L0"], math.log(p["A"]), p["alpha"], math.log(p["C"]),
                     math.log1p(-p["lam"]), p["B"], math.log(p["E"]), p["beta"], p["kappa"],
                     p.get("gamma", 0.0)])  # fmt: skip


def _params(theta: np.ndarray) -> dict[str, float]:
    L0, log_a, alpha, log_c, log_gap, B, log_e, beta, kappa, gamma = (float(v) for v in theta)
    return {"L0": L0, "A": math.exp(log_a), "alpha": alpha, "C": math.exp(log_c),
            "lam": -math.expm1(log_gap), "B": B, "E": math.exp(log_e), "beta": beta,
            "kappa": kappa, "gamma": gamma}  # fmt: skip


def _bounds(
    loss: np.ndarray, kappa_free: bool, gamma_free: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    top = float(loss.max())
    lower = [
        0.0,
        math.log(1e-6),
        1e-3,
        math.log(1e-8),
        math.log(1e-6),
        -top,
        math.log(1e-6),
        1e-2,
        0.0,
        0.0,
    ]
    upper = [top, math.log(1e4), 3.0, math.log(1e8), math.log(0.5), top, math.log(1e8), 10.0, 20.0,
             2.0]  # fmt: skip
    if not kappa_free:
        lower[8], upper[8] = 1.0 - 1e-12, 1.0 + 1e-12
    if not gamma_free:  # G = 1: the paper's form
        lower[9], upper[9] = 0.0, 1e-12
    return np.array(lower), np.array(upper)


def _linear_start(model: _Model, loss: np.ndarray, alpha: float, lam: float, E: float,
                  beta: float, gamma: float = 0.0) -> dict[str, float]:  # fmt: skip
    """L0, A, C, B by weighted least squares (relative residuals) for fixed nonlinear parameters."""
    design = np.column_stack(
        [np.ones_like(loss), model.s1**-alpha, -model.s2(lam), model.shape(E, beta, 1.0, gamma)]
    )
    coef, *_ = np.linalg.lstsq(design / loss[:, None], np.ones_like(loss), rcond=None)
    top = float(loss.max())
    return {"L0": float(np.clip(coef[0], 0.0, top)), "A": float(np.clip(coef[1], 1e-5, 1e3)),
            "alpha": alpha, "C": float(np.clip(coef[2], 1e-7, 1e7)), "lam": lam,
            "B": float(np.clip(coef[3], -top, top)), "E": E, "beta": beta, "kappa": 1.0,
            "gamma": gamma}  # fmt: skip


def _fit_distribution(
    series: list[_Series],
    loss: np.ndarray,
    warmup_steps: int | None,
    *,
    kappa_free: bool,
    n_starts: int,
    gamma_free: bool = False,
    start: Mapping[str, float] | None = None,
    annealing: str = "annealing",
) -> tuple[dict[str, float], float]:
    if annealing == "multi-power":
        from evertrain.laws._cpt_drop import fit_distribution

        return fit_distribution(series, loss, kappa_free=kappa_free, n_starts=n_starts,
                                gamma_free=gamma_free, start=start)  # fmt: skip
    from scipy.optimize import least_squares

    model = _Model(series, warmup_steps)
    lower, upper = _bounds(loss, kappa_free, gamma_free)
    log_loss = np.log(loss)

    def residual(theta: np.ndarray) -> np.ndarray:
        pred = model.predict(theta)
        if not np.all(np.isfinite(pred)) or np.any(pred <= 0):
            return np.full_like(loss, 1.0)
        return log_loss - np.log(pred)

    if start is not None:
        candidates = [np.clip(_theta(start), lower, upper)]
    else:
        stage_area = model.s1_cpt[model.in_stage]
        scale = 1.0 / float(np.median(stage_area)) if len(stage_area) else 1.0
        grid = itertools.product(
            (0.3, 0.5, 0.8), (0.99, 0.999), (0.3, 1.0, 3.0, 10.0), (0.5, 1.0, 2.0),
            (0.0, 0.5, 1.0) if gamma_free else (0.0,),
        )  # fmt: skip
        candidates = []
        for alpha, lam, e_rel, beta, gamma in grid:
            p = _linear_start(model, loss, alpha, lam, e_rel * scale, beta, gamma)
            candidates.append(np.clip(_theta(p), lower, upper))
        candidates.sort(key=lambda th: float(np.sum(_huber(residual(th)))))
        candidates = candidates[:n_starts]
    best = None
    for theta0 in candidates:
        result = least_squares(
            residual, theta0, bounds=(lower, upper), loss="huber", f_scale=HUBER_DELTA,
            x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=400 if start is None else 100,
        )  # fmt: skip
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    return _params(best.x), float(best.cost)


def _huber(residual: np.ndarray) -> np.ndarray:
    magnitude = np.abs(residual)
    return np.where(magnitude <= HUBER_DELTA, 0.5 * residual**2,
                    HUBER_DELTA * (magnitude - 0.5 * HUBER_DELTA))  # fmt: skip


# --------------------------------------------------------------------------------------------
# Goals and recipe specs
# --------------------------------------------------------------------------------------------


def parse_goal(goal: str) -> Any:
    """A goal as ``objective(final_losses, reference) -> (value, feasible)``.

    * ``weighted:W``: minimise ``W L_new + (1 - W) L_old`` (W in [0, 1], the weight of the new data);
    * ``forget:X``: minimise ``L_new`` with ``L_old <= (1 + X/100) L_old(base at the stage start)``
      (``forget:1`` or ``forget:1%``: old-data loss at most +1 %);
    * ``new``: minimise ``L_new`` alone.
    """
    text = str(goal).strip()
    kind, _, value = text.partition(":")
    if kind == "new" and not value:
        return lambda final, ref: (final["new"], True)
    try:
        number = float(value.rstrip("%"))
    except ValueError:
        number = math.nan
    if kind == "weighted" and 0.0 <= number <= 1.0:
        w = number
        return lambda final, ref: (w * final["new"] + (1.0 - w) * final["old"], True)
    if kind == "forget" and number >= 0:
        limit = 1.0 + number / 100.0
        return lambda final, ref: (final["new"], final["old"] <= limit * ref["old"])
    raise LawError(
        f"--goal {goal!r}: use weighted:W (W in [0, 1], the new data's weight), forget:X (new-data "
        "loss with old-data loss at most +X %), or new"
    )


def recipe_spec(
    family: str, peak: float, steps: int, warmup: int, floor_ratio: float
) -> dict[str, Any]:
    """The stage schedule of a searched recipe: ``cosine`` or ``wsd`` (20 % linear decay) from a
    linear re-warm of ``warmup`` steps to ``peak``, down to ``floor_ratio x peak``."""
    if family not in RECIPE_FAMILIES:  # not silently a WSD
        raise LawError(f"schedule family {family!r}: choose from {', '.join(RECIPE_FAMILIES)}")
    floor = float(f"{peak * floor_ratio:.6g}")  # a readable spec: no 0.00030000000000000003
    if family == "cosine":
        return {"name": "cosine", "peak": peak, "total": steps, "warmup": warmup, "floor": floor}
    return {"name": "wsd", "peak": peak, "total": steps, "warmup": warmup,
            "decay_fraction": 0.2, "decay_shape": "linear", "floor": floor}  # fmt: skip


def parse_recipe(text: str, *, default_steps: int | None = None,
                 tokens_per_step: float | None = None) -> Recipe:  # fmt: skip
    """A recipe from ``schedule=SPEC;replay=R;steps=N`` (or ``tokens=T``), or a YAML mapping
    ``{schedule: ..., replay: ..., steps|tokens: ...}`` (a file path or inline YAML)."""
    from evertrain import _yaml

    source = text
    path = Path(text)
    if len(text) < 4096 and path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        source = path.read_text(encoding="utf-8")
    mapping: Any = None
    if "=" in source and "\n" not in source.strip() and not source.lstrip().startswith("{"):
        mapping = {}
        for part in source.split(";"):
            key, sep, value = part.partition("=")
            if not sep:
                raise LawError(f"recipe {text!r}: {part!r} is not name=value")
            mapping[key.strip()] = value.strip()
    else:
        try:
            mapping = _yaml.load(source)
        except ValueError as exc:
            raise LawError(f"recipe {text!r} is neither name=value;... nor YAML ({exc})") from None
    if not isinstance(mapping, dict) or "schedule" not in mapping:
        raise LawError(
            f"recipe {text!r}: give schedule=SPEC;replay=R;steps=N (or tokens=T), e.g. "
            "'schedule=cosine:peak=3e-4,total=2000,warmup=40;replay=0.25;steps=2000'"
        )
    unknown = sorted(set(mapping) - {"schedule", "replay", "steps", "tokens", "name"})
    if unknown:
        raise LawError(
            f"recipe {text!r}: unknown fields {unknown}; use schedule, replay, steps|tokens, name"
        )
    try:
        replay = float(mapping.get("replay", 0.0))
    except (TypeError, ValueError):
        raise LawError(
            f"recipe {text!r}: replay={mapping.get('replay')!r} is not a number"
        ) from None
    schedule = mapping["schedule"]
    steps: Any = mapping.get("steps")
    if steps is None and mapping.get("tokens") is not None:
        if not tokens_per_step:
            raise LawError(
                f"recipe {text!r}: tokens= needs the law's tokens_per_step (not recorded): give steps="
            )
        steps = round(float(mapping["tokens"]) / tokens_per_step)
        origin = "tokens"
    elif steps is None:
        steps = schedule_total(schedule, tokens_per_step=tokens_per_step) or default_steps
        origin = "schedule"
    else:
        origin = "steps"
    try:
        steps = int(float(steps))
    except (TypeError, ValueError):
        raise LawError(f"recipe {text!r}: steps={steps!r} is not a whole number") from None
    if not 0.0 <= replay < 1.0:
        raise LawError(f"recipe {text!r}: replay={replay} must be in [0, 1)")
    if steps < 2:
        source = ""  # say where a too-short length came from
        if origin == "tokens":
            source = f" ({mapping['tokens']} tokens at {tokens_per_step:g} tokens per step)"
        elif origin == "schedule":
            source = " (the schedule's total)"
            if tokens_per_step and getattr(_as_schedule(schedule), "unit", "steps") == "tokens":
                source = f" (the schedule's total in tokens over {tokens_per_step:g} tokens per step)"
        raise LawError(f"recipe {text!r}: steps={steps}{source} must be >= 2: give steps=N or a "
                       "longer schedule")  # fmt: skip
    return Recipe(schedule=schedule, replay=replay, steps=steps, name=str(mapping.get("name", "")))


# --------------------------------------------------------------------------------------------
# Reading runs: evertrain run folders or CSV files
# --------------------------------------------------------------------------------------------


def _eval_table(path: Path) -> tuple[list[int], list[dict[str, float]]]:
    """``(updates, {name: loss})`` of a run folder's eval records (record step S = update S-1)."""
    updates, values = [], []
    for line in (path / "log.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash mid-write
        if (
            isinstance(record, dict)
            and record.get("kind") == "eval"
            and isinstance(record.get("eval"), dict)
        ):
            if int(record.get("step", 0)) >= 1:
                updates.append(int(record["step"]) - 1)
                values.append(
                    {str(k): float(v) for k, v in record["eval"].items() if v is not None}
                )
    return updates, values


def _per_distribution(
    path: Path, names: Mapping[str, list[str]]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    updates, values = _eval_table(path)
    if not updates:
        raise LawError(
            f"run {path}: log.jsonl has no eval records: the cpt law needs eval losses on the old "
            f"({', '.join(names['old'])}) and new ({', '.join(names['new'])}) data (data.eval)"
        )
    out = {}
    for d in DISTRIBUTIONS:
        missing = [n for n in names[d] if not any(n in row for row in values)]
        if missing:
            present = sorted({k for row in values for k in row})
            raise LawError(
                f"run {path}: no eval of {', '.join(missing)} (the {d} data) in log.jsonl (it has "
                f"{', '.join(present) or 'none'}): evaluate on both distributions, or name them "
                "with --old/--new"
            )
        out[d] = [float(np.mean([row[n] for n in names[d]])) if all(n in row for n in names[d])
                  else math.nan for row in values]  # fmt: skip
    keep = np.array(
        [all(math.isfinite(out[d][i]) for d in DISTRIBUTIONS) for i in range(len(updates))]
    )
    steps = np.asarray(updates, dtype=np.int64)[keep]
    order = np.unique(steps, return_index=True)[
        1
    ]  # a resumed run may repeat an eval: keep the first
    return steps[order], {d: np.asarray(out[d])[keep][order] for d in DISTRIBUTIONS}


def _continual_meta(path: Path) -> dict[str, Any]:
    meta = path / "continual.json"
    if not meta.is_file():
        return {}
    try:
        payload = json.loads(meta.read_text())
    except json.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}


def run_provenance(path: str | Path) -> dict[str, Any]:
    """What an evertrain run folder records of its data and its start, as :attr:`CPTLaw.fitted_on`
    compares it: ``old`` / ``new`` (its ``continual.json`` names), ``data`` (eval name -> its
    validation shards' sha256), ``init_from`` (the checkpoint it started from), ``offset_tokens``
    and ``base_fingerprint`` (the inputs hash of the run folder that checkpoint lies in). Absent
    records are empty or None."""
    path = Path(path)
    meta = _continual_meta(path)
    inputs = meta.get("inputs") if isinstance(meta.get("inputs"), dict) else {}
    evals = (inputs.get("data") or {}).get("eval") or {}
    data = {str(name): str(entry["shards_sha256"]["val"]) for name, entry in evals.items()
            if isinstance(entry, dict) and (entry.get("shards_sha256") or {}).get("val")}  # fmt: skip
    config = inputs.get("config") if isinstance(inputs.get("config"), dict) else None
    if config is None:
        from evertrain import _yaml

        try:
            config = _yaml.load((path / "config.yaml").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = None
    start = config.get("init_from") if isinstance(config, dict) else None
    fingerprint = None
    for folder in list(Path(start).parents)[:2] if start else []:  # RUN/checkpoints/NAME
        if (folder / "continual.json").is_file():
            fingerprint = _continual_meta(folder).get("fingerprint")
            break
    return {
        "old": list(meta.get("old") or []),
        "new": list(meta.get("new") or []),
        "data": data,
        "init_from": str(start) if start else None,
        "offset_tokens": meta.get("offset_tokens"),
        "base_fingerprint": fingerprint,
    }


def _check_branched_from(path: Path, start: str | None, base: Path) -> None:
    """A run that started from a checkpoint of another run folder than ``base`` would be fitted
    against the wrong base curve: an error naming both (unchecked where the checkpoint moved)."""
    if start is None or not Path(start).exists():
        return
    start_path, base_path = Path(start).resolve(), base.resolve()
    if base_path != start_path and base_path not in start_path.parents:
        raise LawError(
            f"run {path} continued from {start}, not from the base run {base} given first: give "
            "the base run it branched from"
        )


def _fitted_on(base: Path, runs: Sequence[Mapping[str, Any]],
               names: Mapping[str, list[str]]) -> dict[str, Any]:  # fmt: skip
    """What a law fitted on run folders of these provenances is fitted on
    (:attr:`BaseRun.fitted_on`)."""
    data: dict[str, str] = {}
    for run in runs:
        for name in [*names["old"], *names["new"]]:
            sha = run["data"].get(name)
            if sha and data.setdefault(name, sha) != sha:
                raise LawError(
                    f"the runs' {name} validation shards differ (sha256 {data[name][:12]} and "
                    f"{sha[:12]}): one law is fitted on one tokenized dataset, so fit the runs "
                    "of each apart"
                )
    offsets = sorted({int(r["offset_tokens"]) for r in runs if r["offset_tokens"] is not None})
    return {
        "old": list(names["old"]),
        "new": list(names["new"]),
        "data": data,
        "base": {"name": base.name, "fingerprint": _continual_meta(base).get("fingerprint")},
        "offset_tokens": offsets[0] if len(offsets) == 1 else None,
    }


def _replay_ratio(path: Path, old: list[str]) -> float:
    """The share of the stage's sampling weight on the old data (``data.mixture`` of the config)."""
    from evertrain import _yaml

    config = _yaml.load((path / "config.yaml").read_text(encoding="utf-8"))
    data = config.get("data") if isinstance(config, dict) else None
    train = dict((data or {}).get("train") or {})
    mixture = (data or {}).get("mixture") or {name: 1.0 for name in train}
    weights = {}
    for name in train:
        weight = mixture.get(name, 0.0)
        if not isinstance(weight, int | float) or isinstance(weight, bool):
            raise LawError(
                f"run {path}: data.mixture[{name!r}] is a schedule ({weight!r}); the cpt law needs "
                "a constant replay ratio: give it with --replay"
            )
        weights[name] = float(weight)
    total = sum(weights.values())
    if total <= 0:
        raise LawError(
            f"run {path}: data.mixture has no positive weight: give the replay with --replay"
        )
    return sum(w for n, w in weights.items() if n in old) / total


def _tokens_per_step(path: Path) -> float | None:
    from evertrain.laws.logs import read_log

    table = read_log(path)
    if table.tokens is None:
        return None
    ok = np.isfinite(table.tokens) & (table.steps >= 0)
    if not ok.any():
        return None
    return float(table.tokens[ok][-1] / (table.steps[ok][-1] + 1.0))


def _folder_lr(path: Path) -> np.ndarray:
    from evertrain.laws.logs import load_log_curve

    curve, _ = load_log_curve(path)
    return curve.lr


def read_cpt_runs(
    base: str | Path,
    runs: Sequence[str | Path],
    *,
    old: Sequence[str] | None = None,
    new: Sequence[str] | None = None,
    replay: Sequence[float] | None = None,
) -> tuple[BaseRun, list[ContinualRun]]:
    """The base run and continual runs as the law's inputs, from evertrain run folders (eval
    records per distribution in ``log.jsonl``; old/new data names and the start in the base from
    ``continual.json``; the replay ratio from ``data.mixture``) or CSV files with columns
    ``step, lr, loss_old, loss_new`` (every step's LR; ``replay`` given per continual run).
    A continual run without ``continual.json`` starts at the base's last update."""
    base_path = Path(base)
    paths = [Path(p) for p in runs]
    if not paths:
        raise LawError("give one or more continual runs after the base run (the first RUN)")
    if replay is not None and len(replay) not in (0, len(paths)):
        raise LawError(
            f"--replay given {len(replay)} times for {len(paths)} continual runs: once per run"
        )
    for path in [base_path, *paths]:
        if not path.exists():
            raise LawError(f"run {path} does not exist")
    if all(p.is_file() and p.suffix.lower() in (".csv", ".tsv") for p in [base_path, *paths]):
        if not replay:
            raise LawError(
                "CSV continual runs record no replay ratio: give --replay R once per run"
            )
        return _read_csv_runs(base_path, paths, list(replay))
    for path in [base_path, *paths]:
        if not (path.is_dir() and (path / "log.jsonl").is_file()):
            raise LawError(
                f"run {path} is not an evertrain run folder (no log.jsonl): give run folders, or "
                "CSV files (step, lr, loss_old, loss_new) for every run"
            )
    provenances = [run_provenance(p) for p in paths]  # each run's continual.json, read once
    names = {
        "old": list(old or next((p["old"] for p in provenances if p["old"]), [])),
        "new": list(new or next((p["new"] for p in provenances if p["new"]), [])),
    }
    for d in DISTRIBUTIONS:
        if not names[d]:
            raise LawError(
                f"no {d}-data name: the runs have no continual.json naming it; give --{d} NAME "
                "(an eval name of data.eval)"
            )
    if old is None and new is None:  # names read from the runs: one law is one shift
        for path, provenance in zip(paths, provenances, strict=True):
            for d in DISTRIBUTIONS:
                if provenance[d] and provenance[d] != names[d]:
                    raise LawError(
                        f"run {path} continues on {d} data {', '.join(provenance[d])}, the other runs "
                        f"on {', '.join(names[d])}: fit one law per shift (or name the data "
                        "with --old/--new)"
                    )
    for path, provenance in zip(paths, provenances, strict=True):
        _check_branched_from(path, provenance["init_from"], base_path)
    tokens_per_step = _tokens_per_step(base_path)
    base_steps, base_loss = _per_distribution(base_path, names)
    base_lr = _folder_lr(base_path)
    base_run = BaseRun(base_path.name, base_lr, base_steps, base_loss, tokens_per_step,
                       fitted_on=_fitted_on(base_path, provenances, names))  # fmt: skip
    out = []
    for index, (path, provenance) in enumerate(zip(paths, provenances, strict=True)):
        steps, loss = _per_distribution(path, names)
        ratio = float(replay[index]) if replay else _replay_ratio(path, names["old"])
        if provenance["offset_tokens"] is not None and tokens_per_step:
            offset = round(float(provenance["offset_tokens"]) / tokens_per_step)
        else:
            offset = len(base_lr)
        out.append(ContinualRun(path.name, _folder_lr(path), ratio, offset, steps, loss))
    return base_run, out


def _read_csv_runs(
    base: Path, paths: list[Path], replay: list[float]
) -> tuple[BaseRun, list[ContinualRun]]:
    import csv

    def table(path: Path) -> dict[str, np.ndarray]:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines(),
                                   delimiter="\t" if path.suffix.lower() == ".tsv" else ","))  # fmt: skip
        need = ("step", "lr", "loss_old", "loss_new")
        if not rows or any(c not in rows[0] for c in need):
            have = ", ".join(rows[0]) if rows else "no rows"
            raise LawError(f"run {path}: a cpt CSV needs columns {', '.join(need)} (it has {have})")
        columns = {}
        for c in need:
            try:
                columns[c] = np.array(
                    [float(r[c]) if r[c] not in ("", None) else math.nan for r in rows]
                )
            except ValueError as exc:
                raise LawError(f"run {path}: column {c!r}: {exc}") from None
        return columns

    def curve(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        cols = table(path)
        steps = cols["step"].astype(np.int64)
        if not np.array_equal(steps, np.arange(len(steps))) or np.isnan(cols["lr"]).any():
            raise LawError(
                f"run {path}: a cpt CSV gives the LR of every update 0, 1, 2, ... in column lr "
                "(leave loss_old/loss_new empty where not evaluated)"
            )
        has = np.isfinite(cols["loss_old"]) & np.isfinite(cols["loss_new"])
        if not has.any():
            raise LawError(
                f"run {path}: no row has both loss_old and loss_new (per-distribution eval)"
            )
        return cols["lr"], steps[has], {"old": cols["loss_old"][has], "new": cols["loss_new"][has]}

    lr, steps, loss = curve(base)
    base_run = BaseRun(base.stem, lr, steps, loss)
    out = []
    for path, ratio in zip(paths, replay, strict=True):
        stage_lr, stage_steps, stage_loss = curve(path)
        out.append(
            ContinualRun(path.stem, stage_lr, float(ratio), len(lr), stage_steps, stage_loss)
        )
    return base_run, out
