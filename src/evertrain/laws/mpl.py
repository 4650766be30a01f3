"""The multi-power law (Luo et al., 2025, arXiv 2503.12811).

    L(t) = L0 + A (S1(t) + S_W)^(-alpha) - LD(t)
    S1(t) = sum_{tau=0..t} eta_tau
    LD(t) = B sum_{k=1..t} (eta_{k-1} - eta_k) G(eta_k^(-gamma) S_k(t)),   S_k(t) = sum_{tau=k..t} eta_tau
    G(x)  = 1 - (C x + 1)^(-beta)

``eta`` is the per-step LR from step 0, warmup included as is (the reference implementation's
convention: S1 is the cumulative sum of the whole LR array, the warmup's LR rises enter LD with
negative drops), so the warmup area is already in S1 and ``S_W`` (``warmup_area``) defaults to 0;
set it when the LR array you give starts after the warmup.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import minimize

from evertrain.laws._ld import (
    LDPairs,
    coarse_pairs,
    exact_pairs,
    ld_sum,
    ld_sum_and_grads,
    multi_power_ld,
)
from evertrain.laws.base import FitResult, Law, huber, register
from evertrain.laws.curves import LawError, LossCurve


@dataclass
class _MPLData:
    log_s1: np.ndarray
    pairs: LDPairs


@register
class MultiPowerLaw(Law):
    """Multi-power law; parameters ``L0, A, alpha, B, C, beta, gamma``.

    Internally fitted as ``[L0, log A, alpha, log B, log C_ref, beta, gamma]`` (scale parameters
    in log space, ``C_ref = C eta_ref^(1-gamma)`` with eta_ref the peak LR), bounded.
    """

    name: ClassVar[str] = "mpl"
    param_names: ClassVar[tuple[str, ...]] = ("L0", "A", "alpha", "B", "C", "beta", "gamma")
    _has_coarse: ClassVar[bool] = True
    decay_identifies: ClassVar[str] = "multi-power law's loss-drop parameters B, C, beta, gamma"
    fit_methods: ClassVar[tuple[str, ...]] = ("reference", "multistart")
    default_fit_method: ClassVar[str] = "reference"

    def __init__(
        self, params: Mapping[str, float] | None = None, *, warmup_area: float = 0.0
    ) -> None:
        super().__init__(params)
        if not np.isfinite(warmup_area) or warmup_area < 0:
            raise LawError(
                f"warmup_area={warmup_area} must be a finite number >= 0 (S_W, the warmup's LR sum)"
            )
        self.warmup_area = float(warmup_area)

    def options(self) -> dict[str, Any]:
        return {"warmup_area": self.warmup_area}

    # ---- exact prediction ---------------------------------------------------------------------
    def _predict_exact(
        self, lr: np.ndarray, steps: np.ndarray, params: dict[str, float]
    ) -> np.ndarray:
        s1 = np.cumsum(lr)[steps] + self.warmup_area
        with np.errstate(divide="ignore"):
            power = params["A"] * s1 ** -params["alpha"]
        ld = multi_power_ld(lr, steps, params["B"], params["C"], params["beta"], params["gamma"])
        return params["L0"] + power - ld

    _eta_ref: float = 3e-4

    def final_loss_and_grad(self, lr: np.ndarray, t: int) -> tuple[float, np.ndarray]:
        """L(t) and dL(t)/d eta_m for m = 0..t (schedule optimisation), O(t).

        With x_k = C eta_k^-gamma S_k(t), G'(x) = beta C (1 + C x')^(-beta-1) in terms of the raw
        argument, and d_k = eta_{k-1} - eta_k, the LD sum's derivative at step m collects
        G(x_{m+1}) - G(x_m) (from d_{m+1}, d_m), -gamma d_m G'(x_m) x_m / eta_m (from eta_m^-gamma)
        and sum_{k<=m} d_k G'(x_k) dx_k/dS (eta_m is inside S_k(t) for every k <= m).
        """
        p = self._require_params()
        eta = np.asarray(lr[: t + 1], dtype=np.float64)
        prefix = np.cumsum(eta)
        s1 = prefix[t] + self.warmup_area
        k = np.arange(1, t + 1)
        drop = eta[k - 1] - eta[k]
        eta_k = np.maximum(eta[k], 1e-300)
        scale = p["C"] * eta_k ** -p["gamma"]  # dx_k / dS_k
        x = scale * (prefix[t] - prefix[k - 1])
        u = (1.0 + x) ** -p["beta"]
        g = 1.0 - u
        g_prime = p["beta"] * u / (1.0 + x)  # dG/dx
        ld_sum_value = float(np.sum(drop * g))
        grad_ld = np.zeros(t + 1)
        grad_ld[1:] -= g  # d_m = eta_{m-1} - eta_m
        grad_ld[:-1] += g  # d_{m+1} = eta_m - eta_{m+1}
        grad_ld[1:] += -p["gamma"] * drop * g_prime * x / eta_k
        grad_ld[1:] += np.cumsum(drop * g_prime * scale)
        value = p["L0"] + p["A"] * s1 ** -p["alpha"] - p["B"] * ld_sum_value
        grad = -p["alpha"] * p["A"] * s1 ** (-p["alpha"] - 1.0) - p["B"] * grad_ld
        return float(value), grad

    # ---- fitting ------------------------------------------------------------------------------
    def _lr_sum(self, curve: LossCurve) -> np.ndarray:
        return np.cumsum(curve.lr)[curve.steps] + self.warmup_area

    def _prepare(self, curves: list[LossCurve], level: str) -> _MPLData:
        """S1 and LD pairs at the logged steps. "coarse" buckets far change points at 5% of their
        distance (LD relative error ~4e-6 on the shared curves), "fine" at 1% (~1.5e-7, far below
        the loss noise; the fit's last stage), "exact" keeps every pair."""
        if level == "exact":
            build = exact_pairs
        else:
            near, rel = (32, 0.05) if level == "coarse" else (64, 0.01)

            def build(lr: np.ndarray, steps: np.ndarray) -> LDPairs:
                return coarse_pairs(lr, steps, near=near, rel=rel)

        log_s1 = np.concatenate(
            [np.log(np.cumsum(c.lr)[c.steps] + self.warmup_area) for c in curves]
        )
        pairs = LDPairs.concat([build(c.lr, c.steps) for c in curves])
        # conditioning: measure eta and S_k(t) in units of the peak LR, so that log C and gamma
        # stop trading off (x = C_ref (eta/eta_ref)^-gamma S/eta_ref, C_ref = C eta_ref^(1-gamma))
        log_ref = np.log(self._eta_ref)
        pairs = LDPairs(
            pairs.point,
            pairs.weight,
            pairs.log_eta - log_ref,
            pairs.area / self._eta_ref,
            pairs.n_points,
        )
        return _MPLData(log_s1=log_s1, pairs=pairs)

    def _setup(self, curves: list[LossCurve]) -> None:
        self._eta_ref = max(float(c.lr.max()) for c in curves)

    def _theta(self, params: Mapping[str, float]) -> np.ndarray:
        p = params
        log_c_ref = np.log(p["C"]) + (1.0 - p["gamma"]) * np.log(self._eta_ref)
        return np.array(
            [p["L0"], np.log(p["A"]), p["alpha"], np.log(p["B"]), log_c_ref, p["beta"], p["gamma"]],
            dtype=np.float64,
        )

    def _params(self, theta: np.ndarray) -> dict[str, float]:
        L0, log_a, alpha, log_b, log_c_ref, beta, gamma = (float(v) for v in theta)
        log_c = log_c_ref - (1.0 - gamma) * np.log(self._eta_ref)
        return {
            "L0": L0,
            "A": float(np.exp(log_a)),
            "alpha": alpha,
            "B": float(np.exp(log_b)),
            "C": float(np.exp(log_c)),
            "beta": beta,
            "gamma": gamma,
        }

    def _bounds(self, curves: list[LossCurve]) -> list[tuple[float, float]]:
        max_loss = max(float(c.loss.max()) for c in curves)
        return [
            (0.0, max_loss),  # L0
            (np.log(1e-6), np.log(1e4)),  # log A
            (1e-3, 3.0),  # alpha
            (np.log(1e-3), np.log(1e7)),  # log B
            (np.log(1e-8), np.log(1e8)),  # log C_ref
            (1e-3, 5.0),  # beta
            (0.0, 3.0),  # gamma
        ]

    def _predict_jac(self, theta: np.ndarray, data: _MPLData) -> tuple[np.ndarray, np.ndarray]:
        L0, log_a, alpha, log_b, log_c, beta, gamma = theta
        power = np.exp(log_a - alpha * data.log_s1)
        B = np.exp(log_b)
        ld, d_log_c, d_beta, d_gamma = ld_sum_and_grads(data.pairs, np.exp(log_c), beta, gamma)
        pred = L0 + power - B * ld
        jac = np.column_stack(
            [
                np.ones_like(pred),
                power,
                -power * data.log_s1,
                -B * ld,
                -B * d_log_c,
                -B * d_beta,
                -B * d_gamma,
            ]
        )
        return pred, jac

    def _fit_other(
        self, method: str, curve_list: list[LossCurve], *, seed: int, started: float
    ) -> FitResult:
        return self._fit_reference(curve_list, seed=seed, started=started)

    # ---- the reference fitting protocol (Luo et al. 2025, the paper's public code) ------------
    def _fit_reference(
        self, curve_list: list[LossCurve], *, seed: int, started: float
    ) -> FitResult:
        """The reference protocol: simplified-law init, C = 1, beta = gamma = 0.5, then at most
        200 AdamW steps on the raw parameters with early stopping (patience 20), keeping the
        best; the reported objective is the multi-start one, on the fine LD pairs."""
        loss = np.concatenate([c.loss for c in curve_list])
        value_and_grad = self._reference_objective(curve_list, loss)
        L0, A, alpha, B = simplified_init(curve_list, self._eta_ref)
        best = reference_adamw(value_and_grad, np.array([L0, A, alpha, B, 1.0, 0.5, 0.5]))
        fit_seconds = time.perf_counter() - started
        final = dict(zip(self.param_names, (float(x) for x in best), strict=True))
        fine = self._prepare(curve_list, "fine")
        objective = self._objective(self._theta(final), fine, loss)[0]
        return self._fit_result(
            curve_list,
            final,
            fit_seconds=fit_seconds,
            objective=float(objective),
            n_starts=1,
            converged=True,
            seed=seed,
            method="reference",
        )

    def _reference_objective(
        self, curve_list: list[LossCurve], loss: np.ndarray
    ) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
        """The reference protocol's objective in the raw parameters ``[L0, A, alpha, B, C, beta,
        gamma]``: the summed Huber loss of log residuals (coarse LD pairs) and its gradient."""
        log_loss = np.log(loss)
        data = self._prepare(curve_list, "coarse")
        log_ref = np.log(self._eta_ref)
        names = self.param_names

        def value_and_grad(p: np.ndarray) -> tuple[float, np.ndarray]:
            # A, B, C enter through logs internally; the raw AdamW run never drives them to 0 on
            # sensible curves, the floor only keeps a pathological one finite
            safe = p.copy()
            safe[[1, 3, 4]] = np.maximum(safe[[1, 3, 4]], 1e-12)
            theta = self._theta(dict(zip(names, safe, strict=True)))
            pred, jac = self._predict_jac(theta, data)
            pred = np.maximum(pred, 1e-10)
            value, slope_r = huber(log_loss - np.log(pred))
            # d pred / d raw parameter (chain rule from the log reparameterisation)
            raw = jac.copy()
            raw[:, 1] /= safe[1]
            raw[:, 3] /= safe[3]
            raw[:, 4] /= safe[4]
            raw[:, 6] = jac[:, 6] - log_ref * jac[:, 4]
            return float(value.sum()), raw.T @ (-slope_r / pred)

        return value_and_grad

    def _starts(
        self, curves: list[LossCurve], data: _MPLData, loss: np.ndarray, rng: np.random.Generator
    ) -> list[np.ndarray]:
        """Grid over the nonlinear exponents (alpha, C, beta, gamma) plus seeded random draws;
        for each, the linear parameters (L0, A, B) come from weighted least squares (the law is
        linear in them), so every start is already a sensible curve."""
        grid = list(
            itertools.product(
                (0.3, 0.5, 0.7), (0.03, 0.1, 0.3, 1.0), (0.3, 0.6, 1.0), (0.3, 0.6, 0.9)
            )
        )
        for _ in range(16):
            grid.append(
                (
                    rng.uniform(0.2, 0.9),
                    float(np.exp(rng.uniform(np.log(0.01), np.log(3.0)))),
                    rng.uniform(0.2, 1.2),
                    rng.uniform(0.1, 1.0),
                )
            )
        bounds = self._bounds(curves)
        starts = []
        for alpha, c_ref, beta, gamma in grid:
            power = np.exp(-alpha * data.log_s1)
            ld = ld_sum(data.pairs, c_ref, beta, gamma)
            design = np.column_stack([np.ones_like(power), power, -ld]) / loss[:, None]
            coef, *_ = np.linalg.lstsq(design, np.ones_like(loss), rcond=None)
            L0 = float(np.clip(coef[0], bounds[0][0], bounds[0][1]))
            A = float(np.clip(coef[1], 1e-3, 1e3))
            B = float(np.clip(coef[2], 1e-2, 1e6))
            C = float(c_ref * np.exp(-(1.0 - gamma) * np.log(self._eta_ref)))
            starts.append(
                self._theta(
                    {"L0": L0, "A": A, "alpha": alpha, "B": B, "C": C, "beta": beta, "gamma": gamma}
                )
            )
        return starts


# ------------------------------------------------------------------------------------------------
# The reference fitting protocol (Luo et al. 2025, the paper's public code)
# ------------------------------------------------------------------------------------------------

#: AdamW settings of the reference protocol: learning rate 5e-2 for the scale parameters
#: (L0, A, B, C) and 5e-3 for the exponents (alpha, beta, gamma), torch's defaults otherwise.
REFERENCE_ADAM = {
    "lr_scale": 5e-2,
    "lr_exponent": 5e-3,
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "weight_decay": 0.01,
    "max_steps": 200,
    "patience": 20,
    "grad_norm_stop": 1e-5,
}


def simplified_init(curves: list[LossCurve], eta_peak: float) -> np.ndarray:
    """Stage 1 of the reference protocol: ``[L0, A, alpha, B]`` of the simplified law

        L(t) = L0 + A S1(t)^(-alpha) - B (eta_peak - eta_t)

    (the loss drop taken as linear in the LR drop), minimising the summed Huber loss of log
    residuals by L-BFGS-B (analytic gradients, parameters >= 0) from each point of a 5x3x3x3
    grid: L0 within +-0.2 of the lowest loss, A and alpha within +-0.1 of a log-log regression
    of ``loss - min_loss + 0.01`` on S1, B in {100, 550, 1000}. Returns the best solution.
    """
    log_s1 = np.concatenate([np.log(np.cumsum(c.lr)[c.steps]) for c in curves])
    drop = np.concatenate([eta_peak - c.lr[c.steps] for c in curves])
    loss = np.concatenate([c.loss for c in curves])
    min_loss = float(loss.min())
    slope, intercept = np.polyfit(log_s1, np.log(loss - min_loss + 0.01), 1)
    log_loss = np.log(loss)

    def objective(p: np.ndarray) -> tuple[float, np.ndarray]:
        L0, A, alpha, B = p
        power = np.exp(-alpha * log_s1)
        pred = L0 + A * power - B * drop
        if np.any(pred <= 0):
            return 1e10, np.zeros(4)
        value, slope_r = huber(log_loss - np.log(pred))
        weight = -slope_r / pred
        grad = np.array(
            [
                weight.sum(),
                weight @ power,
                weight @ (-A * power * log_s1),
                weight @ (-drop),
            ]
        )
        return float(value.sum()), grad

    grid = itertools.product(
        np.linspace(min_loss - 0.2, min_loss + 0.2, 5),
        np.linspace(np.exp(intercept) - 0.1, np.exp(intercept) + 0.1, 3),
        np.linspace(-slope - 0.1, -slope + 0.1, 3),
        np.linspace(100.0, 1000.0, 3),
    )
    best_value, best_x = np.inf, None
    for start in grid:
        result = minimize(
            objective,
            np.array(start),
            jac=True,
            method="L-BFGS-B",
            bounds=[(0.0, None)] * 4,
            options={"maxiter": 100_000, "ftol": 1e-9, "gtol": 1e-6},
        )
        if result.fun < best_value:
            best_value, best_x = float(result.fun), result.x
    assert best_x is not None
    return best_x


def reference_adamw(
    value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    start: np.ndarray,
    settings: Mapping[str, Any] = REFERENCE_ADAM,
) -> np.ndarray:
    """The reference protocol's optimiser on ``[L0, A, alpha, B, C, beta, gamma]``: AdamW as
    ``torch.optim.AdamW`` (learning rate ``lr_scale`` for the scale parameters, ``lr_exponent``
    for the exponents), at most ``max_steps`` steps, stopped after ``patience`` steps without a
    lower value or at a gradient norm below ``grad_norm_stop``. Returns the best parameters."""
    cfg = settings
    params = np.array(start, dtype=np.float64)
    lr = np.array(
        [cfg["lr_scale"]] * 2
        + [cfg["lr_exponent"]]
        + [cfg["lr_scale"]] * 2
        + [cfg["lr_exponent"]] * 2
    )
    beta1, beta2 = cfg["betas"]
    m = np.zeros(7)
    v = np.zeros(7)
    best_value, best_params = np.inf, params.copy()
    min_value, no_improve, steps = np.inf, 0, 0
    for step in range(cfg["max_steps"]):
        value, grad = value_and_grad(params)
        steps = step + 1
        # torch.optim.AdamW: decoupled decay, then the bias-corrected Adam step
        params = params * (1.0 - lr * cfg["weight_decay"])
        m = beta1 * m + (1.0 - beta1) * grad
        v = beta2 * v + (1.0 - beta2) * grad**2
        denom = np.sqrt(v) / np.sqrt(1.0 - beta2**steps) + cfg["eps"]
        params = params - (lr / (1.0 - beta1**steps)) * m / denom
        if value < min_value:
            min_value, no_improve = value, 0
        else:
            no_improve += 1
        if step > cfg["patience"] and no_improve >= cfg["patience"]:
            break
        if np.linalg.norm(grad) < cfg["grad_norm_stop"]:
            break
        if value < best_value:
            # as in the reference: the loss is measured before the step, the parameters kept
            # are the ones after it
            best_value, best_params = value, params.copy()
    return best_params
