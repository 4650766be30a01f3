"""Parity of schedule values with Hugging Face transformers' schedulers at every step (1e-12).

HF's ``LambdaLR`` schedules use the same convention as ours: the update at 0-based step ``k``
uses ``lr = base_lr * lambda(k)``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from evertrain.schedules import get

from .schedules_peers import assert_close, dummy_optimizer, torch_lrs

transformers = pytest.importorskip("transformers", reason="transformers comes with evertrain[dev]")
from transformers import get_scheduler, get_wsd_schedule  # noqa: E402

PEAK = 3e-4
TOTAL = 500
WARMUP = 40


def hf_lrs(name: str, steps: int = TOTAL + 1, **kwargs) -> np.ndarray:
    optimizer = dummy_optimizer(PEAK)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = get_scheduler(name, optimizer, **kwargs)
    return torch_lrs(scheduler, optimizer, steps)


STEPS = np.arange(TOTAL + 1)


def test_linear():
    theirs = hf_lrs("linear", num_warmup_steps=WARMUP, num_training_steps=TOTAL)
    assert_close(get("linear", peak=PEAK, total=TOTAL, warmup=WARMUP)(STEPS), theirs)


def test_cosine():
    theirs = hf_lrs("cosine", num_warmup_steps=WARMUP, num_training_steps=TOTAL)
    assert_close(get("cosine", peak=PEAK, total=TOTAL, warmup=WARMUP)(STEPS), theirs)


def test_cosine_with_min_lr():
    theirs = hf_lrs(
        "cosine_with_min_lr",
        num_warmup_steps=WARMUP,
        num_training_steps=TOTAL,
        scheduler_specific_kwargs={"min_lr_rate": 0.1},
    )
    ours = get("cosine", peak=PEAK, total=TOTAL, warmup=WARMUP, floor=0.1 * PEAK)
    assert_close(ours(STEPS), theirs)


def test_constant_with_warmup():
    theirs = hf_lrs("constant_with_warmup", num_warmup_steps=WARMUP)
    assert_close(get("constant", value=PEAK, warmup=WARMUP)(STEPS), theirs)


@pytest.mark.parametrize("timescale", [None, 100])
def test_inverse_sqrt(timescale):
    extra = {} if timescale is None else {"scheduler_specific_kwargs": {"timescale": timescale}}
    theirs = hf_lrs("inverse_sqrt", num_warmup_steps=WARMUP, **extra)
    ours = get("inverse_sqrt", peak=PEAK, warmup=WARMUP, timescale=timescale)
    assert_close(ours(STEPS), theirs)


def test_polynomial():
    theirs = hf_lrs(
        "polynomial",
        num_warmup_steps=WARMUP,
        num_training_steps=TOTAL,
        scheduler_specific_kwargs={"lr_end": 1e-6, "power": 2.0},
    )
    ours = get("polynomial", peak=PEAK, total=TOTAL, warmup=WARMUP, floor=1e-6, power=2.0)
    # HF writes pct_remaining = 1 - (t - W) / (T - W); ours (T - t) / (T - W): equal up to
    # one rounding of a number near 1, amplified by power near the end -> 1e-11 there.
    assert_close(ours(STEPS), theirs, rtol=1e-11)


@pytest.mark.parametrize("warmup_type", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("decay_type", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("min_lr_ratio", [0.0, 0.1])
def test_wsd_every_warmup_and_decay_type(warmup_type, decay_type, min_lr_ratio):
    decay = 120
    optimizer = dummy_optimizer(PEAK)
    scheduler = get_wsd_schedule(
        optimizer,
        num_warmup_steps=WARMUP,
        num_decay_steps=decay,
        num_training_steps=TOTAL,
        warmup_type=warmup_type,
        decay_type=decay_type,
        min_lr_ratio=min_lr_ratio,
    )
    theirs = torch_lrs(scheduler, optimizer, TOTAL + 50)
    # HF's WSD warmup starts from the floor (min_lr_ratio * peak), so warmup_start = floor.
    ours = get(
        "wsd",
        peak=PEAK,
        total=TOTAL,
        warmup=WARMUP,
        decay=decay,
        decay_shape=decay_type,
        warmup_shape=warmup_type,
        floor=min_lr_ratio * PEAK,
        warmup_start=min_lr_ratio * PEAK,
    )
    assert_close(ours(np.arange(TOTAL + 50)), theirs)


def test_wsd_via_get_scheduler_name():
    theirs = hf_lrs(
        "warmup_stable_decay",
        num_warmup_steps=WARMUP,
        num_training_steps=TOTAL,
        scheduler_specific_kwargs={"num_decay_steps": 100, "decay_type": "linear"},
    )
    ours = get("wsd", peak=PEAK, total=TOTAL, warmup=WARMUP, decay=100, decay_shape="linear")
    assert_close(ours(STEPS), theirs)
