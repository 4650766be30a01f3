"""Hugging Face Trainer: the LRs it logs are the schedule's values; token units count real tokens."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # Trainer needs it

from transformers import TrainerControl, TrainerState, TrainingArguments  # noqa: E402

from evertrain.adapters import AdapterError  # noqa: E402
from evertrain.adapters.huggingface import (  # noqa: E402
    TokenCountingCallback,
    create_optimizer_and_scheduler,
    decay_param_groups,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hf_trainer.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("hf_trainer_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def logged_lrs(trainer) -> dict[int, float]:
    return {
        entry["step"]: entry["learning_rate"]
        for entry in trainer.state.log_history
        if "learning_rate" in entry
    }


def test_trainer_logs_the_schedule_lr_at_every_step(example, tmp_path):
    trainer, scheduler = example.main(max_steps=6, batch_size=2, output_dir=str(tmp_path))
    schedule = scheduler.schedule
    lrs = logged_lrs(trainer)
    assert sorted(lrs) == list(range(1, 7))
    # The Trainer logs the LR update k used at global_step k + 1.
    for step, lr in lrs.items():
        assert lr == pytest.approx(schedule(step - 1), rel=1e-12, abs=0)
    assert (
        scheduler.steps == 6 and lrs[1] == 0.0 and max(lrs.values()) == schedule.to_spec()["peak"]
    )


def test_trainer_token_units_follow_counted_tokens_with_grad_accumulation(example, tmp_path):
    trainer, scheduler = example.main(
        tokens=True, max_steps=4, batch_size=2, grad_accum=2, output_dir=str(tmp_path)
    )
    callback = next(
        cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TokenCountingCallback)
    )
    per_step = callback.tokens_per_step
    assert len(per_step) == 4 and len(set(per_step)) > 1  # padding differs per step: real counts
    # Every non-padding token of the epoch is counted exactly once (4 steps = 16 examples).
    dataset = example.make_dataset(16, 64, max_len=24)
    assert sum(per_step) == sum(len(e["input_ids"]) for e in dataset) == scheduler.tokens_seen
    schedule = scheduler.schedule
    for step, lr in logged_lrs(trainer).items():
        assert lr == pytest.approx(schedule(sum(per_step[: step - 1])), rel=1e-12, abs=0)


def test_callback_warns_when_max_steps_and_schedule_total_differ():
    model = torch.nn.Linear(3, 3)
    _, scheduler = create_optimizer_and_scheduler(model, "wsd:peak=1e-3,total=100,warmup=10")
    callback = TokenCountingCallback()
    args = TrainingArguments(output_dir="unused", report_to=[], use_cpu=True)
    state = TrainerState(max_steps=50)
    with pytest.warns(UserWarning, match=r"total=100 steps but the Trainer runs max_steps=50"):
        callback.on_train_begin(args, state, TrainerControl(), lr_scheduler=scheduler)
    assert args.include_num_input_tokens_seen == "non_padding"  # switched on for counting
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        callback.on_train_begin(
            args, TrainerState(max_steps=100), TrainerControl(), lr_scheduler=scheduler
        )
    with pytest.warns(UserWarning, match="not an evertrain ScheduleLR"):
        callback.on_train_begin(args, state, TrainerControl(), lr_scheduler=object())
    with pytest.raises(AdapterError, match="count="):
        TokenCountingCallback(count="words")


def test_optimizer_groups_decay_and_weight_decay_schedule():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    groups = decay_param_groups(model, 0.1)
    assert [g["name"] for g in groups] == ["decay", "no_decay"]
    assert (
        len(groups[0]["params"]) == 1 and len(groups[1]["params"]) == 3
    )  # weight | bias, gain, bias
    optimizer, scheduler = create_optimizer_and_scheduler(
        model,
        "cosine:peak=1e-3,total=10",
        weight_decay_schedule={"name": "linear", "peak": 0.2, "total": 10},
        group_multipliers={"no_decay": 0.5},
    )
    assert (
        optimizer.param_groups[0]["weight_decay"] == 0.2
        and optimizer.param_groups[1]["weight_decay"] == 0.0
    )
    assert optimizer.param_groups[1]["lr"] == 0.5 * optimizer.param_groups[0]["lr"] == 0.5e-3
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(0.18, rel=1e-12)
    with pytest.raises(AdapterError, match="weight_decay=-1"):
        create_optimizer_and_scheduler(model, "cosine:peak=1e-3,total=10", weight_decay=-1)


def test_trainer_resume_from_checkpoint_continues_token_schedule_exactly(example, tmp_path):
    """Trainer saves scheduler.pt (spec + progress) and reloads it with weights_only=True."""
    full, full_scheduler = example.main(
        tokens=True, max_steps=6, batch_size=2, output_dir=str(tmp_path), save_steps=3
    )
    resumed, resumed_scheduler = example.main(
        tokens=True,
        max_steps=6,
        batch_size=2,
        output_dir=str(tmp_path),
        resume_from_checkpoint=str(tmp_path / "checkpoint-3"),
    )
    assert logged_lrs(resumed) == logged_lrs(full) and len(logged_lrs(full)) == 6
    assert resumed_scheduler.tokens_seen == full_scheduler.tokens_seen
    assert resumed_scheduler.state_dict() == full_scheduler.state_dict()
