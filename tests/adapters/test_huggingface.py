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


# ---- the native path: EvertrainTrainer / schedule_from_training_args ------------------------

from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from evertrain.adapters.huggingface import (  # noqa: E402
    EvertrainTrainer,
    schedule_from_training_args,
)
from evertrain.schedules import from_spec  # noqa: E402


def _args(tmp_path, **overrides) -> TrainingArguments:
    base = dict(
        output_dir=str(tmp_path),
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=1,
        save_strategy="no",
        per_device_train_batch_size=2,
        seed=0,
    )
    return TrainingArguments(**{**base, **overrides})


def _tiny_model():
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return GPT2LMHeadModel(config)


def _data(n: int) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    rows = [torch.randint(1, 32, (8,), generator=generator).tolist() for _ in range(n)]
    return [{"input_ids": ids, "labels": ids} for ids in rows]


def test_open_fields_are_read_from_training_arguments(tmp_path):
    args = _args(tmp_path, learning_rate=3e-4, warmup_steps=5, max_steps=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing disagrees: no warning at all
        schedule = schedule_from_training_args("cosine", args, 40)
    assert schedule == from_spec("cosine:peak=3e-4,warmup=5,total=40")
    # warmup_steps below 1 is a ratio of the run (transformers 5), rounded up
    ratio = schedule_from_training_args({"name": "wsd"}, _args(tmp_path, warmup_steps=0.1), 40)
    assert ratio.to_spec()["warmup"] == 4 and ratio.to_spec()["peak"] == 5e-5
    # constant's LR field is `value`
    constant = schedule_from_training_args({"name": "constant"}, args, 40)
    assert constant(100) == 3e-4


def test_disagreement_is_one_warning_naming_both_values_and_the_spec_wins(tmp_path):
    args = _args(tmp_path, learning_rate=2e-4, warmup_steps=10, lr_scheduler_type="cosine")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schedule = schedule_from_training_args("wsd:peak=1e-3,warmup=4,total=50", args, 50)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3, messages
    assert any(
        "peak=0.001" in m and "learning_rate=0.0002" in m and "schedule's" in m for m in messages
    )
    assert any("warmup=4" in m and "warmup_steps=10" in m for m in messages)
    assert any("lr_scheduler_type='cosine' is ignored" in m for m in messages)
    assert all("\n" not in m for m in messages)
    assert schedule.to_spec()["peak"] == 1e-3 and schedule.to_spec()["warmup"] == 4
    # the default learning_rate (5e-5) is no statement: a spec peak never disagrees with it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schedule_from_training_args("wsd:peak=1e-3,warmup=4,total=50", _args(tmp_path), 50)
    with pytest.warns(UserWarning, match=r"total=50 steps but the Trainer runs max_steps=80"):
        schedule_from_training_args("wsd:peak=1e-3,total=50", _args(tmp_path), 80)


def test_token_units_need_tokens_per_step_or_the_token_counter(tmp_path):
    args = _args(tmp_path, max_steps=10, warmup_steps=2, learning_rate=1e-3)
    spec = {"name": "cosine", "unit": "tokens"}
    schedule = schedule_from_training_args(spec, args, 10, tokens_per_step=16)
    assert schedule.to_spec()["total"] == 160 and schedule.to_spec()["warmup"] == 32
    with pytest.raises(AdapterError, match="counts tokens.*tokens_per_step"):
        schedule_from_training_args(spec, args, 10)
    with pytest.raises(AdapterError, match="tokens_per_step=<tokens in one optimizer step>"):
        EvertrainTrainer(model=_tiny_model(), args=args, train_dataset=_data(4), schedule=spec)
    with pytest.raises(AdapterError, match="optimizers="):
        EvertrainTrainer(
            model=_tiny_model(), args=args, schedule="cosine",
            optimizers=(None, torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), lambda _: 1.0)),
        )  # fmt: skip


def test_evertrain_trainer_uses_the_trainers_optimizer_and_the_spec_lr(tmp_path):
    args = _args(
        tmp_path, max_steps=8, learning_rate=2e-3, warmup_steps=2, weight_decay=0.05,
        optim="sgd", lr_scheduler_type="linear",
    )  # fmt: skip
    trainer = EvertrainTrainer(
        model=_tiny_model(), args=args, train_dataset=_data(16), schedule={"name": "cosine"}
    )
    trainer.train()
    assert isinstance(trainer.optimizer.optimizer, torch.optim.SGD)  # optim="sgd" honoured
    assert sorted({g["weight_decay"] for g in trainer.optimizer.param_groups}) == [0.0, 0.05]
    schedule = trainer.lr_scheduler.schedule
    assert schedule == from_spec("cosine:peak=2e-3,warmup=2,total=8")
    lrs = logged_lrs(trainer)
    assert sorted(lrs) == list(range(1, 9))
    for step, lr in lrs.items():
        assert lr == pytest.approx(schedule(step - 1), rel=1e-12, abs=0)


def test_evertrain_trainer_resume_gives_the_same_lr_sequence(tmp_path):
    def run(resume=None):
        args = _args(
            tmp_path, max_steps=6, learning_rate=1e-3, warmup_steps=2, save_strategy="steps",
            save_steps=3,
        )  # fmt: skip
        trainer = EvertrainTrainer(
            model=_tiny_model(), args=args, train_dataset=_data(12),
            schedule={"name": "wsd", "decay_fraction": 0.5},
        )  # fmt: skip
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run()
    resumed = run(str(tmp_path / "checkpoint-3"))
    # The resumed Trainer restores steps 1-3 of the history and logs steps 4-6 itself.
    assert logged_lrs(resumed) == logged_lrs(full)
    assert resumed.state.log_history[3]["learning_rate"] == full.lr_scheduler.schedule(3)
    assert resumed.lr_scheduler.state_dict() == full.lr_scheduler.state_dict()
    assert len(logged_lrs(full)) == 6


def test_example_explicit_path_matches_the_native_path(example, tmp_path):
    native, native_scheduler = example.main(
        max_steps=4, batch_size=2, output_dir=str(tmp_path / "a")
    )
    explicit, explicit_scheduler = example.main(
        max_steps=4, batch_size=2, output_dir=str(tmp_path / "b"), explicit=True
    )
    assert native_scheduler.schedule == explicit_scheduler.schedule
    assert logged_lrs(native) == logged_lrs(explicit)
