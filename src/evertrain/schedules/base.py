"""The :class:`Schedule` base class and :class:`ScheduleError`.

A schedule is a pure function ``value = s(progress)``. Progress is measured in the schedule's
``unit`` (optimizer steps or tokens seen). ``s`` takes a Python/numpy scalar and returns a Python
``float`` (a fast ``math`` path, no numpy overhead), or takes an array-like and returns a float64
``np.ndarray`` of the same shape (a pure-numpy path: no Python loop over points).

Convention (the same as Hugging Face ``LambdaLR`` schedules): the optimizer update at 0-based step
``k`` uses ``lr = s(k)`` (or ``s(tokens seen before that step)`` in token units).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

UNITS = ("steps", "tokens")


class ScheduleError(ValueError):
    """A schedule spec or parameter is invalid. The message names the field and the fix."""


class Schedule(ABC):
    """Base class: a learning rate (or any non-negative value) as a pure function of progress.

    Subclasses implement ``_scalar(t: float) -> float`` and ``_vector(t: ndarray) -> ndarray``
    and set ``self._spec`` (the constructor parameters, JSON-able) in ``__init__``.

    Attributes:
        total: planned horizon in progress units, or ``None`` for an open-ended schedule.
        unit: ``"steps"`` or ``"tokens"`` -- metadata telling the caller what progress to feed.
    """

    name: ClassVar[str] = ""
    total: float | None = None
    unit: str = "steps"
    _spec: dict[str, Any]

    def __call__(self, progress: Any) -> Any:
        """Evaluate at ``progress``: scalar in -> ``float``; array-like in -> float64 array."""
        kind = type(progress)
        if kind is int or kind is float:
            return self._scalar(float(progress))
        if isinstance(progress, (np.floating, np.integer)):
            return self._scalar(float(progress))
        array = np.asarray(progress, dtype=np.float64)
        if array.ndim == 0 and not isinstance(progress, np.ndarray):
            return self._scalar(float(array))
        values = self._vector(array)
        # np.interp & co. return a numpy scalar for 0-d input: keep "array in -> array out".
        return values if type(values) is np.ndarray else np.asarray(values, dtype=np.float64)

    @abstractmethod
    def _scalar(self, t: float) -> float: ...

    @abstractmethod
    def _vector(self, t: np.ndarray) -> np.ndarray: ...

    def evaluate_xp(self, t: Any, xp: Any) -> Any:
        """Evaluate at an array ``t`` with the array module ``xp`` (``numpy`` or ``jax.numpy``).

        Written with element-wise operations and ``xp.where`` only (no Python branch on a value,
        no in-place write), so a JAX tracer goes through and a schedule jits like optax's own.
        Families whose formulas are not written this way raise ``NotImplementedError``; the
        optax adapter then falls back to a host callback.
        """
        raise NotImplementedError(f"{self.name}: no array-module (xp) formula")

    def to_spec(self) -> dict[str, Any]:
        """A JSON-able dict with ``"name"``; ``from_spec(s.to_spec())`` evaluates identically."""
        return {"name": self.name, **copy.deepcopy(self._spec)}

    def with_total(self, total: float) -> Schedule:
        """The same schedule planned for a new horizon ``total`` (e.g. on resume with a new budget).

        Phase lengths given in absolute units (``warmup``, ``decay``) are kept; fractions
        (``decay_fraction``) are re-applied to the new total.
        """
        from evertrain.schedules.registry import from_spec

        spec = self.to_spec()
        if "total" not in spec and self.total is None:
            raise ScheduleError(
                f"{self.name}: schedule has no 'total' parameter, so it cannot be given a new "
                "horizon; use evertrain.schedules.extend or join instead"
            )
        spec["total"] = total
        return from_spec(spec)

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self._spec.items())
        return f"{type(self).__name__}({params})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(repr(self.to_spec()))
