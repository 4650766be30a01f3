"""Recipes, plans and branches are the schedule library's own schedules: each equals the library
schedule it stands for at every token, and the LR state handed to the next stage is read from the
schedule itself (issue 10)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evertrain.continual import recipes as R
from evertrain.continual import runner
from evertrain.continual.branches import decay_schedule, main_schedule
from evertrain.continual.plan import load_plan
from evertrain.continual.runner import StageRun, lr_state
from evertrain.schedules import Schedule, get

TOKENS = 10_000
PEAK = 3e-3


def assert_same_at_every_token(schedule: Schedule, library: Schedule, tokens: int) -> None:
    assert isinstance(schedule, Schedule)
    assert schedule == library  # the same spec: the library's own schedule, not a copy of it
    grid = np.arange(0, tokens + 1)
    np.testing.assert_array_equal(schedule(grid), library(grid))
    assert [schedule(int(t)) for t in grid[::97]] == [library(int(t)) for t in grid[::97]]


def library_infinite(*, warmup: float, cooldown: float, anneal: float) -> Schedule:
    return get(
        "infinite",
        peak=PEAK,
        constant=PEAK / 2,
        warmup=warmup,
        cooldown=cooldown,
        cooldown_shape="linear",
        total=TOKENS,
        anneal=anneal,
        anneal_shape="linear",
        floor=3e-4,
        unit="tokens",
    )


@pytest.mark.parametrize(
    ("fractions", "phases"),
    [
        ({}, {"warmup": 200, "cooldown": 2_000, "anneal": 1_000}),
        ({"anneal_fraction": 0.0}, {"warmup": 200, "cooldown": 2_000, "anneal": 0}),
        ({"cooldown_fraction": 0.0}, {"warmup": 200, "cooldown": 0, "anneal": 1_000}),
        ({"warmup_fraction": 0.0}, {"warmup": 0, "cooldown": 2_000, "anneal": 1_000}),
    ],
)
def test_infinite_schedule_is_the_library_infinite(fractions, phases):
    schedule = R.infinite_schedule(peak=PEAK, tokens=TOKENS, **fractions)
    assert_same_at_every_token(schedule, library_infinite(**phases), TOKENS)


def test_infinite_without_anneal_stays_constant_and_a_warmup_without_cooldown_reaches_the_peak():
    no_anneal = R.infinite_schedule(peak=PEAK, tokens=TOKENS, anneal_fraction=0.0)
    # The hand-written knots decayed from ~22 % on: 1.07e-3 half-way instead of 1.5e-3.
    assert no_anneal(TOKENS // 2) == no_anneal(TOKENS) == PEAK / 2
    no_cooldown = R.infinite_schedule(peak=PEAK, tokens=TOKENS, cooldown_fraction=0.0)
    # The knots warmed up to the constant LR, never to the peak.
    assert no_cooldown(199) == pytest.approx(PEAK * 199 / 200)
    assert lr_state(no_cooldown, TOKENS, 100).peak == PEAK


def test_the_default_base_is_within_float_rounding_of_the_old_knots():
    """What moved: the base's LR at the defaults, by float rounding only (linear phases and
    np.interp round differently), at most ~5e-16 relative."""
    knots = get(
        "piecewise_linear",
        points=[[0, 0], [200, PEAK], [2_200, PEAK / 2], [9_000, PEAK / 2], [TOKENS, PEAK / 10]],
        unit="tokens",
    )
    schedule = R.infinite_schedule(peak=PEAK, tokens=TOKENS)
    grid = np.arange(1, TOKENS + 1)
    np.testing.assert_allclose(schedule(grid), knots(grid), rtol=1e-15, atol=0)


@pytest.mark.parametrize("decay_shape", ["cosine", "linear"])
@pytest.mark.parametrize("warmup_fraction", [0.01, 0.0])
def test_rewarm_schedule_is_the_library_family(decay_shape, warmup_fraction):
    schedule = R.rewarm_schedule(
        peak=PEAK,
        tokens=TOKENS,
        warmup_fraction=warmup_fraction,
        floor_fraction=0.1,
        decay_shape=decay_shape,
    )
    library = get(
        decay_shape,
        peak=PEAK,
        floor=3e-4,
        total=TOKENS,
        warmup=round(warmup_fraction * TOKENS),
        unit="tokens",
    )
    assert_same_at_every_token(schedule, library, TOKENS)


def test_wsd_rewarm_and_the_constant_then_anneal_continuation_are_the_library_wsd():
    wsd = R.rewarm_schedule(
        peak=PEAK, tokens=TOKENS, warmup_fraction=0.01, floor_fraction=0.1, decay_shape="wsd"
    )
    library = get(
        "wsd", peak=PEAK, floor=3e-4, total=TOKENS, warmup=100, decay_fraction=0.2, unit="tokens"
    )
    assert_same_at_every_token(wsd, library, TOKENS)
    anneal = R.constant_then_anneal_schedule(
        constant_lr=1.5e-3, tokens=TOKENS, anneal_fraction=0.1, floor=3e-4
    )
    library = get(
        "wsd", peak=1.5e-3, floor=3e-4, total=TOKENS, warmup=0, decay_fraction=0.1, unit="tokens"
    )
    assert_same_at_every_token(anneal, library, TOKENS)
    flat = R.constant_then_anneal_schedule(
        constant_lr=1.5e-3, tokens=TOKENS, anneal_fraction=0.0, floor=3e-4
    )
    assert_same_at_every_token(flat, get("constant", value=1.5e-3, unit="tokens"), TOKENS)


def test_branch_schedules_are_constant_with_warmup_and_the_decay_families():
    assert_same_at_every_token(
        main_schedule(PEAK, 500), get("constant", value=PEAK, warmup=500, unit="tokens"), TOKENS
    )
    assert_same_at_every_token(
        main_schedule(PEAK, 0), get("constant", value=PEAK, unit="tokens"), TOKENS
    )
    assert_same_at_every_token(
        decay_schedule(PEAK, 3e-4, TOKENS, "cosine"),
        get("cosine", peak=PEAK, floor=3e-4, total=TOKENS, unit="tokens"),
        TOKENS,
    )


def test_recipes_hand_the_trainer_library_schedules():
    base = R.BaseModelInfo(peak=PEAK, final_lr=3e-4, constant_lr=1.5e-3, floor=3e-4, tokens=TOKENS)
    finetune = R.build_recipe("finetune", base=base, stage_tokens=TOKENS, old=["a"], new=["b"])
    assert_same_at_every_token(
        finetune.schedule, get("constant", value=3e-4, unit="tokens"), TOKENS
    )
    for name in R.RECIPES:
        recipe = R.build_recipe(name, base=base, stage_tokens=TOKENS, old=["a"], new=["b"])
        assert isinstance(recipe.schedule, Schedule) and recipe.schedule.unit == "tokens"


def _plan(anneal_fraction: float) -> dict:
    return {
        "out_dir": "unused",
        "peak": PEAK,
        "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 25},
        "train": {"batch_size": 4, "device": "cpu"},
        "stages": [
            {
                "name": "base",
                "datasets": {"d0": "data/d0"},
                "tokens": TOKENS,
                "schedule": "infinite",
                "anneal_fraction": anneal_fraction,
            },
            {
                "name": "next",
                "datasets": {"d1": "data/d1"},
                "tokens": TOKENS,
                "schedule": "continue",
                "replay": 0.25,
            },
        ],
    }


@pytest.fixture
def captured(monkeypatch, tmp_path):
    """Run plans without training: record each stage's TrainConfig."""
    from evertrain.train.loop import RunResult

    configs = []

    def fake_run_stage(config, *, name, extra_meta=None, **kwargs):
        configs.append(config)
        out = tmp_path / name
        for checkpoint in ["last", *(f"tokens_{t}" for t in config.checkpoint_at_tokens)]:
            (out / "checkpoints" / checkpoint).mkdir(parents=True)
        (out / "manifest.json").write_text("{}")
        (out / "continual.json").write_text(json.dumps(extra_meta or {}))
        tokens = config.total_steps * config.tokens_per_step
        result = RunResult(out, tokens, config.total_steps, 0.0, {}, out / "checkpoints" / "last")
        return StageRun(name, name, result, 0.0)

    monkeypatch.setattr(runner, "run_stage", fake_run_stage)
    return configs


