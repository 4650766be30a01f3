"""Lightning: interval="step" scheduling uses s(k) at update k, in steps and tokens, and resumes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")

from evertrain.adapters import AdapterError  # noqa: E402
from evertrain.adapters.lightning import count_batch_tokens, lightning_scheduler_config  # noqa: E402
from evertrain.adapters.torch import ScheduleLR  # noqa: E402
from evertrain.schedules import from_spec  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lightning_example.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("lightning_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trainer_for(max_steps: int, root: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        **kwargs,
    )


def test_example_steps_and_tokens_use_the_schedule_value_per_update(example, tmp_path):
    module, trainer = example.main(max_steps=10, root_dir=str(tmp_path))
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert isinstance(scheduler, ScheduleLR) and trainer.lr_scheduler_configs[0].interval == "step"
    assert module.used_lrs == [scheduler.schedule(k) for k in range(10)]

    module, trainer = example.main(tokens=True, max_steps=10, root_dir=str(tmp_path))
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.tokens_seen == 10 * 4 * 8  # each batch: 4 rows x 8 features
    assert module.used_lrs == [scheduler.schedule(k * 32) for k in range(10)]


def test_lightning_checkpoint_resume_continues_the_schedule(example, tmp_path):
    spec = {
        "name": "wsd",
        "peak": 1e-2,
        "total": 12,
        "warmup": 3,
        "decay": 4,
        "decay_shape": "cosine",
    }
    schedule = from_spec(spec)
    first = example.make_module(spec)
    trainer = trainer_for(6, tmp_path)
    trainer.fit(first, example.make_loader(12, 4))
    checkpoint = tmp_path / "half.ckpt"
    trainer.save_checkpoint(checkpoint)
    saved = torch.load(checkpoint, weights_only=False)["lr_schedulers"][0]
    assert saved["spec"] == schedule.to_spec() and saved["steps"] == 6

    second = example.make_module(spec)
    trainer_for(12, tmp_path).fit(second, example.make_loader(12, 4), ckpt_path=str(checkpoint))
    assert first.used_lrs + second.used_lrs == [schedule(k) for k in range(12)]


def test_config_dict_and_token_counting_rules():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    config = lightning_scheduler_config(optimizer, "cosine:peak=0.1,total=10", name="lr-main")
    assert config["interval"] == "step" and config["frequency"] == 1 and config["name"] == "lr-main"
    assert (
        count_batch_tokens(
            {
                "input_ids": torch.ones(2, 5),
                "attention_mask": torch.tensor([[1] * 5, [1, 1, 0, 0, 0]]),
            }
        )
        == 7
    )
    assert count_batch_tokens({"input_ids": torch.ones(2, 5)}) == 10
    assert count_batch_tokens((torch.ones(3, 4), torch.ones(3))) == 12
    with pytest.raises(AdapterError, match="cannot count tokens"):
        count_batch_tokens("text")


def test_token_counter_sums_micro_batches_under_grad_accumulation(example, tmp_path):
    from evertrain.adapters.lightning import LightningTokenCounter

    spec = {
        "name": "wsd",
        "peak": 1e-2,
        "total": 6 * 64,
        "warmup": 64,
        "decay": 128,
        "unit": "tokens",
    }
    schedule = from_spec(spec)
    module = example.make_module(spec)
    trainer = trainer_for(
        6, tmp_path, accumulate_grad_batches=2, callbacks=[LightningTokenCounter()]
    )
    trainer.fit(module, example.make_loader(12, 4))  # 12 batches of 4 x 8 = 32 tokens
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.steps == 6 and scheduler.tokens_seen == 6 * 64  # 2 micro-batches per step
    # training_step records the LR per micro-batch: both micro-batches of update k use s(64 k).
    assert module.used_lrs == [schedule(64 * (i // 2)) for i in range(12)]
