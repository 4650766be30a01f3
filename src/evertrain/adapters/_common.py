"""Pieces every adapter shares, free of torch and JAX so that any binding can import them."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evertrain.schedules import Schedule, from_spec

SpecLike = Schedule | Mapping[str, Any] | str | os.PathLike[str]


class AdapterError(ValueError):
    """Bad input to a framework adapter; the message names the argument and the fix."""


def resolve_schedule(spec: SpecLike, *, what: str = "spec") -> Schedule:
    """Turn a :class:`Schedule`, a spec dict, an inline ``name:key=value`` string or a YAML/JSON path
    into a :class:`Schedule`. All LR math stays in :mod:`evertrain.schedules`."""
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, Mapping | str | Path | os.PathLike):
        return from_spec(dict(spec) if isinstance(spec, Mapping) else spec)
    raise AdapterError(
        f"{what} must be a Schedule, a spec dict, an inline 'name:key=value' string or a path "
        f"to a .yaml/.json spec, got {type(spec).__name__}"
    )


def spec_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """Name what changed between two spec dicts, e.g. ``"total: 24000 -> 48000"``.

    Nested specs (``join`` children, ...) are compared as whole values; the message lists every key
    whose value differs, in a stable order, so a warning says exactly which knob moved.
    """
    changes = []
    for key in list(old) + [k for k in new if k not in old]:
        before, after = old.get(key, "<unset>"), new.get(key, "<unset>")
        if before != after:
            changes.append(f"{key}: {before} -> {after}")
    return ", ".join(changes)


def check_finite_positive(value: float, *, what: str) -> float:
    """Validate a multiplier or count: finite and >= 0, else an :class:`AdapterError` naming it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AdapterError(f"{what}={value!r} is not a number: pass a finite number >= 0") from None
    if not math.isfinite(number) or number < 0:
        raise AdapterError(f"{what}={value!r} is invalid: pass a finite number >= 0")
    return number
