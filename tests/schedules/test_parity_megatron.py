"""Parity with megatron-core's ``OptimizerParamScheduler`` (WSD decay styles, cosine, linear).

megatron's convention (``optimizer_param_scheduler.py``): the constructor calls ``step(0)``, the
training loop calls ``step(1)`` after each optimizer step, so the update at 0-based step ``k``
uses ``get_lr`` at ``num_steps = k``: the same as ours. Its warmup is linear from ``init_lr``
(``num_steps <= warmup``), its anneal starts at ``lr_decay_steps - wsd_decay_steps`` and the
value is ``min_lr`` from ``lr_decay_steps`` on.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from evertrain.schedules import get

from .schedules_peers import assert_close

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    scheduler_module = pytest.importorskip(
        "megatron.core.optimizer_param_scheduler", reason="megatron-core comes with evertrain[dev]"
    )

MAX_LR, MIN_LR, INIT_LR = 3e-4, 3e-5, 1e-6
WARMUP, TOTAL, DECAY = 50, 600, 150

# megatron decay-style names -> ours
WSD_STYLES = {"linear": "linear", "cosine": "cosine", "exponential": "exp2", "minus_sqrt": "1-sqrt"}


class _Optimizer:
    """Just enough of a MegatronOptimizer: the scheduler only writes param_groups."""

    def __init__(self) -> None:
        self.param_groups = [{"lr": 0.0, "weight_decay": 0.0}]


def megatron_lrs(style: str, wsd_style: str | None = None, steps: int = TOTAL + 30) -> np.ndarray:
    logging.getLogger("megatron").setLevel(logging.ERROR)
    optimizer = _Optimizer()
    scheduler = scheduler_module.OptimizerParamScheduler(
        optimizer,
        init_lr=INIT_LR,
        max_lr=MAX_LR,
        min_lr=MIN_LR,
        lr_warmup_steps=WARMUP,
        lr_decay_steps=TOTAL,
        lr_decay_style=style,
        start_wd=0.0,
        end_wd=0.0,
        wd_incr_steps=TOTAL,
        wd_incr_style="constant",
        wsd_decay_steps=DECAY if style == "WSD" else None,
        lr_wsd_decay_style=wsd_style,
    )
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step(1)
    return np.asarray(lrs)


@pytest.mark.parametrize("megatron_style", list(WSD_STYLES))
def test_wsd_decay_styles(megatron_style):
    theirs = megatron_lrs("WSD", megatron_style)
    ours = get(
        "wsd",
        peak=MAX_LR,
        total=TOTAL,
        warmup=WARMUP,
        decay=DECAY,
        decay_shape=WSD_STYLES[megatron_style],
        floor=MIN_LR,
        warmup_start=INIT_LR,
    )
    assert_close(ours(np.arange(TOTAL + 30)), theirs)


@pytest.mark.parametrize("style", ["linear", "cosine"])
def test_linear_and_cosine(style):
    theirs = megatron_lrs(style)
    ours = get(style, peak=MAX_LR, total=TOTAL, warmup=WARMUP, floor=MIN_LR, warmup_start=INIT_LR)
    assert_close(ours(np.arange(TOTAL + 30)), theirs)


def test_inverse_square_root():
    theirs = megatron_lrs("inverse-square-root")
    # megatron: max(min_lr, max_lr * sqrt(warmup) / sqrt(t)) up to lr_decay_steps, min_lr after.
    ours = get("inverse_sqrt", peak=MAX_LR, warmup=WARMUP, floor=MIN_LR, warmup_start=INIT_LR)
    steps = np.arange(TOTAL + 30)
    values = ours(steps)
    inside = steps <= TOTAL
    assert_close(values[inside], theirs[inside])
    # Past lr_decay_steps megatron drops to min_lr; ours keeps following 1/sqrt(t) (it is an
    # open-ended schedule with no planned end).
    assert np.all(theirs[~inside] == MIN_LR) and np.all(values[~inside] > MIN_LR)
