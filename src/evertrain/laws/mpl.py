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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evertrain.laws._ld import (
    LDPairs,
    coarse_pairs,
    exact_pairs,
    ld_sum,
    ld_sum_and_grads,
    multi_power_ld,
)
from evertrain.laws.base import Law, register
from evertrain.laws.curves import LawError, LossCurve


def has_decay(curve: LossCurve) -> bool:
    """True when the LR drops somewhere after its first peak and a loss is logged after the drop."""
    last = int(curve.steps[-1])
    lr = curve.lr[: last + 1]
    peak = int(np.argmax(lr))
    drops = np.flatnonzero(lr[peak + 1 :] < lr[peak:-1]) + peak + 1
    return len(drops) > 0 and int(drops[0]) <= last


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

    def loss_drop(self, lr: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """LD(t) at ``steps`` for a per-step LR array (fast and exact)."""
        p = self._require_params()
        return multi_power_ld(
            np.asarray(lr, dtype=np.float64),
            np.asarray(steps),
            p["B"],
            p["C"],
            p["beta"],
            p["gamma"],
        )

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
    def _check_identifiable(self, curves: list[LossCurve]) -> None:
        super()._check_identifiable(curves)
        if not any(has_decay(c) for c in curves):
            raise LawError(
                "no fitted curve has an LR decay with losses logged after it: the multi-power law's "
                "loss-drop parameters B, C, beta, gamma cannot be identified; add a curve whose LR "
                "decreases (cosine, WSD, a step drop)"
            )
        for curve in curves:
            s1 = np.cumsum(curve.lr)[curve.steps] + self.warmup_area
            if np.any(s1 <= 0):
                raise LawError(
                    f"curve {curve.name!r}: the LR sum S1 is 0 at step {int(curve.steps[s1 <= 0][0])} "
                    "(the law is infinite there): drop losses logged before the LR is positive"
                )

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
