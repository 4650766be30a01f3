"""ScheduleLR: the LR written into the optimizer is exactly the schedule's value at each step."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

from evertrain.adapters import AdapterError
from evertrain.adapters.torch import ScheduleLR
from evertrain.schedules import ScheduleError, from_spec, get

WSD = {
    "name": "wsd",
    "peak": 3e-4,
    "total": 100,
    "warmup": 10,
    "decay": 20,
    "decay_shape": "linear",
    "floor": 3e-5,
}


def make_optimizer(groups: int = 1, weight_decay: float = 0.1) -> torch.optim.Optimizer:
    params = [
        {
            "params": [torch.nn.Parameter(torch.zeros(3))],
            "weight_decay": weight_decay if i == 0 else 0.0,
        }
        for i in range(groups)
    ]
    return torch.optim.AdamW(params, lr=1.0)


def run_lrs(scheduler: ScheduleLR, steps: int, **step_kwargs) -> list[list[float]]:
    """LRs each update uses: read from the optimizer before optimizer.step(), then step both."""
    lrs = []
    for _ in range(steps):
        lrs.append([group["lr"] for group in scheduler.optimizer.param_groups])
        scheduler.optimizer.step()
        scheduler.step(**step_kwargs)
    return lrs


def test_update_k_uses_schedule_at_k_exactly():
    schedule = from_spec(WSD)
    scheduler = ScheduleLR(make_optimizer(), WSD)
    lrs = [row[0] for row in run_lrs(scheduler, 120)]
    assert lrs == [schedule(k) for k in range(120)]  # bit-identical, past the end too
    assert lrs[0] == 0.0 and lrs[10] == 3e-4 and lrs[100] == 3e-5
    assert scheduler.progress == 120 and scheduler.get_last_lr() == [schedule(120)]
    assert scheduler.get_lr() == [schedule(120)]


def test_accepts_schedule_inline_string_and_yaml(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text("name: cosine\npeak: 0.001\ntotal: 50\nwarmup: 5\n")
    expected = get("cosine", peak=1e-3, total=50, warmup=5)
    for spec in (expected, "cosine:peak=1e-3,total=50,warmup=5", path, expected.to_spec()):
        lrs = [row[0] for row in run_lrs(ScheduleLR(make_optimizer(), spec), 55)]
        assert lrs == [expected(k) for k in range(55)]


def test_group_multipliers_list_and_by_name():
    schedule = from_spec(WSD)
    optimizer = make_optimizer(groups=2)
    scheduler = ScheduleLR(optimizer, WSD, group_multipliers=[1.0, 0.25])
    for k, (a, b) in enumerate(run_lrs(scheduler, 30)):
        assert a == schedule(k) and b == schedule(k) * 0.25
    named = torch.optim.SGD(
        [
            {"params": [torch.nn.Parameter(torch.zeros(1))], "name": "body"},
            {"params": [torch.nn.Parameter(torch.zeros(1))], "name": "head"},
        ],
        lr=1.0,
    )
    scheduler = ScheduleLR(named, WSD, group_multipliers={"head": 10.0})
    assert scheduler.group_multipliers == [1.0, 10.0]
    with pytest.raises(AdapterError, match="names no param group"):
        ScheduleLR(named, WSD, group_multipliers={"tail": 2.0})
    with pytest.raises(AdapterError, match="2 param groups"):
        ScheduleLR(named, WSD, group_multipliers=[1.0])
    with pytest.raises(AdapterError, match=r"group_multipliers\[1\]"):
        ScheduleLR(named, WSD, group_multipliers=[1.0, -1.0])


def test_weight_decay_schedule_leaves_no_decay_groups_at_zero():
    wd = {"name": "linear", "peak": 0.1, "total": 100}
    optimizer = make_optimizer(groups=2, weight_decay=0.05)
    scheduler = ScheduleLR(optimizer, WSD, weight_decay=wd)
    wd_schedule = from_spec(wd)
    for k in range(20):
        assert optimizer.param_groups[0]["weight_decay"] == wd_schedule(k)
        assert optimizer.param_groups[1]["weight_decay"] == 0.0
        optimizer.step()
        scheduler.step()
    with pytest.raises(AdapterError, match="every param group has weight_decay=0"):
        ScheduleLR(make_optimizer(weight_decay=0.0), WSD, weight_decay=wd)


def test_token_units_advance_by_tokens_of_each_step():
    spec = {**WSD, "total": 10_000, "warmup": 1_000, "decay": 2_000, "unit": "tokens"}
    schedule = from_spec(spec)
    scheduler = ScheduleLR(make_optimizer(), spec)
    batch_tokens = [256] * 10 + [512] * 10 + [1024] * 8  # batch size grows mid-run
    seen, lrs, expected = 0, [], []
    for tokens in batch_tokens:
        lrs.append(scheduler.optimizer.param_groups[0]["lr"])
        expected.append(schedule(seen))
        scheduler.optimizer.step()
        scheduler.step(tokens=tokens)
        seen += tokens
    assert lrs == expected
    assert scheduler.progress == seen == scheduler.tokens_seen and scheduler.steps == len(
        batch_tokens
    )


def test_token_units_from_add_tokens_and_tokens_per_step():
    spec = {**WSD, "total": 1_000, "warmup": 100, "decay": 200, "unit": "tokens"}
    schedule = from_spec(spec)
    scheduler = ScheduleLR(make_optimizer(), spec, tokens_per_step=30)
    scheduler.step()
    assert scheduler.tokens_seen == 30
    scheduler.add_tokens(7)  # two micro-batches of one accumulated step
    scheduler.add_tokens(torch.tensor(5))
    scheduler.step()
    assert scheduler.tokens_seen == 42 and scheduler.get_last_lr() == [schedule(42)]
    scheduler.add_tokens(1)
    with pytest.raises(AdapterError, match="use one or the other"):
        scheduler.step(tokens=3)
    bare = ScheduleLR(make_optimizer(), spec)
    with pytest.raises(AdapterError, match="unit='tokens'.*step\\(tokens=n\\)"):
        bare.step()
    with pytest.raises(AdapterError, match="tokens=-4 is negative"):
        bare.step(tokens=-4)
    with pytest.raises(AdapterError, match="whole number"):
        bare.add_tokens(2.5)


def test_step_update_sets_progress_and_epoch_is_refused():
    schedule = from_spec(WSD)
    scheduler = ScheduleLR(make_optimizer(), WSD)
    scheduler.step_update(85)
    assert scheduler.progress == 85 and scheduler.optimizer.param_groups[0]["lr"] == schedule(85)
    scheduler.step()
    assert scheduler.optimizer.param_groups[0]["lr"] == schedule(86)
    with pytest.raises(AdapterError, match="step_update"):
        scheduler.step(5)
    token_spec = {**WSD, "unit": "tokens"}
    with pytest.raises(AdapterError, match="tokens_per_step"):
        ScheduleLR(make_optimizer(), token_spec).step_update(3)
    tokens = ScheduleLR(make_optimizer(), token_spec, tokens_per_step=4)
    tokens.step_update(3)
    assert tokens.progress == 12


def test_bad_inputs_name_the_field():
    with pytest.raises(AdapterError, match="torch.optim.Optimizer"):
        ScheduleLR(object(), WSD)  # type: ignore[arg-type]
    with pytest.raises(AdapterError, match="spec must be"):
        ScheduleLR(make_optimizer(), 3.0)  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="warmup"):
        ScheduleLR(make_optimizer(), {**WSD, "warmup": 500})
    with pytest.raises(AdapterError, match="tokens_per_step=0"):
        ScheduleLR(make_optimizer(), WSD, tokens_per_step=0)
    with pytest.raises(AdapterError, match="unit"):
        ScheduleLR(
            make_optimizer(), WSD, weight_decay={"name": "constant", "value": 0.1, "unit": "tokens"}
        )


def test_tensor_lr_groups_are_filled_in_place():
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([param], lr=torch.tensor(0.01))
    lr_tensor = optimizer.param_groups[0]["lr"]
    scheduler = ScheduleLR(optimizer, WSD)
    for _ in range(15):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] is lr_tensor
    assert lr_tensor.item() == pytest.approx(from_spec(WSD)(15), rel=1e-6)


def test_state_dict_loads_with_weights_only():
    scheduler = ScheduleLR(make_optimizer(), WSD)
    run_lrs(scheduler, 7)
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # as HF Trainer loads scheduler.pt
    assert state["spec"] == from_spec(WSD).to_spec() and state["steps"] == 7
    with pytest.raises(AdapterError, match="not a ScheduleLR state"):
        scheduler.load_state_dict({"last_epoch": 3})


@pytest.mark.parametrize("decay_type", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("min_lr_ratio", [0.0, 0.1])
def test_parity_with_hf_get_wsd_schedule_every_step(decay_type, min_lr_ratio):
    """Same LRs as transformers' get_wsd_schedule LambdaLR at every step, to 1e-12.

    HF warms up from ``min_lr_ratio * lr``; in evertrain that is ``warmup_start=floor``.
    """
    from transformers.optimization import get_wsd_schedule

    peak, total, warmup, decay = 3e-4, 400, 40, 80
    floor = peak * min_lr_ratio
    spec = {
        "name": "wsd",
        "peak": peak,
        "total": total,
        "warmup": warmup,
        "decay": decay,
        "decay_shape": decay_type,
        "floor": floor,
        "warmup_start": floor,
    }
    ours = ScheduleLR(make_optimizer(), spec)
    reference_optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=peak)
    reference = get_wsd_schedule(
        reference_optimizer,
        num_warmup_steps=warmup,
        num_decay_steps=decay,
        num_training_steps=total,
        decay_type=decay_type,
        min_lr_ratio=min_lr_ratio,
    )
    ours_lrs, reference_lrs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "scheduler before optimizer" notice
        for _ in range(total + 20):
            ours_lrs.append(ours.optimizer.param_groups[0]["lr"])
            reference_lrs.append(reference_optimizer.param_groups[0]["lr"])
            ours.step()
            reference.step()
    # 1e-12 relative (LRs are ~1e-4, so an absolute 1e-12 would be far looser).
    np.testing.assert_allclose(ours_lrs, reference_lrs, rtol=1e-12, atol=1e-20)
