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
"""

from __future__ import annotations

import math
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


def band_from_draws(
    draws: np.ndarray, residual_quantiles: Sequence[float] | None, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper band from ``draws`` (resamples x points) and pooled residual quantiles
    (``None``: a confidence band of the curve itself)."""
    level = check_level(level)
    log_draws = np.log(np.asarray(draws, dtype=np.float64))
    if residual_quantiles is not None and len(residual_quantiles):
        noise = np.asarray(residual_quantiles, dtype=np.float64)
        log_draws = (log_draws[:, None, :] + noise[None, :, None]).reshape(-1, log_draws.shape[1])
    tail = (1.0 - level) / 2.0
    lower, upper = np.quantile(log_draws, [tail, 1.0 - tail], axis=0)
    return np.exp(lower), np.exp(upper)


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
    return {
        "method": "moving-block residual bootstrap, local refits",
        "n": n,
        "block": blocks,
        "seed": seed,
        "params": draws,
        "residual_quantiles": pooled_quantiles(residuals),
    }


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
                start=law.params[d],
            )  # fmt: skip
            draws[b][d] = params
    return {
        "method": "moving-block residual bootstrap, local refits",
        "n": n,
        "block": blocks,
        "seed": seed,
        "params": draws,
        "residual_quantiles": quantiles,
    }


def cpt_band(
    law: CPTLaw, recipe: Recipe, steps: np.ndarray, stage_lr: np.ndarray, level: float
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Lower and upper prediction bands of both distributions for ``recipe`` at ``steps``."""
    from evertrain.laws.cpt import DISTRIBUTIONS

    boot = law.bootstrap
    if not boot or not boot.get("params"):
        raise LawError(
            "the cpt law has no bootstrap resamples: fit it with --bootstrap N (e.g. 100) to get bands"
        )
    point = law.predict_with(law._require(), recipe, steps, stage_lr)
    per_draw = [law.predict_with(p, recipe, steps, stage_lr) for p in boot["params"]]
    lower, upper = {}, {}
    for d in DISTRIBUTIONS:
        draws = np.array([row[d] for row in per_draw])
        low, high = band_from_draws(draws, boot["residual_quantiles"][d], level)
        lower[d], upper[d] = np.minimum(low, point[d]), np.maximum(high, point[d])
    return lower, upper
