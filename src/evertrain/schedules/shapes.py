"""Phase shapes: how a phase moves from its start value ``v0`` to its end value ``v1``.

A phase spans progress ``[start, end)`` with length ``L = end - start``. With the elapsed fraction
``x = (t - start) / L`` and remaining fraction ``u = (end - t) / L``:

Decaying phases (``v1 < v0``) compute ``v = v1 + (v0 - v1) * w`` where ``w`` falls from 1 to 0:

==============  =========================================  ======================================
shape           w                                          reference
==============  =========================================  ======================================
linear          ``u``                                      Goyal et al. 2017; HF ``get_linear``
cosine          ``(1 + cos(pi x)) / 2``                    Loshchilov & Hutter 2017 (SGDR)
1-sqrt          ``1 - sqrt(x)``                            Hägele et al. 2024 ("Scaling Laws and
                                                           Compute-Optimal Training Beyond Fixed
                                                           Training Durations")
power           ``u ** power``                             polynomial decay (TF PolynomialDecay)
exponential     geometric: ``v = v0**u * v1**x``           Hu et al. 2024 (MiniCPM) exp decay
exp2            ``2 * 0.5**x - 1``                         megatron-core WSD ``exponential``
rex             ``u / (0.5 + 0.5 u)``                      Chen et al. 2022, "REX: Revisiting
                                                           Budgeted Training with an Improved
                                                           Schedule"
inverse_sqrt    ``(1/sqrt(1 + k x) - r) / (1 - r)``,       Ibrahim et al. 2024 (infinite schedules,
                ``r = 1/sqrt(1 + k)``, ``k = power``       inverse-sqrt cooldown)
cosine_power    ``(p**(c + 1) - p) / (p**2 - p)``,         Hundt et al. 2019 (sharpDARTS),
                ``c = (1 + cos(pi x)) / 2``, ``p=power``   cosine power annealing
==============  =========================================  ======================================

Rising phases (warmups, ``v1 > v0``) compute ``v = v0 + (v1 - v0) * p`` with ``p`` rising
0 -> 1: the decay shape mirrored in time, ``p(x) = w(1 - x)``, as Hugging Face
``get_wsd_schedule`` does. Written out: linear ``x``; cosine ``(1 - cos(pi x)) / 2``; 1-sqrt
``1 - sqrt(1 - x)``; power ``x ** power``; exp2 ``2 * 0.5**(1 - x) - 1``; rex
``x / (0.5 + 0.5 x)``; exponential is geometric in both directions (needs ``v0 > 0``).

Each formula is written the way the reference implementation writes it, so the parity tests hold
to the last bit that floating point allows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DECAY_SHAPES = (
    "linear",
    "cosine",
    "1-sqrt",
    "exponential",
    "power",
    "exp2",
    "rex",
    "cosine_power",
    "inverse_sqrt",
)
WARMUP_SHAPES = ("linear", "cosine", "exponential", "1-sqrt", "power")
# Internal: linear interpolation written as v0 + (v1 - v0) * x in both directions, the way
# torch.optim.lr_scheduler.OneCycleLR writes it (bit-for-bit parity).
LERP = "lerp"
# Shapes that interpolate geometrically: both ends must be > 0.
GEOMETRIC_SHAPES = ("exponential",)


# One formula per shape serves both paths: ``xp`` is the ``math`` module for scalars (the fast
# path, no numpy overhead) or ``numpy`` for arrays. ``0.5 ** x`` calls the same C ``pow`` as
# ``math.pow`` / ``np.power``, so both paths give bit-identical values.


def falling_weight(shape: str, x: Any, u: Any, power: float, xp: Any = math) -> Any:
    """Weight ``w`` of the start value in a decaying phase (1 at the start, 0 at the end)."""
    if shape == "linear":
        return u
    if shape == "cosine":
        return 0.5 * (1.0 + xp.cos(xp.pi * x))
    if shape == "1-sqrt":
        return 1.0 - xp.sqrt(x)
    if shape == "power":
        return u**power
    if shape == "exp2":
        return 2.0 * 0.5**x - 1.0
    if shape == "rex":
        return u / (0.5 + 0.5 * u)
    if shape == "cosine_power":
        c = 0.5 * (1.0 + xp.cos(xp.pi * x))
        return (power ** (c + 1.0) - power) / (power * power - power)
    if shape == "inverse_sqrt":
        r = 1.0 / (1.0 + power) ** 0.5
        return (1.0 / (1.0 + power * x) ** 0.5 - r) / (1.0 - r)
    if shape == LERP:
        return 1.0 - x
    raise ValueError(shape)


def rising_weight(shape: str, x: Any, u: Any, power: float, xp: Any = math) -> Any:
    """Weight ``p`` of the end value in a rising phase (0 at the start, 1 at the end)."""
    if shape == "linear":
        return x
    if shape == "cosine":
        return 0.5 * (1.0 - xp.cos(xp.pi * x))
    if shape == "1-sqrt":
        return 1.0 - xp.sqrt(1.0 - x)
    if shape == "power":
        return x**power
    if shape == "exp2":
        return 2.0 * 0.5 ** (1.0 - x) - 1.0
    if shape == "rex":
        return x / (0.5 + 0.5 * x)
    if shape == "cosine_power":
        c = 0.5 * (1.0 + xp.cos(xp.pi * u))
        return (power ** (c + 1.0) - power) / (power * power - power)
    if shape == "inverse_sqrt":
        r = 1.0 / (1.0 + power) ** 0.5
        return (1.0 / (1.0 + power * u) ** 0.5 - r) / (1.0 - r)
    if shape == LERP:
        return x
    raise ValueError(shape)


def falling_weight_np(shape: str, x: np.ndarray, u: np.ndarray, power: float) -> np.ndarray:
    return falling_weight(shape, x, u, power, np)


def rising_weight_np(shape: str, x: np.ndarray, u: np.ndarray, power: float) -> np.ndarray:
    return rising_weight(shape, x, u, power, np)
