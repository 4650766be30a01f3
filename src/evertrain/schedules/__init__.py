"""evertrain.schedules: learning rates as pure functions of training progress (steps or tokens).

>>> from evertrain.schedules import get
>>> s = get("wsd", peak=3e-4, total=24000, warmup=2160, decay_fraction=0.2, floor=3e-5)
>>> s(2160) == 3e-4
True

numpy only (no torch). See ``docs/schedules.md`` for every schedule with its formula.
"""

from evertrain.schedules import basic as _basic  # noqa: F401  (registers the families)
from evertrain.schedules.algebra import Join, join
from evertrain.schedules.base import Schedule, ScheduleError
from evertrain.schedules.basic import WSD, Constant, Cosine, Linear, PiecewiseLinear
from evertrain.schedules.registry import from_spec, get, names, register

__all__ = [
    "WSD",
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
    "names",
    "register",
]
