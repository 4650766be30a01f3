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


# ---- prepare_scheduler: once per optimizer update, whatever Accelerate's stepping rules ------

from evertrain.adapters.accelerate import prepare_scheduler  # noqa: E402


def _accumulating_loop(scheduler_factory, *, accumulation: int, batches: int):
    accelerate.state.AcceleratorState._reset_state(True)
    accelerator = accelerate.Accelerator(cpu=True, gradient_accumulation_steps=accumulation)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    model, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=0.0))
    scheduler = scheduler_factory(accelerator, optimizer)
    lrs = []
    for _ in range(batches):
        with accelerator.accumulate(model):
            model(torch.ones(3, 4)).sum().backward()
            if accelerator.sync_gradients:
                lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    return lrs, scheduler


def test_prepare_scheduler_steps_once_per_update_with_gradient_accumulation():
    schedule = from_spec(SPEC)
    lrs, scheduler = _accumulating_loop(
        lambda acc, opt: prepare_scheduler(acc, opt, SPEC), accumulation=3, batches=12 * 3
    )
    assert lrs == [schedule(k) for k in range(12)]
    assert scheduler.scheduler.steps == 12


def test_prepare_scheduler_ignores_num_processes(monkeypatch):
    """Accelerate steps a prepared scheduler num_processes times per update (split_batches=False);
    an evertrain schedule counts updates, so prepare_scheduler steps it once."""
    import accelerate.scheduler as accelerated

    class FourProcesses:
        num_processes = 4

    monkeypatch.setattr(accelerated, "AcceleratorState", FourProcesses)
    schedule = from_spec(SPEC)
    ours, _ = _accumulating_loop(
        lambda acc, opt: prepare_scheduler(acc, opt, SPEC), accumulation=1, batches=6
    )
    assert ours == [schedule(k) for k in range(6)]
    # The plain accelerator.prepare(scheduler) would have run the schedule 4x too fast.
    plain, _ = _accumulating_loop(
        lambda acc, opt: acc.prepare(ScheduleLR(opt, SPEC)), accumulation=1, batches=3
    )
    assert plain == [schedule(0), schedule(4), schedule(8)]


def test_accelerate_example_resumes_with_the_same_lr_sequence(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "accelerate_loop.py"
    spec = importlib.util.spec_from_file_location("accelerate_loop_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    schedule = from_spec(example.SPEC)
    full = example.main(accumulation=2)
    assert full == [schedule(k) for k in range(12)]
    first = example.main(accumulation=2, checkpoint_dir=str(tmp_path), stop_after=5)
    rest = example.main(accumulation=2, checkpoint_dir=str(tmp_path), resume=True)
    assert len(first) == 5 and first + rest == full
