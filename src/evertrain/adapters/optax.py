"""An evertrain schedule as an optax schedule: ``count -> lr``.

optax calls a schedule with the optimizer's update count (0 for the first update), which matches
evertrain's convention that update ``k`` uses ``s(k)``. JAX stays optional: this module never
imports it at top level. The returned callable

* takes a Python/numpy number or array and returns the schedule's float / float64 array (numpy
  path, no JAX needed);
* takes a JAX array or tracer and evaluates the schedule's formulas with ``jax.numpy``
  (:meth:`Schedule.evaluate_xp`), so it is traced, jitted and vmapped like optax's own schedules:
  no host round-trip, nothing but ``jax.numpy`` operations in the jaxpr.

Every family except ``sgdr``, ``cyclic`` and ``power`` (and composites holding one of them) has
an ``xp`` formula. Those three are evaluated on the host through ``jax.pure_callback`` (one host
round-trip per update); :func:`is_traceable` says which path a schedule takes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from evertrain.adapters._common import AdapterError, SpecLike, resolve_schedule

__all__ = ["to_optax", "is_traceable"]


def _is_jax_value(value: Any) -> bool:
    # Only look for JAX if the caller already imported it: a JAX array cannot exist otherwise.
    jax = sys.modules.get("jax")
    if jax is None:
        return False
    # Tracers are jax.Array instances in current JAX; the Tracer check covers older releases.
    tracer = getattr(getattr(jax, "core", None), "Tracer", None)
    return isinstance(value, jax.Array) or (tracer is not None and isinstance(value, tracer))


def is_traceable(spec: SpecLike) -> bool:
    """Whether ``to_optax(spec)`` evaluates with ``jax.numpy`` (True) or a host callback (False)."""
    schedule = resolve_schedule(spec)
    try:
        schedule.evaluate_xp(np.zeros(1), np)
    except NotImplementedError:
        return False
    return True


def to_optax(spec: SpecLike, *, tokens_per_step: int | None = None) -> Callable[[Any], Any]:
    """Return ``schedule(count) -> lr`` for ``optax.adamw(learning_rate=...)`` and friends.

    Args:
        spec: a Schedule, spec dict, inline ``"name:key=value"`` string or YAML/JSON path.
        tokens_per_step: required for token-unit schedules, whose progress is
            ``count * tokens_per_step`` (optax counts updates, not tokens).

    Example::

        import optax
        from evertrain.adapters.optax import to_optax
        opt = optax.adamw(learning_rate=to_optax("cosine:peak=1e-3,total=1000,warmup=100"))
    """
    schedule = resolve_schedule(spec)
    if schedule.unit == "tokens":
        if (
            tokens_per_step is None
            or isinstance(tokens_per_step, bool)
            or int(tokens_per_step) != tokens_per_step
            or tokens_per_step <= 0
        ):
            raise AdapterError(
                f"schedule has unit='tokens' but tokens_per_step={tokens_per_step!r}: optax counts "
                "updates, so pass tokens_per_step=<tokens in one update> (an integer > 0)"
            )
        scale = float(tokens_per_step)
    else:
        scale = 1.0

    traceable = is_traceable(schedule)

    def host_eval(count: np.ndarray, dtype: np.dtype) -> np.ndarray:
        progress = np.asarray(count, dtype=np.float64) * scale
        return np.asarray(schedule(progress), dtype=dtype)

    def optax_schedule(count: Any) -> Any:
        if _is_jax_value(count):
            import jax
            import jax.numpy as jnp

            # float32 unless the user enabled x64, the dtype optax's own schedules return.
            dtype = jnp.result_type(float)
            if traceable:
                progress = jnp.asarray(count, dtype=dtype) * scale
                return schedule.evaluate_xp(progress, jnp).astype(dtype)
            shape = jax.ShapeDtypeStruct(jnp.shape(count), dtype)
            return jax.pure_callback(
                lambda c: host_eval(c, np.dtype(dtype)), shape, count, vmap_method="broadcast_all"
            )
        if isinstance(count, np.ndarray) and count.ndim > 0:
            return schedule(np.asarray(count, dtype=np.float64) * scale)
        return schedule(float(count) * scale)

    optax_schedule.schedule = schedule  # type: ignore[attr-defined]
    optax_schedule.__doc__ = f"optax schedule for {schedule!r}"
    return optax_schedule
