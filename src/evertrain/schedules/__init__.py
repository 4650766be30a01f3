"""evertrain.schedules: learning rates as pure functions of training progress (steps or tokens).

>>> from evertrain.schedules import get
>>> s = get("wsd", peak=3e-4, total=24000, warmup=2160, decay_fraction=0.2, floor=3e-5)
>>> s(2160) == 3e-4
True

numpy only (no torch). See ``docs/schedules.md`` for every schedule with its formula.
"""

from evertrain.schedules import basic as _basic  # noqa: F401  (registers the families)
from evertrain.schedules import cyclic as _cyclic  # noqa: F401
from evertrain.schedules import families as _families  # noqa: F401
from evertrain.schedules import infinite as _infinite  # noqa: F401
from evertrain.schedules import refine as _refine  # noqa: F401
from evertrain.schedules import uba as _uba  # noqa: F401
from evertrain.schedules.algebra import (
    Clip,
    Join,
    Scale,
    Stretch,
    clip,
    extend,
    join,
    scale,
    stretch,
)
from evertrain.schedules.base import Schedule, ScheduleError
from evertrain.schedules.basic import WSD, Constant, Cosine, Linear, PiecewiseLinear
from evertrain.schedules.registry import from_spec, get, names, register
from evertrain.schedules.rewarm import Rewarm, rewarm
from evertrain.schedules.summary import key_points

__all__ = [
    "WSD",
    "Clip",
    "Rewarm",
    "Scale",
    "Stretch",
    "clip",
    "extend",
    "rewarm",
    "scale",
    "stretch",
    "Constant",
    "Cosine",
    "Join",
    "Linear",
    "PiecewiseLinear",
    "Schedule",
    "ScheduleError",
    "from_spec",
    "get",
    "join",
    "key_points",
    "names",
    "register",
]
