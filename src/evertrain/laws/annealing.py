"""The scaling law with LR annealing (Tissue et al., 2024, arXiv 2408.11029).

    L(t)  = L0 + A S1(t)^(-alpha) - C S2(t)
    S1(t) = sum_{i=0..t} eta_i                          (forward area)
    S2(t) = sum_{i=1..t} m_i,  m_i = lambda m_{i-1} + (eta_{i-1} - eta_i),  m_0 = 0   (annealing area)

``lambda`` (about 0.999 in the paper) is fittable. Warmup: with ``warmup="peak"`` (the paper's
convention) every warmup step counts at the peak LR, in S1 and S2 alike (so the warmup's LR
rises are not "negative annealing"); ``warmup="as-is"`` uses the LR array unchanged. The warmup
length is ``warmup_steps`` or, when None, the initial strictly increasing run of the LR.

The momentum recursion is a first-order IIR filter: ``scipy.signal.lfilter`` runs it in O(T)
per evaluation, and its derivative in lambda is the same filter applied to ``m`` shifted by one
step (``dm_i/dlambda = m_{i-1} + lambda dm_{i-1}/dlambda``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evertrain.laws.base import Law, register
from evertrain.laws.curves import LawError, LossCurve


def warmup_length(lr: np.ndarray) -> int:
    """Steps before the end of the initial strictly increasing run (index of the first peak)."""
    rising = np.flatnonzero(~(lr[1:] > lr[:-1]))
    return int(rising[0]) if len(rising) else len(lr) - 1


@dataclass
class _Curve:
    drops: np.ndarray  # eta_{i-1} - eta_i, drops[0] = 0
    steps: np.ndarray


@dataclass
class _AnnealData:
    log_s1: np.ndarray
    curves: list[_Curve]


@register
class AnnealingLaw(Law):
    """Annealing scaling law; parameters ``L0, A, alpha, C, lam`` (lam = lambda).

    Fitted internally as ``[L0, log A, alpha, log C, log(1 - lam)]``; with ``fit_lambda=False``
    lambda stays at ``lam``.
    """

    name: ClassVar[str] = "annealing"
    param_names: ClassVar[tuple[str, ...]] = ("L0", "A", "alpha", "C", "lam")
    decay_identifies: ClassVar[str] = "annealing law's C and lambda"

    def __init__(
        self,
        params: Mapping[str, float] | None = None,
        *,
        warmup: str = "peak",
        warmup_steps: int | None = None,
        fit_lambda: bool = True,
        lam: float = 0.999,
    ) -> None:
        super().__init__(params)
        if warmup not in ("peak", "as-is"):
            raise LawError(f"warmup={warmup!r} must be 'peak' (the paper's convention) or 'as-is'")
        if warmup_steps is not None and warmup_steps < 0:
            raise LawError(f"warmup_steps={warmup_steps} must be >= 0 (or None to detect it)")
        if not 0.0 < lam < 1.0:
            raise LawError(
                f"lam={lam} must be in (0, 1): the decay factor of the annealing momentum"
            )
        self.warmup = warmup
        self.warmup_steps = warmup_steps
        self.fit_lambda = bool(fit_lambda)
        self.lam = float(params["lam"]) if params is not None else float(lam)

    def options(self) -> dict[str, Any]:
        """The constructor's settings, as saved with a fit (``AnnealingLaw(**options)`` rebuilds it)."""
        return {
            name: getattr(self, name) for name in ("warmup", "warmup_steps", "fit_lambda", "lam")
        }

    # ---- the areas ------------------------------------------------------------------------------
    def effective_lr(self, lr: np.ndarray) -> np.ndarray:
        """The LR the law sees: warmup steps raised to the peak LR with ``warmup="peak"``."""
        lr = np.asarray(lr, dtype=np.float64)
        if self.warmup == "as-is":
            return lr
        length = (
            warmup_length(lr) if self.warmup_steps is None else min(self.warmup_steps, len(lr) - 1)
        )
        if length == 0:
            return lr
        out = lr.copy()
        out[:length] = lr[length]
        return out

    @staticmethod
    def _drops(eta: np.ndarray) -> np.ndarray:
        return np.r_[0.0, eta[:-1] - eta[1:]]

    @staticmethod
    def _s2(
        drops: np.ndarray, lam: float, steps: np.ndarray, with_grad: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        # scipy.signal costs ~1 s to import; only pay it when the law is evaluated.
        from scipy.signal import lfilter

        momentum = lfilter([1.0], [1.0, -lam], drops)
        s2 = np.cumsum(momentum)[steps]
        if not with_grad:
            return s2, None
        d_momentum = lfilter([1.0], [1.0, -lam], np.r_[0.0, momentum[:-1]])
        return s2, np.cumsum(d_momentum)[steps]

    def areas(
        self, lr: np.ndarray, steps: np.ndarray, lam: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(S1, S2) at ``steps`` for a per-step LR array."""
        eta = self.effective_lr(lr)
        steps = np.asarray(steps, dtype=np.int64)
        lam = self.lam if lam is None else lam
        eta = eta[: int(steps.max()) + 1]
        s2, _ = self._s2(self._drops(eta), lam, steps, with_grad=False)
        return np.cumsum(eta)[steps], s2

    def _predict_exact(
        self, lr: np.ndarray, steps: np.ndarray, params: dict[str, float]
    ) -> np.ndarray:
        s1, s2 = self.areas(lr, steps, params["lam"])
        with np.errstate(divide="ignore"):
            power = params["A"] * s1 ** -params["alpha"]
        return params["L0"] + power - params["C"] * s2

    def final_loss_and_grad(self, lr: np.ndarray, t: int) -> tuple[float, np.ndarray]:
        """L(t) and dL(t)/d eta_m for m = 0..t, O(t).

        Unrolling the momentum, S2(t) = sum_{j=1..t} (eta_{j-1} - eta_j) w_j with
        w_j = (1 - lambda^(t-j+1)) / (1 - lambda), so dS2/d eta_m = w_{m+1} - w_m.
        """
        p = self._require_params()
        raw = np.asarray(lr[: t + 1], dtype=np.float64)
        eta = self.effective_lr(raw)
        lam = p["lam"]
        j = np.arange(1, t + 1)
        weights = -np.expm1((t - j + 1) * np.log(lam)) / (1.0 - lam)
        s2 = float(np.sum((eta[j - 1] - eta[j]) * weights))
        s1 = float(np.sum(eta))
        grad_s2 = np.zeros(t + 1)
        grad_s2[1:] -= weights
        grad_s2[:-1] += weights
        grad = -p["alpha"] * p["A"] * s1 ** (-p["alpha"] - 1.0) - p["C"] * grad_s2
        if self.warmup == "peak":
            length = warmup_length(raw) if self.warmup_steps is None else min(self.warmup_steps, t)
            if length > 0:  # warmup steps read eta[length]
                grad[length] += grad[:length].sum()
                grad[:length] = 0.0
        value = p["L0"] + p["A"] * s1 ** -p["alpha"] - p["C"] * s2
        return float(value), grad

    # ---- fitting --------------------------------------------------------------------------------
    def _lr_sum(self, curve: LossCurve) -> np.ndarray:
        return np.cumsum(self.effective_lr(curve.lr))[curve.steps]

    def _prepare(self, curves: list[LossCurve], level: str) -> _AnnealData:
        parts, log_s1 = [], []
        for curve in curves:
            eta = self.effective_lr(curve.lr)[: int(curve.steps[-1]) + 1]
            parts.append(_Curve(drops=self._drops(eta), steps=curve.steps))
            log_s1.append(np.log(np.cumsum(eta)[curve.steps]))
        return _AnnealData(log_s1=np.concatenate(log_s1), curves=parts)

    def _theta(self, params: Mapping[str, float]) -> np.ndarray:
        return np.array(
            [
                params["L0"],
                np.log(params["A"]),
                params["alpha"],
                np.log(params["C"]),
                np.log1p(-params["lam"]),
            ]
        )

    def _params(self, theta: np.ndarray) -> dict[str, float]:
        L0, log_a, alpha, log_c, log_gap = (float(v) for v in theta)
        return {
            "L0": L0,
            "A": float(np.exp(log_a)),
            "alpha": alpha,
            "C": float(np.exp(log_c)),
            "lam": float(-np.expm1(log_gap)),
        }

    def _bounds(self, curves: list[LossCurve]) -> list[tuple[float, float]]:
        max_loss = max(float(c.loss.max()) for c in curves)
        fixed = float(np.log1p(-self.lam))
        return [
            (0.0, max_loss),
            (np.log(1e-6), np.log(1e4)),
            (1e-3, 3.0),
            (np.log(1e-6), np.log(1e8)),
            (np.log(1e-6), np.log(0.5)) if self.fit_lambda else (fixed, fixed),
        ]

    def _s2_all(
        self, data: _AnnealData, lam: float, with_grad: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        s2, ds2 = [], []
        for curve in data.curves:
            value, grad = self._s2(curve.drops, lam, curve.steps, with_grad)
            s2.append(value)
            ds2.append(grad)
        return np.concatenate(s2), (np.concatenate(ds2) if with_grad else None)  # type: ignore[arg-type]

    def _predict_jac(self, theta: np.ndarray, data: _AnnealData) -> tuple[np.ndarray, np.ndarray]:
        L0, log_a, alpha, log_c, log_gap = theta
        gap = np.exp(log_gap)
        s2, ds2_dlam = self._s2_all(data, 1.0 - gap, with_grad=True)
        assert ds2_dlam is not None
        power = np.exp(log_a - alpha * data.log_s1)
        C = np.exp(log_c)
        pred = L0 + power - C * s2
        # dlam/dlog_gap = -gap
        jac = np.column_stack(
            [np.ones_like(pred), power, -power * data.log_s1, -C * s2, C * ds2_dlam * gap]
        )
        return pred, jac

    def _starts(
        self, curves: list[LossCurve], data: _AnnealData, loss: np.ndarray, rng: np.random.Generator
    ) -> list[np.ndarray]:
        """Grid over (alpha, lambda) plus seeded draws; L0, A, C by weighted least squares."""
        lams = (0.99, 0.999, 0.9999) if self.fit_lambda else (self.lam,)
        grid = list(itertools.product((0.3, 0.5, 0.7), lams))
        for _ in range(4):
            grid.append(
                (
                    rng.uniform(0.2, 0.9),
                    1.0 - float(np.exp(rng.uniform(np.log(1e-4), np.log(0.05)))),
                )
            )
        if not self.fit_lambda:
            grid = [(alpha, self.lam) for alpha, _ in grid]
        starts = []
        bounds = self._bounds(curves)
        for alpha, lam in grid:
            s2, _ = self._s2_all(data, lam, with_grad=False)
            power = np.exp(-alpha * data.log_s1)
            design = np.column_stack([np.ones_like(power), power, -s2]) / loss[:, None]
            coef, *_ = np.linalg.lstsq(design, np.ones_like(loss), rcond=None)
            params = {
                "L0": float(np.clip(coef[0], bounds[0][0], bounds[0][1])),
                "A": float(np.clip(coef[1], 1e-3, 1e3)),
                "alpha": alpha,
                "C": float(np.clip(coef[2], 1e-4, 1e6)),
                "lam": lam,
            }
            starts.append(self._theta(params))
        return starts
