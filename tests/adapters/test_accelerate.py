"""ScheduleLR on optimizers that wrap another one (Accelerate's AcceleratedOptimizer).

HF ``Trainer`` and every Accelerate loop hold an ``AcceleratedOptimizer``: a torch ``Optimizer``
subclass that never runs ``Optimizer.__init__`` and forwards to the optimizer it wraps.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
accelerate = pytest.importorskip("accelerate", reason="accelerate comes with the dev extra")

from evertrain.adapters.torch import ScheduleLR  # noqa: E402
from evertrain.schedules import from_spec  # noqa: E402

SPEC = "wsd:peak=1e-2,total=12,warmup=3,decay_fraction=0.5,floor=1e-3"


def _prepared(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    accelerator = accelerate.Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(model, optimizer)
    return model, optimizer


def _train(model, optimizer, scheduler, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        model(torch.ones(3, 4)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    return lrs


def test_schedule_lr_drives_an_accelerated_optimizer_like_lambda_lr():
    model, optimizer = _prepared()
    assert type(optimizer).__name__ == "AcceleratedOptimizer"
    ours = _train(model, optimizer, ScheduleLR(optimizer, SPEC), 12)

    schedule = from_spec(SPEC)
    peer_model, peer_optimizer = _prepared()
    for group in peer_optimizer.param_groups:
        group["lr"] = 1.0  # LambdaLR multiplies the initial LR by the lambda
    lambda_lr = torch.optim.lr_scheduler.LambdaLR(peer_optimizer, lambda step: schedule(step))
    peer = _train(peer_model, peer_optimizer, lambda_lr, 12)
    assert ours == pytest.approx(peer, rel=1e-15, abs=0)
    assert ours[3] == 1e-2  # the peak, reached exactly after warmup


def test_loading_the_wrapped_optimizer_state_reapplies_the_scheduled_lr():
    model, optimizer = _prepared()
    scheduler = ScheduleLR(optimizer, SPEC)
    _train(model, optimizer, scheduler, 5)
    expected = optimizer.param_groups[0]["lr"]
    saved_optimizer, saved_scheduler = optimizer.state_dict(), scheduler.state_dict()

    model2, optimizer2 = _prepared()
    scheduler2 = ScheduleLR(optimizer2, SPEC)
    scheduler2.load_state_dict(saved_scheduler)
    # An optimizer state saved mid-run carries that run's LR; loading it after the scheduler
    # (Accelerate's load_state order) must leave the scheduler's LR, not a stale one, in place.
    saved_optimizer["param_groups"][0]["lr"] = 123.0
    optimizer2.load_state_dict(saved_optimizer)
    assert optimizer2.param_groups[0]["lr"] == expected
    assert scheduler2.steps == 5
