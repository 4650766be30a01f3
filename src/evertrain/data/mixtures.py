"""Mixture recipes as JSON-able weight specs, and a way to look at them before training.

Every function returns ``{source name: weight spec}`` for :class:`MixtureSampler` (or the
``data.mixture`` field of a train config). Weights are functions of tokens drawn so far; they
are built from ``evertrain.schedules``' ``piecewise_linear`` (linear between points, constant
outside), so a spec is plain data: it can be saved, diffed and plotted. A step at token ``t`` is
written as the two points ``(t - 1, before), (t, after)``: progress is an integer number of
tokens, so the draw at ``t`` sees exactly ``after`` and every draw before it exactly ``before``.

>>> replay("old", "new", fraction=0.05, after_tokens=10_000_000)["old"]["points"]
[[0, 0.0], [9999999, 0.0], [10000000, 0.05]]
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evertrain._atomic import atomic_write_bytes
from evertrain._paths import check_output_file
from evertrain.data.errors import DataError
from evertrain.data.sampler import (
    PowerLawRehearsal,
    initial_clocks,
    raw_weights,
    weight_function,
)


def _fraction(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise DataError(f"{field}={value!r} must be a fraction in [0, 1]")
    return float(value)


def _tokens(field: str, value: Any, low: int = 0) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < low
    ):
        raise DataError(f"{field}={value!r} must be a number of tokens >= {low}")
    return int(value)


def _piecewise(points: list[tuple[int, float]]) -> dict[str, Any]:
    kept: list[list[Any]] = []
    for t, v in points:
        if kept and kept[-1][0] == int(t):
            kept[-1][1] = float(v)  # a step at token 1: (0, before) and (0, first) coincide
            continue
        kept.append([int(t), float(v)])
    return {"name": "piecewise_linear", "points": kept, "unit": "tokens"}


def replay(old: str, new: str, fraction: float, *, after_tokens: int = 0) -> dict[str, Any]:
    """Replay ``fraction`` of the ``old`` data; with ``after_tokens``, only after a warm-up of new data.

    ``replay("d0", "d1", 0.25)`` is 25% old data throughout; ``replay("d0", "d1", 0.05,
    after_tokens=10**7)`` is new data only for 10M tokens, then 5% replay.
    """
    fraction = _fraction("fraction", fraction)
    after = _tokens("after_tokens", after_tokens)
    if after == 0:
        return {old: fraction, new: 1.0 - fraction}
    return {
        old: _piecewise([(0, 0.0), (after - 1, 0.0), (after, fraction)]),
        new: _piecewise([(0, 1.0), (after - 1, 1.0), (after, 1.0 - fraction)]),
    }


def linear(
    start: Mapping[str, float], end: Mapping[str, float], *, end_tokens: int, start_tokens: int = 0
) -> dict[str, Any]:
    """Weights moving linearly from ``start`` to ``end`` between ``start_tokens`` and ``end_tokens``."""
    if set(start) != set(end):
        raise DataError(
            f"start names {sorted(start)} and end names {sorted(end)} differ: give both the same sources"
        )
    begin = _tokens("start_tokens", start_tokens)
    finish = _tokens("end_tokens", end_tokens, low=begin + 1)
    return {
        name: _piecewise([(begin, _weight(name, start[name])), (finish, _weight(name, end[name]))])
        for name in start
    }


def _weight(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise DataError(f"weight of {name!r} is {value!r}: weights must be finite numbers >= 0")
    return float(value)


def stages(schedule: Sequence[tuple[int, Mapping[str, float]]]) -> dict[str, Any]:
    """Piecewise-constant weights: ``[(0, {...}), (t1, {...}), ...]``, each stage from its token on.

    A quality-ascending curriculum: ``stages([(0, {"web": .7, "books": .3}), (5e7, {"web": .3,
    "books": .7})])``. Every stage must name the same sources; the first starts at token 0.
    """
    if not schedule:
        raise DataError("stages is empty: give at least one (start_token, weights) pair")
    names = set(schedule[0][1])
    starts = [_tokens(f"stages[{i}] start", t) for i, (t, _) in enumerate(schedule)]
    if starts[0] != 0:
        raise DataError(f"the first stage starts at {starts[0]}: it must start at token 0")
    if any(b <= a for a, b in zip(starts, starts[1:], strict=False)):
        raise DataError(f"stage starts {starts} must strictly increase")
    for i, (_, weights) in enumerate(schedule):
        if set(weights) != names:
            raise DataError(
                f"stage {i} names {sorted(weights)}, stage 0 names {sorted(names)}: name the same sources"
            )
    result: dict[str, Any] = {}
    for name in schedule[0][1]:
        points = [(0, _weight(name, schedule[0][1][name]))]
        for start, (_, weights) in zip(starts[1:], schedule[1:], strict=True):
            points += [(start - 1, points[-1][1]), (start, _weight(name, weights[name]))]
        result[name] = _piecewise(points)
    return result


def cyclic(
    a: str, b: str, *, low: float, high: float, period_tokens: int, total_tokens: int
) -> dict[str, Any]:
    """``a``'s fraction cycles linearly low -> high -> low every ``period_tokens``; ``b`` gets the rest."""
    low, high = _fraction("low", low), _fraction("high", high)
    period = _tokens("period_tokens", period_tokens, low=2)
    total = _tokens("total_tokens", total_tokens, low=1)
    half = period / 2
    points = [
        (round(k * half), low if k % 2 == 0 else high)
        for k in range(int(math.ceil(total / half)) + 1)
    ]
    return {
        a: _piecewise(points),
        b: _piecewise([(t, 1.0 - v) for t, v in points]),
    }


