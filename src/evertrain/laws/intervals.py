"""Prediction bands for every law: a moving-block bootstrap of the fit's log residuals.

Method (the same for the multi-power, annealing and CPT laws):

1. fit the law; keep each fitted curve's log residuals ``e_i = log loss_i - log pred_i``;
2. draw ``n`` resampled data sets: each curve's residual series is rebuilt from circular blocks of
   ``block`` consecutive residuals (default ``ceil(n_points^(1/3))`` per curve), so the
   autocorrelation of a loss curve's noise within a block is kept, and added back to the fitted
   curve (``loss* = pred exp(e*)``);
3. refit the law on each resampled set, starting from the fitted parameters (a local refit);
4. a band at level ``q`` for a new schedule is the ``(1-q)/2, (1+q)/2`` quantiles, over
   resamples ``b`` and pooled residuals ``e``, of ``pred_b(t) exp(e)``: parameter uncertainty
   (the refits) plus the scatter of one measured point (the residuals) -- a *prediction* band
   for measured losses, not only a confidence band for the mean curve (``kind="confidence"``
   leaves the residuals out).

What it does not cover: the law's own misspecification on a schedule unlike the fitted ones
(the residuals of the fit are all it sees), so held-out coverage can fall below nominal when
the law extrapolates. The cost is ``n`` local refits at fit time; bands are only drawn when asked
(``bootstrap=0`` is the default, so a plain fit stays as fast as before).

The CPT law adds a **model-discrepancy term** estimated by leave-one-run-out cross-validation
(the CV+ / jackknife+ idea of conformal prediction, Barber et al. 2021, with locally weighted
scores, Lei et al. 2018): when it is fitted on two or more continual runs, each run is held out
in turn, the law is refitted on the base and the other runs, and the held-out run's log residuals
``e = log loss - log pred_{-j}`` are kept. They measure what the in-sample residuals cannot: the
law's error on a recipe the fit never saw (noise, parameter error and misspecification
together). Each is scored against the error the fold itself expects there,
``s(x) = sqrt(sd_b(log pred_b(x))^2 + sigma^2)`` (the spread of a small bootstrap of the fold at
the held-out points, which grows along the stage and where the fold extrapolates, with its
residual sd ``sigma``): ``score = |e| / s(x)``, about a standard normal's size when the law is
right, larger when it is not. A band at level ``q`` is then, on each side, the wider of the
bootstrap band and ``pred x exp(+-Q s(x))``, ``s`` now the full law's scale at the new recipe's
points and ``Q`` the conformal quantile (rank ``ceil((n+1) q)`` of the ``n`` scores). Scores
calibrate only cases like the ones they were measured on: for a recipe inside the fitted peaks
and replay ratios, ``Q`` is taken over the folds that interpolated too (their held-out run inside
the fold's own ranges, ``"extrapolated"`` lists the others) and fitted the full law's parameters
(a fold that lost the only run at another peak holds ``gamma`` at its default: a smaller law's
error, ``"reduced"``); failing those, the folds that fitted the full law's parameters; failing
those, all folds (a recipe outside the ranges always takes all). It stays an estimate from the fitted runs: a recipe that
differs from all of them more than they differ from each other (another peak when all share
one) can still be missed, and one continual run leaves nothing to hold out (bootstrap band only,
recorded in the law's ``bootstrap["band"]``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from evertrain.laws.curves import LawError, LossCurve

if TYPE_CHECKING:
    from evertrain.laws.base import Law
    from evertrain.laws.cpt import CPTLaw, Recipe

#: pooled residual quantiles kept in a fit JSON (enough for 90-99 % bands, small on disk)
RESIDUAL_QUANTILES = 101
DEFAULT_LEVEL = 0.9


@dataclass
class Band:
    """A point prediction with its band at ``level``."""

    pred: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float


def default_block(n_points: int) -> int:
    """The block length of the moving-block bootstrap: ``ceil(n^(1/3))`` (Hall et al. 1995)."""
    return max(1, math.ceil(n_points ** (1.0 / 3.0)))


def block_resample(residuals: np.ndarray, block: int, rng: np.random.Generator) -> np.ndarray:
    """A circular moving-block resample of one curve's residual series (same length)."""
    n = len(residuals)
    block = max(1, min(block, n))
    starts = rng.integers(0, n, size=math.ceil(n / block))
    index = (starts[:, None] + np.arange(block)[None, :]).ravel()[:n] % n
    return residuals[index]


