"""ScheduleLR.set_horizon mid-decay continues from the LR reached (no jump back to the peak)."""

from __future__ import annotations

import warnings

import pytest
import torch

from evertrain.adapters._common import AdapterError
from evertrain.adapters.torch import ScheduleLR
from evertrain.schedules import from_spec

WSD = {"name": "wsd", "peak": 1e-3, "total": 100, "warmup": 10, "decay": 40, "floor": 1e-5}


def scheduler_at(steps: int, spec: dict = WSD) -> tuple[torch.optim.Optimizer, ScheduleLR]:
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.0)
    scheduler = ScheduleLR(optimizer, spec)
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    return optimizer, scheduler


def lrs(optimizer: torch.optim.Optimizer, scheduler: ScheduleLR, steps: int) -> list[float]:
    used = []
    for _ in range(steps):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return used


def test_mid_decay_continues_from_the_lr_reached_and_decays_to_the_new_end() -> None:
    optimizer, scheduler = scheduler_at(80)  # the decay began at 60
    reached = optimizer.param_groups[0]["lr"]
    assert reached < 0.7e-3
    with pytest.warns(
        UserWarning,
        match=r"set_horizon: total: 100 -> 200 .*past the start of the decay.*replan=True",
    ):
        scheduler.set_horizon(200)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(reached)
    used = lrs(optimizer, scheduler, 120)
    assert max(used) <= reached * (1 + 1e-12)  # never back up to the peak
    assert all(b <= a for a, b in zip(used, used[1:], strict=False))  # still decaying
    assert scheduler.schedule(200) == pytest.approx(1e-5)  # the original final LR at the new end
    # the next checkpoint carries the extended plan, and it round-trips
    assert from_spec(scheduler.state_dict()["spec"])(150) == scheduler.schedule(150)


def test_replan_true_keeps_the_old_re_planning_and_names_the_jump() -> None:
    optimizer, scheduler = scheduler_at(80)
    with pytest.warns(UserWarning, match=r"total: 100 -> 200"):
        scheduler.set_horizon(200, replan=True)
    assert optimizer.param_groups[0]["lr"] == 1e-3  # with_total: the decay moved to 160..200


def test_before_the_decay_it_is_the_same_schedule_re_planned() -> None:
    optimizer, scheduler = scheduler_at(30)
    with pytest.warns(UserWarning, match=r"set_horizon: total: 100 -> 200 \(at progress 30 steps"):
        scheduler.set_horizon(200)
    assert scheduler.schedule.to_spec() == from_spec({**WSD, "total": 200}).to_spec()


def test_a_horizon_already_passed_is_refused() -> None:
    _, scheduler = scheduler_at(80)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AdapterError, match="already at 80 steps"):
            scheduler.set_horizon(70)