@pytest.mark.parametrize("anneal_fraction", [0.0, 0.1])
def test_a_continue_stage_after_an_infinite_stage_inherits_its_constant_lr(
    captured, anneal_fraction
):
    plan = load_plan(_plan(anneal_fraction))
    runner._run_plan_stages(plan, progress=False)
    base, following = (config.schedule for config in captured)
    pre_anneal = "last" if anneal_fraction == 0 else f"tokens_{R.pre_anneal_tokens(TOKENS, 0.1)}"
    assert captured[1].init_from.endswith(f"base/checkpoints/{pre_anneal}")
    anneal = TOKENS - R.pre_anneal_tokens(TOKENS, anneal_fraction)
    assert_same_at_every_token(
        base, library_infinite(warmup=200, cooldown=2_000, anneal=anneal), TOKENS
    )
    # continue picks up at the base's constant LR (1.5e-3, not 1.07e-3 as before) and its
    # release anneals to the base's floor, whether or not the base annealed
    library = get(
        "wsd", peak=PEAK / 2, floor=3e-4, total=TOKENS, warmup=0, decay_fraction=0.1,
        unit="tokens",
    )  # fmt: skip
    assert_same_at_every_token(following, library, TOKENS)


def test_lr_state_reads_the_exact_peak_and_a_step_unit_schedule_at_steps():
    # A warmup ending between the points of a 2,001-point grid: the grid missed the peak.
    schedule = get("cosine", peak=PEAK, total=10_007, warmup=101, floor=3e-4, unit="tokens")
    assert lr_state(schedule, 10_007, 1).peak == PEAK
    assert float(np.max(schedule(np.linspace(0, 10_007, 2001)))) < PEAK
    # A step-unit schedule trained 100 steps of 50 tokens: read at steps, not at tokens.
    steps = get("linear", peak=1e-3, total=100, floor=0.0)
    state = lr_state(steps, 5_000, 50)
    assert state.final_lr == pytest.approx(1e-5)  # step 99 of 100
    assert state.floor == 0.0 and state.peak == 1e-3


