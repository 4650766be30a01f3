"""What every loss-curve law shares: prediction from a schedule, fitting, scoring, JSON.

Fitting minimises the Huber loss of log residuals (Luo et al. 2025; Tissue et al. 2024)::

    J(theta) = sum_curves sum_points huber_delta(log loss_i - log pred_i(theta)),  delta = 1e-3

(divided by delta * #points so its scale is O(1) for L-BFGS-B's tolerances) with analytic
gradients, bounded and reparameterised parameters (log-space for positive scale parameters),
multi-start L-BFGS-B: a grid of starting points is screened cheaply, the best few are refined,
the best of those is polished on an accurate objective (for the multi-power law: LD with 1 %
distance buckets, ~1e-7 relative); residuals and metrics are then computed exactly.
Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import minimize

from evertrain._atomic import atomic_write_json
from evertrain.laws._threads import single_threaded_blas
from evertrain.laws.curves import (
    LawError,
    LossCurve,
    has_decay,
    lr_array,
    schedule_total,
    validate_lr,
)

HUBER_DELTA = 1e-3


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def curve_metrics(pred: np.ndarray, loss: np.ndarray) -> dict[str, float]:
    """PredE = mean |pred-loss|/loss, WorstE = max |pred-loss|/loss, R^2 of pred against loss."""
    pred = np.asarray(pred, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    rel = np.abs(pred - loss) / loss
    ss_res = float(np.sum((loss - pred) ** 2))
    ss_tot = float(np.sum((loss - loss.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return {"prede": float(rel.mean()), "worste": float(rel.max()), "r2": r2}


def average_metrics(per_curve: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Average PredE, WorstE and R^2 over curves (each curve weighs the same), plus the largest
    WorstE (``worste_max``)."""
    if not per_curve:
        return {
            "prede": float("nan"),
            "worste": float("nan"),
            "worste_max": float("nan"),
            "r2": float("nan"),
        }
    values = list(per_curve.values())
    return {
        "prede": float(np.mean([m["prede"] for m in values])),
        "worste": float(np.mean([m["worste"] for m in values])),
        "worste_max": float(np.max([m["worste"] for m in values])),
        "r2": float(np.mean([m["r2"] for m in values])),
    }


def huber(residual: np.ndarray, delta: float = HUBER_DELTA) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss and its derivative: 0.5 r^2 for |r| <= delta, delta (|r| - delta/2) beyond."""
    magnitude = np.abs(residual)
    quadratic = magnitude <= delta
    value = np.where(quadratic, 0.5 * residual**2, delta * (magnitude - 0.5 * delta))
    return value, np.clip(residual, -delta, delta)


# --------------------------------------------------------------------------------------------
# Fit result
# --------------------------------------------------------------------------------------------


@dataclass
class FitResult:
    """A fitted law and how well it matches the curves it was fitted on.

    ``residuals[name] = loss - pred`` at the curve's logged steps; ``prede``/``worste``/``r2``
    average the per-curve metrics (``per_curve``) over the fitted curves.
    """

    law: str
    params: dict[str, float]
    options: dict[str, Any]
    residuals: dict[str, np.ndarray]
    per_curve: dict[str, dict[str, float]]
    r2: float
    prede: float
    worste: float
    fit_seconds: float
    objective: float
    n_starts: int
    converged: bool
    seed: int
    curves: list[str] = field(default_factory=list)
    method: str = "multistart"
    bootstrap: dict[str, Any] | None = None  # resampled parameter sets for bands (intervals.py)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (residuals as lists)."""
        extra = {"bootstrap": self.bootstrap} if self.bootstrap else {}
        return {
            **extra,
            "law": self.law,
            "params": self.params,
            "options": self.options,
            "fit": {
                "curves": self.curves,
                "r2": self.r2,
                "prede": self.prede,
                "worste": self.worste,
                "fit_seconds": self.fit_seconds,
                "objective": self.objective,
                "n_starts": self.n_starts,
                "converged": self.converged,
                "seed": self.seed,
                "method": self.method,
                "per_curve": self.per_curve,
                "residuals": {k: v.tolist() for k, v in self.residuals.items()},
            },
        }

    def save(self, path: str | Path) -> Path:
        """Write the fitted law (loadable with :func:`load_law`) and fit summary as JSON, atomically."""
        atomic_write_json(path, self.to_dict())
        return Path(path)

    def make_law(self) -> Law:
        """The fitted law as an object ready to ``predict``."""
        return law_from_dict(self.to_dict())


