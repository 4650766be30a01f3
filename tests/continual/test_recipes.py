"""Recipe construction: the schedules and mixtures each recipe produces, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from evertrain.continual import recipes as R
from evertrain.schedules import from_spec

BASE = R.BaseModelInfo(peak=3e-3, final_lr=3e-4, constant_lr=1.5e-3, floor=3e-4, tokens=100_000)
STAGE = 100_000


def _build(name: str, **overrides):
    return R.build_recipe(name, base=BASE, stage_tokens=STAGE, old=["d0"], new=["d1"], **overrides)


def test_retrain_trains_the_union_from_scratch_with_the_same_total_tokens():
    recipe = _build("retrain")
    assert recipe.init == "scratch"
    assert recipe.tokens == BASE.tokens + STAGE
    assert recipe.mixture == {"d0": 0.5, "d1": 0.5}
    schedule = from_spec(recipe.schedule)
    assert schedule.unit == "tokens" and schedule.total == 200_000
    assert schedule(0) == 0.0
    assert schedule(2_000) == pytest.approx(3e-3)  # warmup = 1% of 200k tokens, to the base peak
    assert schedule(200_000) == pytest.approx(3e-4)  # cosine to 10% of peak
    # unequal stages: the union is mixed in the proportions the continual pipeline sees
    skewed = R.build_recipe("retrain", base=BASE, stage_tokens=300_000, old=["d0"], new=["d1"])
    assert skewed.mixture == pytest.approx({"d0": 0.25, "d1": 0.75})


def test_finetune_continues_at_the_base_final_lr_without_replay():
    recipe = _build("finetune")
    assert recipe.init == "final" and recipe.mixture == {"d1": 1.0}
    schedule = from_spec(recipe.schedule)
    assert np.all(schedule(np.arange(0, STAGE, 997)) == BASE.final_lr)
    assert from_spec(_build("finetune", lr=1e-5).schedule)(50_000) == 1e-5


def test_rewarm_warms_up_over_one_percent_to_the_peak_then_cosine_to_ten_percent():
    recipe = _build("rewarm")
    assert recipe.init == "final" and recipe.mixture == {"d1": 1.0}
    schedule = from_spec(recipe.schedule)
    assert schedule(0) == 0.0
    assert schedule(500) == pytest.approx(1.5e-3)
    assert schedule(1_000) == pytest.approx(3e-3)
    t = 1_000 + 0.5 * (STAGE - 1_000)  # half-way through the cosine: midpoint of peak and floor
    assert schedule(t) == pytest.approx(3e-4 + 0.5 * (3e-3 - 3e-4))
    assert schedule(STAGE) == pytest.approx(3e-4)
    linear = from_spec(_build("rewarm", decay_shape="linear", peak=1e-3).schedule)
    assert linear(1_000 + 0.5 * (STAGE - 1_000)) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))
    wsd = from_spec(_build("rewarm", decay_shape="wsd").schedule)
    assert wsd(1_000) == wsd(80_000) == pytest.approx(3e-3)  # stable until the last 20 %
    assert wsd(90_000) == pytest.approx(0.5 * (3e-3 + 3e-4)) and wsd(STAGE) == pytest.approx(3e-4)


def test_rewarm_replay_defaults_to_25_percent_old_data_and_is_overridable():
    assert _build("rewarm+replay").mixture == {"d0": 0.25, "d1": 0.75}
    assert _build("rewarm+replay", replay=0.05).mixture == pytest.approx({"d0": 0.05, "d1": 0.95})
    assert _build("rewarm+replay").schedule == _build("rewarm").schedule
    several = R.build_recipe(
        "rewarm+replay", base=BASE, stage_tokens=STAGE, old=["a", "b"], new=["c"]
    )
    assert several.mixture == {"a": 0.125, "b": 0.125, "c": 0.75}


def test_infinite_replay_continues_the_constant_lr_and_anneals_the_last_ten_percent():
    recipe = _build("infinite+replay")
    assert recipe.init == "pre-anneal"
    assert recipe.mixture == {"d0": 0.25, "d1": 0.75}
    schedule = from_spec(recipe.schedule)
    assert np.all(schedule(np.arange(0, 90_000, 1000)) == BASE.constant_lr)
    assert schedule(95_000) == pytest.approx(0.5 * (1.5e-3 + 3e-4))  # linear anneal half-way
    assert schedule(STAGE) == pytest.approx(BASE.floor)


def test_infinite_base_schedule_has_warmup_cooldown_constant_and_anneal():
    spec = R.infinite_schedule(peak=3e-3, tokens=100_000)
    schedule = from_spec(spec)
    assert schedule(0) == 0.0 and schedule(2_000) == pytest.approx(3e-3)  # 2% warmup
    assert schedule(22_000) == pytest.approx(1.5e-3)  # cooldown over 20% to half the peak
    assert schedule(R.pre_anneal_tokens(100_000, 0.1)) == pytest.approx(1.5e-3)
    assert schedule(100_000) == pytest.approx(3e-4)
    with pytest.raises(R.RecipeError, match="warmup_fraction \\+ cooldown_fraction"):
        R.infinite_schedule(peak=1e-3, tokens=100, warmup_fraction=0.5, cooldown_fraction=0.6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: _build("rewarm-replay"),
            "recipe='rewarm-replay' is unknown: choose one of retrain",
        ),
        (lambda: _build("rewarm", replay=0.2), "recipe 'rewarm' has no parameter \\['replay'\\]"),
        (lambda: _build("rewarm+replay", replay=1.0), "replay=1.0 must be in \\[0, 1\\)"),
        (
            lambda: _build("rewarm", warmup_fraction=1.5),
            "warmup_fraction=1.5 must be in \\[0, 1\\)",
        ),
        (lambda: _build("rewarm", decay_shape="step"), "decay_shape='step' is not one of"),
        (lambda: _build("finetune", lr=-1.0), "lr=-1.0 must be a finite number > 0"),
        (lambda: _build("infinite+replay", floor=1.0), "floor=1.0 is above constant_lr"),
        (
            lambda: R.build_recipe(
                "rewarm+replay", base=BASE, stage_tokens=STAGE, old=[], new=["d1"]
            ),
            "no old dataset to replay",
        ),
        (
            lambda: R.build_recipe("rewarm", base=BASE, stage_tokens=0, old=["d0"], new=["d1"]),
            "stage_tokens=0 must be a positive integer",
        ),
        (
            lambda: R.BaseModelInfo(peak=0.0, final_lr=0, constant_lr=0, floor=0, tokens=1),
            "base peak=0.0",
        ),
    ],
)
def test_bad_recipe_input_names_the_field(call, message):
    with pytest.raises(R.RecipeError, match=message):
        call()
    assert issubclass(R.RecipeError, ValueError)
