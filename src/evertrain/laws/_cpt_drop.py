"""The CPT law with the multi-power law's loss-drop term in place of the annealing law's ``C S2``.

``CPTLaw(annealing="multi-power")``: per distribution::

    L(t) = L0 + A S1(t)^(-alpha) - LD(t) + (the shift term of :mod:`evertrain.laws.cpt`)
    LD(t) = B_drop sum_k (eta_{k-1} - eta_k) [1 - (C_drop eta_k^(-gamma_drop) S_k(t) + 1)^(-beta_drop)]

over the whole LR history (base, then stage), ``S_k(t)`` the LR area from update ``k`` to ``t``
(Luo et al. 2025, :mod:`evertrain.laws.mpl`; the warmup enters as is, as there). Why: the
annealing law's ``S2`` credits an LR drop in full a few dozen updates after it (its momentum
``lambda``), whatever LR follows; the multi-power law credits it as the LR area after it grows,
so a short WSD cool-down from a high peak gains less than a cosine's long one, and a re-warm's
rise costs loss until the area after it has grown. On the CPT benchmark's grid this is where the
annealing-law form misses most (WSD at the high peak, both distributions; ``docs/laws.md``).

The fit is the annealing form's: Huber loss of log residuals; the law is linear in
``L0, A, B_drop, B`` given the rest, so a grid of the nonlinear parameters is screened by
weighted least squares and the best starts are refined by bounded trust-region least squares,
here with the analytic Jacobian (the loss-drop sums and their derivatives come from
:mod:`evertrain.laws._ld` over (point, LR change) pairs built once per fit).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evertrain.laws._ld import LDPairs, coarse_pairs, exact_pairs, ld_sum, ld_sum_and_grads
from evertrain.laws.base import HUBER_DELTA
from evertrain.laws.cpt import _huber, _ShiftData  # cpt imports this module only when called

#: the loss-drop parameters this form has instead of the annealing law's ``C`` and ``lam``
DROP_PARAMS = ("B_drop", "C_drop", "beta_drop", "gamma_drop")
PARAM_NAMES = ("L0", "A", "alpha", *DROP_PARAMS, "B", "E", "beta", "kappa", "gamma")


def drop_power(lr: np.ndarray, points: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
    """``L0 + A S1^-alpha - LD`` at global updates ``points`` of the LR history ``lr``."""
    lr = np.asarray(lr, dtype=np.float64)
    points = np.asarray(points, dtype=np.int64)
    s1 = np.cumsum(lr)[points]
    with np.errstate(divide="ignore"):
        power = params["A"] * s1 ** -params["alpha"]
    ld = ld_sum(exact_pairs(lr, points), params["C_drop"], params["beta_drop"],
                params["gamma_drop"])  # fmt: skip
    return params["L0"] + power - params["B_drop"] * ld


class DropModel(_ShiftData):
    """One distribution's law over fixed series (``_Series`` of :mod:`evertrain.laws.cpt`):
    the pairs of every series built once, predictions and their Jacobian in ``theta``.
    ``coarse``: LR changes far from a point merged into buckets (:func:`coarse_pairs`), ~6x
    fewer pairs; on the CPT benchmark's runs the loss drop moves by at most 6e-5 of the loss,
    a twentieth of the fits' residual noise."""

    def __init__(self, series: Sequence[Any], *, coarse: bool = False) -> None:
        super().__init__(series)
        self.s1 = np.concatenate([np.cumsum(s.lr)[s.points] for s in series])
        self.log_s1 = np.log(np.maximum(self.s1, 1e-300))
        build = coarse_pairs if coarse else exact_pairs
        self.pairs = LDPairs.concat([build(s.lr, s.points) for s in series])
        self.log_level = np.log(np.maximum(self.level, 1e-300))
        self._ld: dict[tuple[float, float, float], np.ndarray] = {}

    def ld(self, C: float, beta: float, gamma: float) -> np.ndarray:
        key = (C, beta, gamma)
        if key not in self._ld:
            if len(self._ld) > 64:
                self._ld.clear()
            self._ld[key] = ld_sum(self.pairs, C, beta, gamma)
        return self._ld[key]

    def predict(self, theta: np.ndarray) -> np.ndarray:
        p = params_of(theta)
        return (
            p["L0"]
            + p["A"] * np.exp(-p["alpha"] * self.log_s1)
            - p["B_drop"] * self.ld(p["C_drop"], p["beta_drop"], p["gamma_drop"])
            + p["B"] * self.shape(p["E"], p["beta"], p["kappa"], p["gamma"])
        )

    def predict_and_jac(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = params_of(theta)
        power = p["A"] * np.exp(-p["alpha"] * self.log_s1)
        ld, d_log_c, d_beta_d, d_gamma_d = ld_sum_and_grads(
            self.pairs, p["C_drop"], p["beta_drop"], p["gamma_drop"]
        )
        bd = p["B_drop"]
        keep, kappa = self.keep, p["kappa"]
        mix = keep + kappa * (1.0 - keep)
        share = keep / mix
        level = np.exp(p["gamma"] * self.log_level) if p["gamma"] != 0.0 else np.ones_like(keep)
        x = p["E"] * keep * self.s1_cpt
        log1p_x = np.log1p(x)
        u = np.exp(-p["beta"] * log1p_x)  # (1 + x)^-beta
        growth = 1.0 - u
        shift = p["B"] * share * level * growth
        pred = p["L0"] + power - bd * ld + shift
        jac = np.column_stack([
            np.ones_like(pred),                                   # L0
            power,                                                # log A
            -power * self.log_s1,                                 # alpha
            -bd * ld,                                             # log B_drop
            -bd * d_log_c,                                        # log C_drop
            -bd * d_beta_d,                                       # beta_drop
            -bd * d_gamma_d,                                      # gamma_drop
            share * level * growth,                               # B
            p["B"] * share * level * p["beta"] * u * x / (1.0 + x),  # log E
            p["B"] * share * level * u * log1p_x,                 # beta
            -p["B"] * level * growth * keep * (1.0 - keep) / mix**2,  # kappa
            shift * self.log_level,                               # gamma
        ])  # fmt: skip
        return pred, jac


def theta_of(p: Mapping[str, float]) -> np.ndarray:
    return np.array([p["L0"], math.log(p["A"]), p["alpha"], math.log(p["B_drop"]),
                     math.log(p["C_drop"]), p["beta_drop"], p["gamma_drop"], p["B"],
                     math.log(p["E"]), p["beta"], p["kappa"], p.get("gamma", 0.0)])  # fmt: skip


def params_of(theta: np.ndarray) -> dict[str, float]:
    L0, log_a, alpha, log_bd, log_cd, beta_d, gamma_d, B, log_e, beta, kappa, gamma = (
        float(v) for v in theta
    )
    return {"L0": L0, "A": math.exp(log_a), "alpha": alpha, "B_drop": math.exp(log_bd),
            "C_drop": math.exp(log_cd), "beta_drop": beta_d, "gamma_drop": gamma_d, "B": B,
            "E": math.exp(log_e), "beta": beta, "kappa": kappa, "gamma": gamma}  # fmt: skip


def bounds(loss: np.ndarray, kappa_free: bool, gamma_free: bool) -> tuple[np.ndarray, np.ndarray]:
    top = float(loss.max())
    lower = [0.0, math.log(1e-6), 1e-3, math.log(1e-6), math.log(1e-12), 1e-2, 0.0, -top,
             math.log(1e-6), 1e-2, 0.0, 0.0]  # fmt: skip
    upper = [top, math.log(1e4), 3.0, math.log(1e8), math.log(1e12), 5.0, 2.0, top,
             math.log(1e8), 10.0, 20.0, 2.0]  # fmt: skip
    if not kappa_free:
        lower[10], upper[10] = 1.0 - 1e-12, 1.0 + 1e-12
    if not gamma_free:  # G = 1: the paper's form
        lower[11], upper[11] = 0.0, 1e-12
    return np.array(lower), np.array(upper)


def _hold(lower: np.ndarray, upper: np.ndarray, fixed: Mapping[str, float]) -> None:
    """Pin the parameters named in ``fixed`` (in ``theta``'s coordinates) in place."""
    unknown = sorted(set(fixed) - set(PARAM_NAMES))
    if unknown:
        raise ValueError(f"fixed: unknown parameters {unknown}; the law has {list(PARAM_NAMES)}")
    # a full set of valid values, overridden by the held ones, maps them to theta's coordinates
    filler = {"A": 1.0, "B_drop": 1.0, "C_drop": 1.0, "E": 1.0}
    theta = theta_of({name: filler.get(name, 0.0) for name in PARAM_NAMES} | dict(fixed))
    for name in fixed:
        i = PARAM_NAMES.index(name)
        width = 1e-12 * max(1.0, abs(theta[i]))
        lower[i], upper[i] = theta[i] - width, theta[i] + width


def _linear_start(model: DropModel, loss: np.ndarray, nonlinear: Mapping[str, float]
                  ) -> dict[str, float]:  # fmt: skip
    """L0, A, B_drop, B by weighted least squares (relative residuals) for the rest fixed."""
    n = nonlinear
    design = np.column_stack([
        np.ones_like(loss), np.exp(-n["alpha"] * model.log_s1),
        -model.ld(n["C_drop"], n["beta_drop"], n["gamma_drop"]),
        model.shape(n["E"], n["beta"], 1.0, n["gamma"]),
    ])  # fmt: skip
    coef, *_ = np.linalg.lstsq(design / loss[:, None], np.ones_like(loss), rcond=None)
    top = float(loss.max())
    return {**n, "L0": float(np.clip(coef[0], 0.0, top)), "A": float(np.clip(coef[1], 1e-5, 1e3)),
            "B_drop": float(np.clip(coef[2], 1e-5, 1e7)), "B": float(np.clip(coef[3], -top, top)),
            "kappa": 1.0}  # fmt: skip


def starts(model: DropModel, loss: np.ndarray, peak: float, gamma_free: bool
           ) -> list[dict[str, float]]:  # fmt: skip
    """The grid of starts: ``C_drop`` such that a drop is half realised after ``n`` updates at
    the peak LR, ``E`` relative to the stages' median forward area."""
    stage_area = model.s1_cpt[model.in_stage]
    scale = 1.0 / float(np.median(stage_area)) if len(stage_area) else 1.0
    out = []
    grid = itertools.product(
        (0.3, 0.6), (10.0, 100.0, 1000.0), (0.5, 1.5), (0.3, 0.8), (0.3, 1.0, 3.0, 10.0),
        (0.5, 1.0, 2.0), (0.0, 0.5, 1.0) if gamma_free else (0.0,),
    )  # fmt: skip
    for alpha, half_steps, beta_d, gamma_d, e_rel, beta, gamma in grid:
        c_drop = (2.0 ** (1.0 / beta_d) - 1.0) * peak**gamma_d / (peak * half_steps)
        nonlinear = {"alpha": alpha, "C_drop": c_drop, "beta_drop": beta_d,
                     "gamma_drop": gamma_d, "E": e_rel * scale, "beta": beta, "gamma": gamma}
        out.append(_linear_start(model, loss, nonlinear))  # fmt: skip
    return out


def fit_distribution(
    series: Sequence[Any],
    loss: np.ndarray,
    *,
    kappa_free: bool,
    n_starts: int,
    gamma_free: bool = False,
    start: Mapping[str, float] | None = None,
    fixed: Mapping[str, float] | None = None,
) -> tuple[dict[str, float], float]:
    """One distribution's parameters and the fit's cost. ``fixed`` holds the named parameters
    at the given values (``benchmarks/cpt_law_split.py`` holds the base's own curve, then the
    replay/LR-level split, in turn)."""
    from scipy.optimize import least_squares

    # the search (grid, local fits, bootstrap refits) on the coarse pairs; a fit from the grid
    # ends with a polish on the exact ones
    coarse = DropModel(series, coarse=True)
    lower, upper = bounds(loss, kappa_free, gamma_free)
    if fixed:
        _hold(lower, upper, fixed)
    log_loss = np.log(loss)

    def residual_of(model: DropModel) -> Any:
        def residual(theta: np.ndarray) -> np.ndarray:
            pred = model.predict(theta)
            if not np.all(np.isfinite(pred)) or np.any(pred <= 0):
                return np.full_like(loss, 1.0)
            return log_loss - np.log(pred)

        return residual

    def jacobian_of(model: DropModel) -> Any:
        def jacobian(theta: np.ndarray) -> np.ndarray:
            pred, jac = model.predict_and_jac(theta)
            if not np.all(np.isfinite(pred)) or np.any(pred <= 0):
                return np.zeros_like(jac)
            return -jac / pred[:, None]

        return jacobian

    def refine(model: DropModel, theta0: np.ndarray, max_nfev: int) -> Any:
        return least_squares(
            residual_of(model), theta0, jac=jacobian_of(model), bounds=(lower, upper),
            loss="huber", f_scale=HUBER_DELTA, x_scale="jac", xtol=1e-12, ftol=1e-12,
            gtol=1e-12, max_nfev=max_nfev,
        )  # fmt: skip

    if start is not None:
        candidates = [np.clip(theta_of(start), lower, upper)]
    else:
        peak = float(max(np.max(s.lr) for s in series))
        residual = residual_of(coarse)
        candidates = [np.clip(theta_of(p), lower, upper)
                      for p in starts(coarse, loss, peak, gamma_free)]  # fmt: skip
        candidates.sort(key=lambda th: float(np.sum(_huber(residual(th)))))
        if fixed:  # held parameters clip many starts onto the same point: refine each once
            candidates = list({tuple(np.round(th, 12)): th for th in candidates}.values())
        candidates = candidates[:n_starts]
    best = None
    for theta0 in candidates:
        result = refine(coarse, theta0, 400 if start is None else 100)
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    if start is None:
        best = refine(DropModel(series), best.x, 100)
    return params_of(best.x), float(best.cost)