# --------------------------------------------------------------------------------------------
# Law base class
# --------------------------------------------------------------------------------------------


class Law:
    """Base class of loss-curve laws: ``L(t)`` predicted from the per-step LR up to ``t``.

    Subclasses define ``name``, ``param_names``, ``_prepare``, ``_predict_jac`` (prediction and
    Jacobian w.r.t. the internal parameter vector ``theta``), ``_theta``/``_params`` and
    ``_bounds``, ``_starts`` (candidate starting points), ``_lr_sum`` (S1 at the logged steps)
    and, for a law with a loss-drop term, ``decay_identifies``.
    """

    name: ClassVar[str] = "law"
    param_names: ClassVar[tuple[str, ...]] = ()
    fit_methods: ClassVar[tuple[str, ...]] = ("multistart",)
    default_fit_method: ClassVar[str] = "multistart"

    def __init__(self, params: Mapping[str, float] | None = None) -> None:
        self.params: dict[str, float] | None = None
        if params is not None:
            missing = [p for p in self.param_names if p not in params]
            if missing:
                raise LawError(
                    f"{self.name} law params missing {missing}: give all of {list(self.param_names)}"
                )
            self.params = {p: float(params[p]) for p in self.param_names}
        #: bootstrap resamples (``intervals.bootstrap_law``): set by ``fit(bootstrap=N)``
        self.bootstrap: dict[str, Any] | None = None

    # ---- options (subclasses add theirs) ------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return {}

    # ---- prediction ---------------------------------------------------------------------------
    def _require_params(self) -> dict[str, float]:
        if self.params is None:
            raise LawError(f"the {self.name} law has no parameters yet: fit it or load a fit JSON")
        return self.params

    def predict(
        self,
        schedule: Any,
        steps: Sequence[int] | np.ndarray | None = None,
        *,
        tokens_per_step: float | None = None,
    ) -> np.ndarray:
        """Predicted loss at ``steps`` (default: every step of the schedule from 1) of a run
        trained with ``schedule`` (per-step LR array, ``Schedule``, or schedule spec)."""
        params = self._require_params()
        if steps is None:
            total = schedule_total(schedule, tokens_per_step=tokens_per_step)
            if total is None:
                raise LawError("the schedule has no total: pass steps=... to predict at")
            steps = np.arange(1, total)
        steps = np.asarray(steps)
        if steps.ndim != 1 or len(steps) == 0:
            raise LawError("steps must be a non-empty 1-D array of optimizer steps")
        if np.any(steps < 0) or not np.all(steps == np.round(steps)):
            raise LawError("steps must be whole optimizer steps >= 0")
        steps = steps.astype(np.int64)
        lr = lr_array(schedule, int(steps.max()) + 1, tokens_per_step=tokens_per_step)
        return self.predict_lr(lr, steps, params)

    def predict_lr(
        self, lr: np.ndarray, steps: np.ndarray, params: Mapping[str, float] | None = None
    ) -> np.ndarray:
        """Predicted loss at ``steps`` from a raw per-step LR array (exact evaluation)."""
        lr = np.asarray(lr, dtype=np.float64)
        validate_lr(lr)
        steps = np.asarray(steps, dtype=np.int64)
        if len(steps) and int(steps.max()) >= len(lr):
            raise LawError(
                f"lr has {len(lr)} steps but a prediction at step {int(steps.max())} was asked for"
            )
        return self._predict_exact(lr, steps, dict(params or self._require_params()))

    def _predict_exact(
        self, lr: np.ndarray, steps: np.ndarray, params: dict[str, float]
    ) -> np.ndarray:
        raise NotImplementedError

    def predict_band(
        self,
        schedule: Any,
        steps: Sequence[int] | np.ndarray,
        level: float = 0.9,
        *,
        tokens_per_step: float | None = None,
        kind: str = "prediction",
    ) -> Any:
        """The prediction at ``steps`` with its bootstrap band (an ``intervals.Band``: ``pred``,
        ``lower``, ``upper``); needs a law fitted with ``bootstrap=N``."""
        from evertrain.laws.intervals import law_band

        steps = np.asarray(steps, dtype=np.int64)
        lr = lr_array(schedule, int(steps.max()) + 1, tokens_per_step=tokens_per_step)
        return law_band(self, lr, steps, level, kind=kind)

    def refitter(self, curves: list[LossCurve]) -> Any:
        """``refit(loss, start_params) -> params``: a local L-BFGS-B refit of this law on
        ``curves``' steps and LRs with the losses replaced (the bootstrap's inner loop; the
        arrays are prepared once)."""
        self._setup(curves)
        data = self._prepare(curves, "coarse" if self._has_coarse else "exact")
        bounds = self._bounds(curves)
        lower = np.array([b[0] for b in bounds])
        upper = np.array([b[1] for b in bounds])

        def refit(loss: np.ndarray, start: Mapping[str, float]) -> dict[str, float]:
            with single_threaded_blas():
                result = minimize(
                    self._objective,
                    np.clip(self._theta(start), lower, upper),
                    args=(data, loss),
                    jac=True,
                    method="L-BFGS-B",
                    bounds=bounds,
                    options={"maxiter": 300, "ftol": 1e-11, "gtol": 1e-8},
                )
            return self._params(result.x)

        return refit

    # ---- scoring ------------------------------------------------------------------------------
    def score(self, curves: Sequence[LossCurve] | Mapping[str, LossCurve]) -> dict[str, Any]:
        """Per-curve PredE/WorstE/R^2 of this law's predictions and their averages."""
        per_curve = {}
        for curve in _as_list(curves):
            pred = self.predict_lr(curve.lr, curve.steps)
            per_curve[curve.name] = curve_metrics(pred, curve.loss)
        return {**average_metrics(per_curve), "per_curve": per_curve}

    # ---- fitting ------------------------------------------------------------------------------
    #: What only a curve with an LR decay identifies ("the <this> cannot be identified"); None
    #: for a law that needs no decay.
    decay_identifies: ClassVar[str | None] = None

    def _lr_sum(self, curve: LossCurve) -> np.ndarray:
        """The law's S1 (its LR area) at the curve's logged steps."""
        raise NotImplementedError

    def _check_identifiable(self, curves: list[LossCurve]) -> None:
        n_points = sum(len(c.steps) for c in curves)
        need = 2 * len(self.param_names)
        if n_points < need:
            raise LawError(
                f"too few points to fit the {self.name} law: {n_points} logged losses for "
                f"{len(self.param_names)} parameters; give at least {need} points"
            )
        if self.decay_identifies and not any(has_decay(c) for c in curves):
            raise LawError(
                "no fitted curve has an LR decay with losses logged after it: the "
                f"{self.decay_identifies} cannot be identified; add a curve whose LR decreases "
                "(cosine, WSD, a step drop)"
            )
        for curve in curves:
            s1 = self._lr_sum(curve)
            if np.any(s1 <= 0):
                raise LawError(
                    f"curve {curve.name!r}: the LR sum S1 is 0 at step "
                    f"{int(curve.steps[s1 <= 0][0])} (the law is infinite there): drop losses "
                    "logged before the LR is positive"
                )

    def _setup(self, curves: list[LossCurve]) -> None:
        """Hook: fix fit-wide constants (e.g. reference scales) before anything is prepared."""

    def _prepare(self, curves: list[LossCurve], level: str) -> Any:
        """Precompute the law's arrays for ``curves``; ``level`` is "coarse" (multi-start
        screening), "fine" (final polish) or "exact"."""
        raise NotImplementedError

    def _predict_jac(self, theta: np.ndarray, data: Any) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _theta(self, params: Mapping[str, float]) -> np.ndarray:
        raise NotImplementedError

    def _params(self, theta: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def _bounds(self, curves: list[LossCurve]) -> list[tuple[float, float]]:
        raise NotImplementedError

    def _starts(
        self, curves: list[LossCurve], data: Any, loss: np.ndarray, rng: np.random.Generator
    ) -> list[np.ndarray]:
        raise NotImplementedError

    def _objective(
        self, theta: np.ndarray, data: Any, loss: np.ndarray
    ) -> tuple[float, np.ndarray]:
        pred, jac = self._predict_jac(theta, data)
        scale = 1.0 / (HUBER_DELTA * len(loss))
        if not np.all(np.isfinite(pred)) or np.any(pred <= 0):
            # outside the law's domain: a large, smooth-ish wall pointing back (L-BFGS-B backtracks)
            return 1e6, np.zeros_like(theta)
        residual = np.log(loss) - np.log(pred)
        value, slope = huber(residual)
        grad = jac.T @ (-slope / pred)
        return float(value.sum() * scale), grad * scale

    def fit(
        self,
        curves: Sequence[LossCurve] | Mapping[str, LossCurve],
        *,
        seed: int = 0,
        n_starts: int = 3,
        init: Mapping[str, float] | None = None,
        maxiter: int = 2000,
        method: str | None = None,
        bootstrap: int = 0,
        bootstrap_block: int | None = None,
    ) -> FitResult:
        """Fit the law's parameters to ``curves``; sets ``self.params`` and returns a FitResult.

        ``method="multistart"``: ``n_starts`` starting points (best of a screened grid plus seeded
        random draws; ``init`` adds a user-given one) are refined on the fast ("coarse")
        objective, the best is polished on the accurate ("fine") one. Laws may offer other
        methods (``fit_methods``; ``None`` picks ``default_fit_method``), e.g. the multi-power
        law's ``"reference"``. The reported residuals and metrics are always exact.
        ``bootstrap=N`` (> 0) also draws N block-bootstrap refits for bands
        (:mod:`evertrain.laws.intervals`; ``bootstrap_block`` points per block, default
        ``ceil(n^(1/3))``), kept in ``self.bootstrap`` and the FitResult.
        """
        curve_list = _as_list(curves)
        if not curve_list:
            raise LawError("no curves to fit: give at least one LossCurve")
        names = [c.name for c in curve_list]
        if len(set(names)) != len(names):
            raise LawError(f"curve names must be distinct, got {names}")
        if n_starts < 1:
            raise LawError(f"n_starts={n_starts} must be >= 1")
        method = self.default_fit_method if method is None else method
        if method not in self.fit_methods:
            raise LawError(
                f"method={method!r} is not a fitting method of the {self.name} law: "
                f"choose one of {list(self.fit_methods)}"
            )
        if init is not None and method != "multistart":
            raise LawError(
                f"init= sets a starting point of method='multistart' only; method={method!r} "
                "starts from its own fixed protocol: drop init or pass method='multistart'"
            )
        if bootstrap < 0 or bootstrap == 1:
            raise LawError(f"bootstrap={bootstrap}: give 0 (no bands) or >= 2 resamples")
        self._check_identifiable(curve_list)
        self._setup(curve_list)
        # L-BFGS-B calls BLAS on a handful of numbers per iteration: threads only cost there
        with single_threaded_blas():
            if method != "multistart":
                result = self._fit_other(method, curve_list, seed=seed, started=time.perf_counter())
            else:
                result = self._fit_multistart(
                    curve_list, seed=seed, n_starts=n_starts, init=init, maxiter=maxiter
                )
        self.bootstrap = None
        if bootstrap:
            from evertrain.laws.intervals import bootstrap_law

            self.bootstrap = bootstrap_law(
                self, curve_list, n=bootstrap, block=bootstrap_block, seed=seed
            )
            result.bootstrap = self.bootstrap
        return result

    def _fit_multistart(
        self,
        curve_list: list[LossCurve],
        *,
        seed: int,
        n_starts: int,
        init: Mapping[str, float] | None,
        maxiter: int,
    ) -> FitResult:
        started = time.perf_counter()
        rng = np.random.default_rng(seed)
        loss = np.concatenate([c.loss for c in curve_list])
        coarse = self._prepare(curve_list, "coarse")
        bounds = self._bounds(curve_list)
        lower = np.array([b[0] for b in bounds])
        upper = np.array([b[1] for b in bounds])
        starts = [np.clip(s, lower, upper) for s in self._starts(curve_list, coarse, loss, rng)]
        if init is not None:
            starts.insert(0, np.clip(self._theta(init), lower, upper))
        screened = sorted(starts, key=lambda s: self._objective(s, coarse, loss)[0])[:n_starts]
        options = {"maxiter": maxiter, "ftol": 1e-11, "gtol": 1e-8}
        best = None
        for start in screened:
            result = minimize(
                self._objective,
                start,
                args=(coarse, loss),
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={**options, "maxiter": min(maxiter, 400)},
            )
            if best is None or result.fun < best.fun:
                best = result
        assert best is not None
        if self._has_coarse:
            # polish the best start on the accurate objective
            fine = self._prepare(curve_list, "fine")
            best = minimize(
                self._objective,
                best.x,
                args=(fine, loss),
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options=options,
            )
        fit_seconds = time.perf_counter() - started
        return self._fit_result(
            curve_list,
            self._params(best.x),
            fit_seconds=fit_seconds,
            objective=float(best.fun),
            n_starts=len(screened),
            converged=bool(best.success),
            seed=seed,
            method="multistart",
        )

    def _fit_other(
        self, method: str, curve_list: list[LossCurve], *, seed: int, started: float
    ) -> FitResult:
        """Hook: fitting methods other than "multistart" (see ``fit_methods``)."""
        raise NotImplementedError(method)

    def _fit_result(
        self,
        curve_list: list[LossCurve],
        params: dict[str, float],
        *,
        fit_seconds: float,
        objective: float,
        n_starts: int,
        converged: bool,
        seed: int,
        method: str,
    ) -> FitResult:
        """Set ``self.params`` and report the fit: exact residuals and metrics per curve."""
        self.params = dict(params)
        names = [c.name for c in curve_list]
        residuals, per_curve = {}, {}
        for curve in curve_list:
            part = self.predict_lr(curve.lr, curve.steps)  # exact evaluation for the report
            residuals[curve.name] = curve.loss - part
            per_curve[curve.name] = curve_metrics(part, curve.loss)
        averages = average_metrics(per_curve)
        return FitResult(
            law=self.name,
            params=dict(self.params),
            options=self.options(),
            residuals=residuals,
            per_curve=per_curve,
            r2=averages["r2"],
            prede=averages["prede"],
            worste=averages["worste"],
            fit_seconds=fit_seconds,
            objective=objective,
            n_starts=n_starts,
            converged=converged,
            seed=seed,
            curves=names,
            method=method,
        )

    _has_coarse: ClassVar[bool] = False

    # ---- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        payload = {"law": self.name, "params": self._require_params(), "options": self.options()}
        if self.bootstrap:
            payload["bootstrap"] = self.bootstrap
        return payload

    def save(self, path: str | Path) -> Path:
        """Write ``{"law", "params", "options"}`` as JSON, atomically."""
        atomic_write_json(path, self.to_dict())
        return Path(path)


def _as_list(curves: Sequence[LossCurve] | Mapping[str, LossCurve]) -> list[LossCurve]:
    if isinstance(curves, Mapping):
        curves = list(curves.values())
    curve_list = list(curves)
    for curve in curve_list:
        if not isinstance(curve, LossCurve):
            raise LawError(f"expected LossCurve objects, got {type(curve).__name__}")
    return curve_list


LAWS: dict[str, type[Law]] = {}


def register(cls: type[Law]) -> type[Law]:
    LAWS[cls.name] = cls
    return cls


def make_law(name: str, **options: Any) -> Law:
    """A fresh (unfitted) law by name: ``"mpl"`` or ``"annealing"``."""
    if name not in LAWS:
        raise LawError(f"unknown law {name!r}: choose one of {sorted(LAWS)}")
    try:
        return LAWS[name](**options)
    except TypeError as exc:
        raise LawError(f"bad options for the {name} law: {exc}") from exc


def law_from_dict(payload: Mapping[str, Any]) -> Law:
    """Rebuild a fitted law from :meth:`Law.to_dict` / :meth:`FitResult.to_dict` output."""
    if payload.get("law") == "cpt":
        raise LawError(
            "this is a cpt law JSON: use `evertrain law cpt predict` / evertrain.laws.load_cpt_law"
        )
    if "law" not in payload or "params" not in payload:
        raise LawError(
            "a law JSON needs the keys 'law' and 'params' (write it with law.save or FitResult.save)"
        )
    name = str(payload["law"])
    if name not in LAWS:
        raise LawError(f"unknown law {name!r}: choose one of {sorted(LAWS)}")
    try:
        law = LAWS[name](payload["params"], **dict(payload.get("options") or {}))
    except TypeError as exc:
        raise LawError(f"bad options for the {name} law: {exc}") from exc
    law.bootstrap = payload.get("bootstrap") or None
    return law


def load_law(path: str | Path) -> Law:
    """Load a fitted law saved by ``law.save`` / ``FitResult.save`` / ``evertrain law fit``."""
    path = Path(path)
    if not path.is_file():
        raise LawError(
            f"fit file {path} does not exist: run `evertrain law fit ... -o {path}` first"
        )
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LawError(f"{path} is not valid JSON ({exc})") from exc
    return law_from_dict(payload)
