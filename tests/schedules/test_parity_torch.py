"""Parity of schedule values with PyTorch's own schedulers at every step they define (1e-12)."""

from __future__ import annotations

import numpy as np
import pytest

from evertrain.schedules import get, join

from .schedules_peers import assert_close, dummy_optimizer, torch_lrs

torch = pytest.importorskip("torch", reason="torch comes with evertrain[train]")
from torch.optim import lr_scheduler  # noqa: E402

PEAK = 0.1


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_onecycle_two_and_three_phase(three_phase, anneal):
    total_steps, pct_start = 1000, 0.25
    optimizer = dummy_optimizer(PEAK)
    scheduler = lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=PEAK,
        total_steps=total_steps,
        pct_start=pct_start,
        anneal_strategy=anneal,
        three_phase=three_phase,
        cycle_momentum=False,
    )
    theirs = torch_lrs(scheduler, optimizer, total_steps)
    # torch reaches the peak at step pct_start * total_steps - 1 and the final LR at the last
    # step, total_steps - 1: in our convention that is warmup = 249 and total = 999.
    ours = get(
        "onecycle",
        peak=PEAK,
        total=total_steps - 1,
        warmup=pct_start * total_steps - 1,
        anneal=anneal,
        three_phase=three_phase,
    )
    values = ours(np.arange(total_steps))
    assert_close(values[:-1], theirs[:-1])
    # At the last step torch computes (final - peak) * 1.0 + peak, which cancels to within
    # ~1e-11 of final; we return the final LR (peak / div_factor / final_div_factor) exactly.
    final = PEAK / 25.0 / 1e4
    assert values[-1] == final
    assert theirs[-1] == pytest.approx(final, rel=1e-10)


def test_onecycle_pct_start_convention_differs_by_one_step_on_purpose():
    """With ``pct_start`` we put the peak at ``pct_start * total`` and the final LR at ``total``,
    like every other schedule here (``s(warmup) == peak``, ``s(total) == floor``). torch puts
    them one step earlier (``pct_start * total_steps - 1`` and ``total_steps - 1``) so that its
    last ``step()`` lands on the final LR. Both are self-consistent; we keep one convention
    across all schedules, and the exact torch curve is one ``warmup=``/``total=`` away (above).
    """
    total_steps, pct_start = 1000, 0.25
    optimizer = dummy_optimizer(PEAK)
    scheduler = lr_scheduler.OneCycleLR(
        optimizer, max_lr=PEAK, total_steps=total_steps, pct_start=pct_start, cycle_momentum=False
    )
    theirs = torch_lrs(scheduler, optimizer, total_steps)
    ours = get("onecycle", peak=PEAK, total=total_steps, pct_start=pct_start)
    assert int(np.argmax(theirs)) == 249 and theirs[249] == PEAK
    assert ours(250) == PEAK and ours(249) < PEAK
    assert theirs[-1] == pytest.approx(PEAK / 25 / 1e4, rel=1e-10)
    assert ours(total_steps) == pytest.approx(PEAK / 25 / 1e4, rel=1e-12)
    assert ours(total_steps - 1) > theirs[-1]


@pytest.mark.parametrize(("period", "mult"), [(50, 1), (20, 2), (7, 3)])
def test_cosine_annealing_warm_restarts(period, mult):
    steps = 700
    optimizer = dummy_optimizer(PEAK)
    scheduler = lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=period, T_mult=mult, eta_min=1e-4
    )
    theirs = torch_lrs(scheduler, optimizer, steps)
    ours = get("sgdr", peak=PEAK, period=period, period_mult=mult, floor=1e-4)
    assert_close(ours(np.arange(steps)), theirs)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_lr(mode):
    steps = 600
    optimizer = dummy_optimizer(PEAK)
    scheduler = lr_scheduler.CyclicLR(
        optimizer,
        base_lr=0.01,
        max_lr=PEAK,
        step_size_up=40,
        step_size_down=60,
        mode=mode,
        gamma=0.999,
        cycle_momentum=False,
    )
    theirs = torch_lrs(scheduler, optimizer, steps)
    ours = get("cyclic", peak=PEAK, floor=0.01, step_up=40, step_down=60, mode=mode, gamma=0.999)
    assert_close(ours(np.arange(steps)), theirs)


