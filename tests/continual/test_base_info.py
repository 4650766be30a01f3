"""Reading a base run's LR state — from its last step, or from one of its checkpoints."""

from __future__ import annotations

import json

import pytest

from evertrain.continual.recipes import infinite_schedule
from evertrain.continual.runner import ContinualError, base_info, lr_state, resolve_base


def test_lr_state_reads_final_constant_and_floor_from_the_schedule():
    schedule = infinite_schedule(peak=2e-3, tokens=10_000, anneal_fraction=0.2)
    state = lr_state(schedule, 10_000, 500, pre_anneal=8_000)
    assert state.peak == pytest.approx(2e-3)
    assert state.constant_lr == pytest.approx(1e-3)
    assert state.floor == pytest.approx(2e-4)
    # the last optimizer step ran at s(10_000 - 500): half-way down the last 500 tokens of the anneal
    assert state.final_lr == pytest.approx(2e-4 + (1e-3 - 2e-4) * 500 / 2000)


def test_base_info_from_a_run_or_from_one_of_its_checkpoints(tmp_path, make_run):
    schedule = infinite_schedule(peak=2e-3, tokens=10_000, anneal_fraction=0.2)
    config = {"schedule": schedule.to_spec(), "batch_size": 4, "model": {"seq_len": 125}}
    run = make_run(
        tmp_path,
        "base",
        evals=[(8_000, {"d0": 3.0}), (10_000, {"d0": 2.9})],
        config=config,
        meta={"pre_anneal_tokens": 8_000},
    )
    checkpoint = run / "checkpoints" / "tokens_8000"
    checkpoint.mkdir(parents=True)
    (checkpoint / "meta.json").write_text(json.dumps({"tokens": 8_000, "step": 16}))
    assert resolve_base(run) == (run, None)
    assert resolve_base(checkpoint) == (run, checkpoint)
    whole, _ = base_info(run)
    at_checkpoint, _ = base_info(checkpoint)
    assert whole.tokens == 10_000 and at_checkpoint.tokens == 8_000
    assert at_checkpoint.final_lr == pytest.approx(1e-3)  # still in the constant phase there
    assert whole.final_lr < at_checkpoint.final_lr


def test_base_info_needs_a_config(tmp_path, make_run):
    run = make_run(tmp_path, "bare", evals=[(100, {"d0": 3.0})])
    with pytest.raises(ContinualError, match="has no config.yaml"):
        base_info(run)


def test_base_info_reads_the_config_that_trained_the_last_step(tmp_path, make_run):
    """A base resumed with a longer schedule keeps its start config in config.yaml and the change
    in config_history.jsonl; its LR state must come from the schedule that trained its end."""
    from evertrain.train.config_history import record_config

    start = {"schedule": {"name": "constant", "value": 1e-3, "unit": "tokens"}}
    later = {"schedule": {"name": "constant", "value": 4e-4, "unit": "tokens"}}
    for config in (start, later):
        config.update({"batch_size": 4, "model": {"seq_len": 125}})
    run = make_run(tmp_path, "base", evals=[(5_000, {"d0": 3.0}), (10_000, {"d0": 2.9})])
    record_config(run, start, step=0, tokens=0, fresh=True)
    record_config(run, later, step=10, tokens=5_000, fresh=False)
    info, _ = base_info(run)
    assert info.final_lr == pytest.approx(4e-4)  # config.yaml alone would say 1e-3