def test_every_stage_config_is_one_validated_train_config(tmp_path):
    from evertrain.train import TrainConfig

    setup = runner.Setup(
        model={"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 16},
        train={"batch_size": 4, "grad_accum": 2, "device": "cpu", "eval_tokens": 256},
        eval={"d0": "data/d0"},
    )
    schedule = get("constant", value=1e-3, unit="tokens")
    cfg = runner.stage_config(
        setup,
        out_dir=tmp_path / "s",
        train_sets={"d0": "data/d0"},
        mixture={"d0": 1.0},
        schedule=schedule,
        tokens=1_000,
        keep_last=1,
    )
    assert isinstance(cfg, TrainConfig) and cfg.schedule is schedule
    assert cfg.tokens_per_step == setup.tokens_per_step == 128  # one formula, grad_accum too
    assert cfg.data.eval_tokens == 256 and cfg.keep_last == 1
    with pytest.raises(ValueError, match="budget_tokens"):
        runner.stage_config(
            setup, out_dir=tmp_path / "t", train_sets={"d0": "x"}, mixture={"d0": 1.0},
            schedule=schedule, tokens=10,
        )  # fmt: skip


def test_explicit_plan_schedules_are_checked_when_the_plan_loads():
    raw = _plan(0.1)
    raw["stages"][1]["schedule"] = "cosine:peak=1e-3"  # no total
    with pytest.raises(ValueError, match="stages.1.schedule: 'cosine:peak=1e-3' is not a valid"):
        load_plan(raw)
