"""Plans, recipes and the demo round budgets as the trainer does (up, to whole steps), so each
stage's schedule ends where the trainer stops: the trainer's warnings for a schedule that ends
before the budget (its last step's progress at or past the schedule's total) or after it (the
run stops before the final decay) never fire for a stage a plan built."""

from __future__ import annotations

import json

import pytest

from evertrain.continual import runner
from evertrain.continual.plan import load_plan
from evertrain.continual.runner import Setup, StageRun
from evertrain.train import TrainConfig
from evertrain.train.loop import RunResult

STEP = 4 * 32  # batch_size * seq_len below


def _assert_schedule_spans_the_run(cfg: TrainConfig) -> None:
    total = cfg.schedule.total
    assert total is not None
    last_step_progress = (cfg.total_steps - 1) * cfg.tokens_per_step
    assert last_step_progress < total  # H4's warning: fires when this reaches the total
    assert total <= cfg.total_steps * cfg.tokens_per_step  # the "will not finish" warning


@pytest.fixture
def captured(monkeypatch, tmp_path):
    """Run plans and recipes without training: record each stage's config instead."""
    configs: list[TrainConfig] = []

    def fake_run_stage(config, *, name, **kwargs):
        configs.append(config)
        done = config.total_steps * config.tokens_per_step
        result = RunResult(tmp_path / name, done, config.total_steps, 0.0, {}, tmp_path / name)
        return StageRun(name, name, result, 0.0)

    monkeypatch.setattr(runner, "run_stage", fake_run_stage)
    return configs


@pytest.mark.parametrize("tokens", [1050, 1100, 1024, 100])
def test_plan_stages_are_whole_steps_and_their_schedules_end_there(captured, tmp_path, tokens):
    plan = load_plan(
        {
            "out_dir": str(tmp_path / "plan"),
            "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 32},
            "train": {"batch_size": 4, "device": "cpu"},
            "stages": [
                {
                    "name": "base",
                    "datasets": {"a": "data/a"},
                    "tokens": tokens,
                    "schedule": "cosine",
                },
                {"name": "next", "datasets": {"b": "data/b"}, "tokens": tokens, "replay": 0.25},
            ],
        }
    )
    expected = -(-tokens // STEP) * STEP  # up, as TrainConfig.total_steps rounds
    assert plan.stage_tokens(0) == expected
    runner.run_plan(plan, progress=False)
    assert [c.budget_tokens for c in captured] == [expected, expected]
    for config in captured:
        _assert_schedule_spans_the_run(config)


@pytest.mark.parametrize("recipe", ["retrain", "rewarm", "rewarm+replay", "infinite+replay"])
def test_recipes_and_the_demo_base_end_their_schedules_at_the_last_step(
    captured, tmp_path, make_run, recipe
):
    setup = Setup(
        model={"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 32},
        train={"batch_size": 4, "device": "cpu"},
        eval={"D0": "data/d0", "D1": "data/d1"},
    )
    base_tokens = setup.whole_steps(1050)
    info = runner.planned_base_info(setup, base_tokens, peak=3e-3)
    base = make_run(
        tmp_path,
        "base",
        evals=[(base_tokens, {"D0": 3.0})],
        meta={"pre_anneal_tokens": 896, "pre_anneal_checkpoint": "tokens_896"},
    )
    for name, tokens in (("tokens_896", 896), ("final", base_tokens)):
        (base / "checkpoints" / name).mkdir(parents=True)
        meta = {"step": tokens // 128, "tokens": tokens, "sha256": {}}
        (base / "checkpoints" / name / "meta.json").write_text(json.dumps(meta))
    runner.run_recipe(
        recipe,
        setup,
        base_dir=base,
        old={"D0": "data/d0"},
        new={"D1": "data/d1"},
        stage_tokens=1050,
        out_dir=tmp_path / recipe,
        base=info,
    )
    runner.train_base(
        setup, out_dir=tmp_path / "b", datasets={"D0": "data/d0"}, tokens=1050, peak=3e-3
    )
    for config in captured:
        _assert_schedule_spans_the_run(config)
    assert captured[0].budget_tokens == (base_tokens + 1152 if recipe == "retrain" else 1152)