def test_step_multistep_exponential():
    steps = 300
    for make, spec in [
        (
            lambda o: lr_scheduler.StepLR(o, step_size=30, gamma=0.5),
            dict(name="step", step_size=30, gamma=0.5),
        ),
        (
            lambda o: lr_scheduler.MultiStepLR(o, milestones=[50, 120, 121], gamma=0.3),
            dict(name="multistep", milestones=[50, 120, 121], gamma=0.3),
        ),
    ]:
        optimizer = dummy_optimizer(PEAK)
        theirs = torch_lrs(make(optimizer), optimizer, steps)
        name = spec.pop("name")
        assert_close(get(name, peak=PEAK, **spec)(np.arange(steps)), theirs)
    # ExponentialLR multiplies recursively (lr *= gamma each step): 300 roundings -> ~1e-13.
    optimizer = dummy_optimizer(PEAK)
    theirs = torch_lrs(lr_scheduler.ExponentialLR(optimizer, gamma=0.99), optimizer, steps)
    assert_close(get("exponential", peak=PEAK, gamma=0.99)(np.arange(steps)), theirs, rtol=1e-12)


WARMUP, TOTAL = 30, 200


def _warmup_then_linear_decay_torch():
    optimizer = dummy_optimizer(PEAK)
    warm = lr_scheduler.LinearLR(optimizer, start_factor=0.01, end_factor=1.0, total_iters=WARMUP)
    decay = lr_scheduler.LinearLR(
        optimizer, start_factor=1.0, end_factor=0.1, total_iters=TOTAL - WARMUP
    )
    scheduler = lr_scheduler.SequentialLR(optimizer, [warm, decay], milestones=[WARMUP])
    return torch_lrs(scheduler, optimizer, TOTAL + 20)


def test_linear_lr_plus_sequential_lr():
    """LinearLR warmup (from 1% of peak) then LinearLR decay to 10%, glued by SequentialLR."""
    theirs = _warmup_then_linear_decay_torch()
    ours = get(
        "linear", peak=PEAK, total=TOTAL, warmup=WARMUP, warmup_start=0.01 * PEAK, floor=0.1 * PEAK
    )
    steps = np.arange(TOTAL + 20)
    # LinearLR is chainable/recursive (lr_k = lr_{k-1} * ratio): a few ulps of drift, 1e-12 holds.
    assert_close(ours(steps), theirs)
    # The same curve as an explicit join of two schedules, each in local time.
    joined = join(
        [
            get("linear", peak=PEAK, total=WARMUP, warmup=WARMUP, warmup_start=0.01 * PEAK),
            get("linear", peak=PEAK, total=TOTAL - WARMUP, floor=0.1 * PEAK),
        ],
        [WARMUP],
    )
    assert_close(joined(steps), theirs)


def test_linear_lr_plus_cosine_annealing_via_sequential_lr():
    """SequentialLR hands over at the milestone (step 30 uses the second scheduler's step 0).

    Older torch releases stepped the second scheduler once too often at the milestone; the
    installed torch does not, and ours (s(warmup) == peak, then cosine in local time) matches
    it at every step, the milestone included.
    """
    optimizer = dummy_optimizer(PEAK)
    warm = lr_scheduler.LinearLR(optimizer, start_factor=0.1, end_factor=1.0, total_iters=WARMUP)
    cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=TOTAL - WARMUP, eta_min=0.0)
    scheduler = lr_scheduler.SequentialLR(optimizer, [warm, cosine], milestones=[WARMUP])
    theirs = torch_lrs(scheduler, optimizer, TOTAL + 1)
    ours = get("cosine", peak=PEAK, total=TOTAL, warmup=WARMUP, warmup_start=0.1 * PEAK)
    values = ours(np.arange(TOTAL + 1))
    assert values[WARMUP] == PEAK and theirs[WARMUP] == pytest.approx(PEAK, rel=1e-15)
    # CosineAnnealingLR is recursive; its value at T_max cancels to ~1e-18 instead of 0.
    assert_close(values[:-1], theirs[:-1])
    assert values[-1] == 0.0 and abs(theirs[-1]) < 1e-15