def rehearsal(
    weight: float, *, exponent: float = 0.5, scale_tokens: float = 1e6, last_seen: int = 0
) -> dict[str, Any]:
    """Power-law rehearsal spec: ``weight * (1 + (t - t_last) / scale_tokens) ** -exponent``.

    ``t_last`` is when the source was last drawn (see :mod:`evertrain.data.sampler`).
    """
    return PowerLawRehearsal(
        weight, exponent=exponent, scale_tokens=scale_tokens, last_seen=last_seen
    ).to_spec()


def mixture_table(
    weights: Mapping[str, Any], total_tokens: int, points: int = 11
) -> dict[str, Any]:
    """Normalised probabilities of each source at ``points`` evenly spaced token counts.

    Rehearsal sources are shown as if never drawn (their weight only decays), the lower envelope.
    """
    total = _tokens("total_tokens", total_tokens, low=1)
    tokens = np.linspace(0, total, points)
    functions = [weight_function(str(name), spec) for name, spec in weights.items()]
    raw = raw_weights(functions, tokens, initial_clocks(functions))
    if not np.all(np.isfinite(raw)) or np.any(raw < 0):
        raise DataError(
            "some weight is negative or not finite within [0, total_tokens]: fix the recipe"
        )
    totals = raw.sum(axis=0)
    if np.any(totals <= 0):
        raise DataError(
            f"all weights are 0 at tokens={int(tokens[np.argmax(totals <= 0)])}: fix the recipe"
        )
    probabilities = raw / totals
    return {
        "tokens": tokens.astype(np.int64).tolist(),
        **{str(n): p.tolist() for n, p in zip(weights, probabilities, strict=True)},
    }


def plot_mixture(
    weights: Mapping[str, Any], total_tokens: int, path: str | Path, *, title: str | None = None
) -> Path:
    """Stacked-area plot of the mixture probabilities over training, written atomically as PNG/SVG/PDF."""
    path = check_output_file(path, "plot path", error=DataError)  # before matplotlib's import
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = mixture_table(weights, total_tokens, points=400)
    tokens = np.array(table.pop("tokens"), dtype=np.float64)
    figure, axes = plt.subplots(figsize=(7, 3.5))
    axes.stackplot(tokens, *table.values(), labels=list(table), alpha=0.85)
    axes.set(xlim=(0, tokens[-1]), ylim=(0, 1), xlabel="tokens drawn", ylabel="share of sequences")
    axes.set_title(title or "data mixture over training")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=120)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path