def check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise LawError(f"interval level {level:g} must be in (0, 1), e.g. 0.9 for a 90 % band")
    return level


def pooled_quantiles(residuals: Sequence[np.ndarray]) -> list[float]:
    """The pooled log residuals as ``RESIDUAL_QUANTILES`` evenly spaced quantiles."""
    pooled = np.concatenate([np.asarray(r, dtype=np.float64) for r in residuals])
    return np.quantile(pooled, np.linspace(0.0, 1.0, RESIDUAL_QUANTILES)).tolist()


def bootstrap_record(n: int, blocks: Any, seed: int, draws: Any, quantiles: Any) -> dict[str, Any]:
    """What a law keeps of its moving-block bootstrap (``law.bootstrap``): one shape for every
    law, so bands are read back the same way."""
    return {
        "method": "moving-block residual bootstrap, local refits",
        "n": n,
        "block": blocks,
        "seed": seed,
        "params": draws,
        "residual_quantiles": quantiles,
    }


def log_draws(draws: np.ndarray) -> np.ndarray:
    """``log(draws)``, NaN where a resample predicts a loss that is not positive and finite:
    a refit far from its data (a leave-one-run-out fold extrapolating a replay ratio) can put
    the loss below zero, which a band in log space cannot hold; such a draw is left out at
    that point instead of turning the whole band into NaN."""
    draws = np.asarray(draws, dtype=np.float64)
    valid = np.isfinite(draws) & (draws > 0)
    return np.where(valid, np.log(np.where(valid, draws, 1.0)), np.nan)


