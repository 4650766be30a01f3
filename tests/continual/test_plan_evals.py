"""A plan's ``evals_per_stage``: how many times each stage is evaluated (a re-warm's spike and
recovery need ten or more points), checked with the plan and carried into every stage's config."""

from __future__ import annotations

import pytest

from evertrain.continual import recipes as R
from evertrain.continual.plan import PlanError, load_plan
from evertrain.continual.runner import plan_setup, stage_config


def _raw(**extra):
    return {
        "out_dir": "runs/p",
        "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 16},
        "train": {"batch_size": 4},
        "stages": [{"name": "base", "datasets": {"d0": "data/d0"}, "tokens": 64_000}],
        **extra,
    }


def test_evals_per_stage_sets_each_stages_eval_interval(tmp_path):
    plan = load_plan(_raw(evals_per_stage=16))
    setup = plan_setup(plan)
    tokens = plan.stage_tokens(0)
    config = stage_config(
        setup,
        out_dir=tmp_path / "base",
        train_sets={"d0": "data/d0"},
        mixture={"d0": 1.0},
        schedule=R.rewarm_schedule(
            peak=1e-3, tokens=tokens, warmup_fraction=0.01, floor_fraction=0.1
        ),
        tokens=tokens,
    )
    interval = config.eval_interval_tokens
    assert interval % plan.tokens_per_step == 0  # at whole optimizer steps
    assert tokens // interval == 16  # 16 evaluations in the stage


def test_default_keeps_four_evaluations_per_stage():
    assert plan_setup(load_plan(_raw())).eval_points == 4


@pytest.mark.parametrize("value", [0, -3])
def test_bad_evals_per_stage_is_named(value):
    with pytest.raises(PlanError, match="evals_per_stage"):
        load_plan(_raw(evals_per_stage=value))
