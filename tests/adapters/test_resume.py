"""Resume: save optimizer + scheduler, load into fresh ones, continue; LRs match an uninterrupted run."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evertrain.adapters import AdapterError
from evertrain.adapters.torch import ScheduleLR
from evertrain.schedules import ScheduleError, from_spec

WSD = {
    "name": "wsd",
    "peak": 1e-3,
    "total": 60,
    "warmup": 6,
    "decay_fraction": 0.25,
    "decay_shape": "cosine",
    "floor": 1e-5,
}


def fresh(
    spec, *, seed: int = 0, **kwargs
) -> tuple[torch.nn.Module, torch.optim.Optimizer, ScheduleLR]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(
        [
            {"params": [model.weight], "weight_decay": 0.1},
            {"params": [model.bias], "weight_decay": 0.0},
        ],
        lr=123.0,  # deliberately wrong: the scheduler must own the LR
    )
    return model, optimizer, ScheduleLR(optimizer, spec, **kwargs)


def train(
    model, optimizer, scheduler, steps: int, tokens: list[int] | None = None
) -> list[list[float]]:
    """Real optimizer steps on a fixed regression batch; returns the LRs each update used."""
    x, y = torch.ones(8, 4), torch.zeros(8, 2)
    used = []
    for i in range(steps):
        used.append([group["lr"] for group in optimizer.param_groups])
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step(tokens=None if tokens is None else tokens[i])
    return used


def checkpoint(model, optimizer, scheduler) -> dict:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    # Round-trip through torch.save so nothing aliases the live objects.
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def restore(state, spec, **kwargs):
    model, optimizer, scheduler = fresh(spec, seed=1, **kwargs)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return model, optimizer, scheduler


@pytest.mark.parametrize("split", [1, 6, 30, 59])
def test_resume_in_steps_matches_uninterrupted_run_at_every_step(split):
    reference = train(*fresh(WSD), 70)
    model, optimizer, scheduler = fresh(WSD, group_multipliers=[1.0, 0.5])
    first = train(model, optimizer, scheduler, split)
    state = checkpoint(model, optimizer, scheduler)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no multipliers given: the checkpoint's apply, silently
        model, optimizer, scheduler = restore(state, WSD)
    second = train(model, optimizer, scheduler, 70 - split)
    resumed = first + second
    assert [row[0] for row in resumed] == [row[0] for row in reference]
    assert [row[1] for row in resumed] == [
        row[0] * 0.5 for row in reference
    ]  # checkpoint's multipliers
    schedule = from_spec(WSD)
    assert [row[0] for row in resumed] == [schedule(k) for k in range(70)]


def test_resume_across_a_batch_size_change_in_token_units():
    spec = {**WSD, "total": 6_000, "warmup": 600, "unit": "tokens"}
    tokens = [64] * 20 + [128] * 20 + [256] * 10
    reference = train(*fresh(spec), len(tokens), tokens)
    model, optimizer, scheduler = fresh(spec, tokens_per_step=64)
    first = train(model, optimizer, scheduler, 20)  # tokens_per_step feeds the small batches
    state = checkpoint(model, optimizer, scheduler)
    # The resumed run doubles the batch: a step-count schedule would now be wrong, tokens are not.
    model, optimizer, scheduler = restore(state, spec, tokens_per_step=128)
    second = train(model, optimizer, scheduler, 20)
    third = train(model, optimizer, scheduler, 10, [256] * 10)
    assert first + second + third == reference
    assert scheduler.tokens_seen == sum(tokens)
    schedule = from_spec(spec)
    seen = [sum(tokens[:k]) for k in range(len(tokens))]
    assert [row[0] for row in reference] == [schedule(t) for t in seen]


def test_checkpoint_wins_over_a_different_constructor_spec_with_a_warning():
    model, optimizer, scheduler = fresh(WSD)
    train(model, optimizer, scheduler, 20)
    state = checkpoint(model, optimizer, scheduler)
    longer = {**WSD, "total": 120}
    with pytest.warns(UserWarning, match=r"total: 60 -> 120.*checkpoint wins.*override_spec=True"):
        model, optimizer, scheduler = restore(state, longer)
    assert scheduler.schedule.total == 60
    assert optimizer.param_groups[0]["lr"] == from_spec(WSD)(20)


def test_new_horizon_on_purpose_warns_and_continues_from_progress():
    model, optimizer, scheduler = fresh(WSD)
    train(model, optimizer, scheduler, 30)
    state = checkpoint(model, optimizer, scheduler)
    longer = {**WSD, "total": 120}
    with pytest.warns(UserWarning, match=r"override_spec=True: total: 60 -> 120"):
        model, optimizer, scheduler = restore(state, longer, override_spec=True)
    new_schedule = from_spec(longer)
    used = train(model, optimizer, scheduler, 90)
    assert [row[0] for row in used] == [new_schedule(k) for k in range(30, 120)]

    # The same through set_horizon after a plain resume.
    model, optimizer, scheduler = restore(state, WSD)
    with pytest.warns(UserWarning, match=r"set_horizon: total: 60 -> 120 \(at progress 30 steps"):
        scheduler.set_horizon(120)
    assert optimizer.param_groups[0]["lr"] == new_schedule(30)
    assert (
        scheduler.state_dict()["spec"]["total"] == 120
    )  # the next checkpoint carries the new plan
    with pytest.raises(AdapterError, match="new_total"):
        scheduler.set_horizon(-5)
    _, _, open_ended = fresh({"name": "constant", "value": 1e-3})
    with pytest.raises(ScheduleError, match="no 'total'"):
        open_ended.set_horizon(100)


def test_set_schedule_warns_naming_the_change():
    model, optimizer, scheduler = fresh(WSD)
    train(model, optimizer, scheduler, 10)
    with pytest.warns(UserWarning, match="decay_shape: cosine -> linear"):
        scheduler.set_schedule({**WSD, "decay_shape": "linear"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduler.set_schedule({**WSD, "decay_shape": "linear"})  # no change, no warning
    with pytest.raises(AdapterError, match="unit"):
        scheduler.set_schedule({**WSD, "unit": "tokens"})


def test_loading_the_optimizer_after_the_scheduler_keeps_the_scheduler_lr():
    """Optimizer checkpoints carry group LRs of the old plan; they must not win for a step."""
    model, optimizer, scheduler = fresh(WSD)
    train(model, optimizer, scheduler, 30)
    state = checkpoint(model, optimizer, scheduler)
    longer = {**WSD, "total": 120}
    model, optimizer, scheduler = fresh(longer, seed=1, override_spec=True)
    with pytest.warns(UserWarning, match="total: 60 -> 120"):
        scheduler.load_state_dict(state["scheduler"])
    optimizer.load_state_dict(state["optimizer"])  # the "wrong" order
    assert optimizer.param_groups[0]["lr"] == from_spec(longer)(30)


def test_group_count_mismatch_is_a_clear_error():
    model, optimizer, scheduler = fresh(WSD)
    state = scheduler.state_dict()
    single = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(AdapterError, match="2 group multipliers but the optimizer has 1"):
        ScheduleLR(single, WSD).load_state_dict(state)


def test_torch_resume_example_runs_and_matches():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "torch_resume.py"
    spec = importlib.util.spec_from_file_location("torch_resume_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    uninterrupted, resumed = module.main()
    assert uninterrupted == resumed and len(resumed) == 26
    assert resumed[-1] > module.SPEC["floor"] and resumed[4] == module.SPEC["peak"]


@settings(max_examples=40, deadline=None)
@given(
    total=st.integers(10, 5_000),
    warmup_fraction=st.floats(0.0, 0.5),
    decay_fraction=st.floats(0.0, 0.5),
    decay_shape=st.sampled_from(["linear", "cosine", "1-sqrt"]),
    batches=st.lists(st.integers(1, 400), min_size=2, max_size=40),
    split_at=st.floats(0.0, 1.0),
)
def test_any_token_resume_point_reproduces_the_uninterrupted_lrs(
    total, warmup_fraction, decay_fraction, decay_shape, batches, split_at
):
    spec = {
        "name": "wsd",
        "peak": 1e-3,
        "total": total,
        "warmup": int(total * warmup_fraction),
        "decay_fraction": decay_fraction,
        "decay_shape": decay_shape,
        "floor": 1e-6,
        "unit": "tokens",
    }
    split = int(split_at * len(batches))

    def lrs(scheduler, tokens):
        used = []
        for count in tokens:
            used.append(scheduler.optimizer.param_groups[0]["lr"])
            scheduler.step(tokens=count)
        return used

    def new():
        return ScheduleLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0), spec)

    reference = lrs(new(), batches)
    first = new()
    head = lrs(first, batches[:split])
    second = new()
    second.load_state_dict(first.state_dict())
    assert head + lrs(second, batches[split:]) == reference
    schedule = from_spec(spec)
    assert reference == [schedule(sum(batches[:k])) for k in range(len(batches))]