def band_from_draws(
    draws: np.ndarray, residual_quantiles: Sequence[float] | None, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper band from ``draws`` (resamples x points) and pooled residual quantiles
    (``None``: a confidence band of the curve itself). Resamples predicting a non-positive loss
    are left out where they do (with a warning naming how many); at a point where every one
    does the band is unknown, ``[0, inf)``, never NaN."""
    level = check_level(level)
    logs = log_draws(draws)
    invalid = ~np.isfinite(logs)
    unknown = invalid.all(axis=0)
    if invalid.any():
        warnings.warn(
            f"{int(invalid.any(axis=1).sum())} of {len(logs)} bootstrap resamples predict a "
            "non-positive loss somewhere on this curve (a refit far from its data); the band "
            f"leaves them out there{'' if not unknown.any() else ' and is unbounded where all do'}"
            "; fit on runs nearer to this curve for a tighter band",
            stacklevel=2,
        )
    logs = np.where(unknown, 0.0, logs)  # filled, then set to [0, inf) below
    if residual_quantiles is not None and len(residual_quantiles):
        noise = np.asarray(residual_quantiles, dtype=np.float64)
        logs = (logs[:, None, :] + noise[None, :, None]).reshape(-1, logs.shape[1])
    tail = (1.0 - level) / 2.0
    lower, upper = np.nanquantile(logs, [tail, 1.0 - tail], axis=0)
    return np.where(unknown, 0.0, np.exp(lower)), np.where(unknown, np.inf, np.exp(upper))


# --------------------------------------------------------------------------------------------
# Single-curve laws (multi-power, annealing)
# --------------------------------------------------------------------------------------------


def bootstrap_law(
    law: Law,
    curves: Sequence[LossCurve],
    *,
    n: int = 100,
    block: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """``n`` block-bootstrap refits of a fitted ``law`` on ``curves``: what a fit JSON keeps
    under ``"bootstrap"`` for :func:`law_band`."""
    if n < 2:
        raise LawError(f"bootstrap={n}: give at least 2 resamples (100-200 for a 90 % band)")
    params = law._require_params()
    rng = np.random.default_rng(seed)
    fitted = [law.predict_lr(c.lr, c.steps) for c in curves]
    residuals = [np.log(c.loss) - np.log(p) for c, p in zip(curves, fitted, strict=True)]
    blocks = [block or default_block(len(r)) for r in residuals]
    refit = law.refitter(list(curves))
    draws = []
    for _ in range(n):
        loss = np.concatenate(
            [
                p * np.exp(block_resample(r, b, rng))
                for p, r, b in zip(fitted, residuals, blocks, strict=True)
            ]
        )
        draws.append(refit(loss, params))
    return bootstrap_record(n, blocks, seed, draws, pooled_quantiles(residuals))


def law_band(
    law: Law,
    lr: np.ndarray,
    steps: np.ndarray,
    level: float = DEFAULT_LEVEL,
    *,
    kind: str = "prediction",
) -> Band:
    """The point prediction of ``law`` on a per-step LR with its bootstrap band."""
    boot = getattr(law, "bootstrap", None)
    if not boot or not boot.get("params"):
        raise LawError(
            f"the {law.name} law has no bootstrap resamples: fit it with bootstrap=N "
            "(`evertrain law fit ... --bootstrap 200`) to get bands"
        )
    if kind not in ("prediction", "confidence"):
        raise LawError(f"kind={kind!r} must be 'prediction' or 'confidence'")
    pred = law.predict_lr(lr, steps)
    draws = np.array([law.predict_lr(lr, steps, p) for p in boot["params"]])
    noise = boot.get("residual_quantiles") if kind == "prediction" else None
    lower, upper = band_from_draws(draws, noise, level)
    return Band(
        pred=pred, lower=np.minimum(lower, pred), upper=np.maximum(upper, pred), level=level
    )


def coverage(band: Band, loss: np.ndarray) -> float:
    """Share of measured losses inside the band."""
    loss = np.asarray(loss, dtype=np.float64)
    return float(np.mean((loss >= band.lower) & (loss <= band.upper)))


# --------------------------------------------------------------------------------------------
# The CPT law
# --------------------------------------------------------------------------------------------


def bootstrap_cpt(
    law: CPTLaw,
    series: Sequence[Any],
    losses: Sequence[Mapping[str, np.ndarray]],
    *,
    n: int = 100,
    block: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """``n`` block-bootstrap refits of each distribution of a fitted CPT law (the residuals of
    every run, base included, resampled within that run)."""
    from evertrain.laws.cpt import DISTRIBUTIONS, _fit_distribution, _series_predict

    if n < 2:
        raise LawError(f"bootstrap={n}: give at least 2 resamples (100-200 for a 90 % band)")
    assert law.params is not None
    rng = np.random.default_rng(seed)
    draws: list[dict[str, dict[str, float]]] = [{} for _ in range(n)]
    quantiles = {}
    blocks = [block or default_block(len(s.points)) for s in series]
    for d in DISTRIBUTIONS:
        fitted = [_series_predict(s, law.params[d], law.warmup_steps) for s in series]
        residuals = [np.log(loss[d]) - np.log(p) for loss, p in zip(losses, fitted, strict=True)]
        quantiles[d] = pooled_quantiles(residuals)
        for b in range(n):
            loss = np.concatenate(
                [
                    p * np.exp(block_resample(r, k, rng))
                    for p, r, k in zip(fitted, residuals, blocks, strict=True)
                ]
            )
            params, _ = _fit_distribution(
                list(series), loss, law.warmup_steps, kappa_free=law.kappa_fitted, n_starts=1,
                gamma_free=law.gamma_fitted, start=law.params[d], annealing=law.annealing,
            )  # fmt: skip
            draws[b][d] = params
    return bootstrap_record(n, blocks, seed, draws, quantiles)


#: how a CPT band is made, recorded in the law's ``bootstrap["band"]``
BAND_BOOTSTRAP_ONLY = (
    "bootstrap (parameters + residual noise); one continual run: no cross-validation"
)
BAND_WITH_CV = (
    "bootstrap (parameters + residual noise), widened to the leave-one-run-out discrepancy"
)


def conformal_quantile(scores: Sequence[float] | np.ndarray, level: float) -> float:
    """The split-conformal quantile of absolute scores: the ``ceil((n + 1) level)``-th smallest
    of ``n`` (the largest when that rank exceeds ``n``: too few scores for the level)."""
    level = check_level(level)
    ordered = np.sort(np.abs(np.asarray(scores, dtype=np.float64)))
    if len(ordered) == 0:
        raise LawError("no cross-validated residuals to take a quantile of")
    if not np.isfinite(ordered).all():
        # a NaN sorts last and would become the band's width unseen
        raise LawError("a cross-validated score is not finite: refit the law (a bug if it repeats)")
    rank = math.ceil((len(ordered) + 1) * level)
    return float(ordered[min(rank, len(ordered)) - 1])


def _log_scale(draws: np.ndarray, noise: float) -> np.ndarray:
    """The local scale of a CPT prediction's error in log space: the bootstrap spread of the
    predicted curve (grows where the law extrapolates, and along the stage) with the fit's
    residual noise as its floor. Resamples predicting a non-positive loss are left out where
    they do (:func:`log_draws`); a point with fewer than two left has no measurable spread,
    and its scale is infinite (unknown), never NaN."""
    logs = log_draws(draws)
    valid = np.isfinite(logs)
    count = valid.sum(axis=0)
    filled = np.where(valid, logs, 0.0)
    mean = filled.sum(axis=0) / np.maximum(count, 1)
    variance = (np.where(valid, logs - mean, 0.0) ** 2).sum(axis=0) / np.maximum(count, 1)
    return np.where(count >= 2, np.sqrt(variance + noise**2), np.inf)


def _draws(law: CPTLaw, recipe: Recipe, steps: np.ndarray, stage_lr: np.ndarray) -> list[Any]:
    assert law.bootstrap is not None
    return [law.predict_with(p, recipe, steps, stage_lr) for p in law.bootstrap["params"]]


def cross_validate_cpt(
    law: CPTLaw,
    base: Any,
    runs: Sequence[Any],
    *,
    n_starts: int | None = None,
    n_bootstrap: int = 20,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Leave-one-run-out residuals of a CPT law fitted (with its bootstrap) on ``base`` and
    ``runs``: each continual run predicted by the law refitted from scratch (same options) on
    the base and the other runs, with ``n_bootstrap`` local bootstrap refits of that fold. Kept:
    the log residuals and the conformal scores ``|residual| / scale``, ``scale`` the fold's own
    :func:`_log_scale` at the held-out run's points (its parameter spread there and its
    residual noise), so a correctly specified law scores like a standard normal and only the
    error its own uncertainty does not explain widens the band. ``None`` with fewer than two
    continual runs (nothing can be held out)."""
    from evertrain.laws.cpt import DISTRIBUTIONS, CPTLaw, Recipe

    if len(runs) < 2:
        return None
    assert law.fit_report
    residuals: dict[str, dict[str, list[float]]] = {d: {} for d in DISTRIBUTIONS}
    scores: dict[str, dict[str, list[float]]] = {d: {} for d in DISTRIBUTIONS}
    reduced: dict[str, str] = {}
    extrapolated: dict[str, list[str]] = {}
    unscored: dict[str, dict[str, int]] = {}
    for index, held in enumerate(runs):
        others = [run for run in runs if run is not held]
        fold = CPTLaw(
            warmup_steps=law.warmup_steps, tokens_per_step=law.tokens_per_step,
            annealing=law.annealing,
        )  # fmt: skip
        fold.fit(base, others, n_starts=n_starts)
        fixed = _fixed_by_fold(law, fold)
        if fixed:
            reduced[held.name] = fixed
        series, losses, _ = fold._series(base, others)
        fold.bootstrap = bootstrap_cpt(fold, series, losses, n=n_bootstrap, seed=seed + 1 + index)
        recipe = Recipe(held.lr, held.replay, len(held.lr), name=held.name)
        stage_lr = np.asarray(held.lr, dtype=np.float64)
        outside = fold.extrapolation(recipe, stage_lr)
        if outside:
            extrapolated[held.name] = outside
        with warnings.catch_warnings():
            # a fold of one replay ratio predicting another: expected here, said in the docs
            warnings.simplefilter("ignore")
            pred = fold.predict(recipe, steps=held.steps, warn=False)
        draws = _draws(fold, recipe, held.steps, stage_lr)
        for d in DISTRIBUTIONS:
            error = np.log(held.loss[d]) - np.log(pred.loss[d])
            scale = _log_scale(np.array([row[d] for row in draws]), _noise(fold, d))
            residuals[d][held.name] = [float(e) if np.isfinite(e) else None for e in error]
            # a point where the fold's spread is unknown (infinite) says nothing about the
            # law's error in units of it: left unscored, and counted
            scored = np.isfinite(scale) & np.isfinite(error)
            scores[d][held.name] = (np.abs(error[scored]) / scale[scored]).tolist()
            if not scored.all():
                unscored.setdefault(d, {})[held.name] = int((~scored).sum())
    return {
        "method": "leave-one-run-out refits (base always kept), scores |residual| / fold's scale",
        "held_out": [run.name for run in runs],
        # folds that had to fix a parameter the full law fits, and folds whose held-out run lies
        # outside their own fitted ranges: kept, and chosen among by cv_scores
        "reduced": reduced,
        "extrapolated": extrapolated,
        "fold_bootstrap": n_bootstrap,
        # points of a held-out run where fewer than two of the fold's resamples predicted a
        # positive loss (no spread to score against), per distribution and run
        "unscored": unscored,
        "noise": {d: _noise(law, d) for d in DISTRIBUTIONS},
        "residuals": residuals,
        "scores": scores,
    }


def _noise(law: CPTLaw, d: str) -> float:
    """The sd of a fitted CPT law's log residuals on distribution ``d`` (all its points)."""
    report = law.fit_report["per_distribution"][d]["residuals"]
    return float(np.std(np.concatenate([np.asarray(r, dtype=np.float64) for r in report.values()])))


def _fixed_by_fold(law: CPTLaw, fold: CPTLaw) -> str:
    """What a leave-one-run-out fold had to hold fixed that the full law fits ('' if nothing):
    holding out the only run at another peak fixes ``gamma``, the last run at another replay
    ratio fixes ``kappa``."""
    fixed = [
        f"{name} (its runs share one {axis})"
        for name, axis, full, part in (
            ("gamma", "peak", law.gamma_fitted, fold.gamma_fitted),
            ("kappa", "replay ratio", law.kappa_fitted, fold.kappa_fitted),
        )
        if full and not part
    ]
    return "fixes " + " and ".join(fixed) if fixed else ""


def cv_scores(cv: Mapping[str, Any], d: str, *, interpolating: bool = True) -> list[float]:
    """The scores the band's quantile is taken over. Conformal scores calibrate a band only for
    cases like the ones they were measured on, so for a recipe inside the law's fitted ranges
    (``interpolating``) they are those of the folds that also interpolated -- their held-out run
    inside the fold's own fitted peaks and replay ratios (not ``cv["extrapolated"]``) -- with
    the same parameters fitted as the full law (not ``cv["reduced"]``: holding out the only run
    at another peak leaves ``gamma`` at its default, a smaller law's error). When no fold is
    such a fold (three runs that span the axes: each one held out is an extreme), the folds
    that fit the full law's parameters, and failing those, every fold: then the band is
    knowingly conservative. A recipe outside the fitted ranges takes every fold's scores."""
    names = [name for name in cv["scores"][d] if cv["scores"][d][name]]  # a fold left unscored
    kept = names
    if interpolating:
        reduced = cv.get("reduced") or {}
        extrapolated = cv.get("extrapolated") or {}
        full = [name for name in names if name not in reduced]
        kept = [name for name in full if name not in extrapolated] or full or names
    return [e for name in kept for e in cv["scores"][d][name]]


def cv_quantile(law: CPTLaw, d: str, level: float, *, interpolating: bool = True) -> float | None:
    """The conformal quantile ``Q`` of distribution ``d``'s cross-validated scores (None when
    the law has none): its band reaches ``Q x scale`` in log space on each side; the scores
    are :func:`cv_scores`' for a recipe inside (``interpolating``) or outside the fitted ranges."""
    cv = (law.bootstrap or {}).get("cross_validation")
    scores = cv_scores(cv, d, interpolating=interpolating) if cv else []
    return conformal_quantile(scores, level) if scores else None


def cpt_band(
    law: CPTLaw, recipe: Recipe, steps: np.ndarray, stage_lr: np.ndarray, level: float
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Lower and upper prediction bands of both distributions for ``recipe`` at ``steps``: the
    bootstrap band, widened on each side to ``pred x exp(+-Q x scale)`` when the law kept
    leave-one-run-out scores (see the module docstring)."""
    from evertrain.laws.cpt import DISTRIBUTIONS

    boot = law.bootstrap
    if not boot or not boot.get("params"):
        raise LawError(
            "the cpt law has no bootstrap resamples: fit it with --bootstrap N (e.g. 100) to get bands"
        )
    point = law.predict_with(law._require(), recipe, steps, stage_lr)
    per_draw = _draws(law, recipe, steps, stage_lr)
    interpolating = not law.extrapolation(recipe, stage_lr)
    lower, upper = {}, {}
    for d in DISTRIBUTIONS:
        draws = np.array([row[d] for row in per_draw])
        low, high = band_from_draws(draws, boot["residual_quantiles"][d], level)
        lower[d], upper[d] = np.minimum(low, point[d]), np.maximum(high, point[d])
        quantile = cv_quantile(law, d, level, interpolating=interpolating)
        if quantile is not None:
            halfwidth = quantile * _log_scale(draws, boot["cross_validation"]["noise"][d])
            lower[d] = np.minimum(lower[d], point[d] * np.exp(-halfwidth))
            upper[d] = np.maximum(upper[d], point[d] * np.exp(halfwidth))
    return lower, upper
