"""Plan validation: every bad field is named, and stages compile to the right schedule/mixture."""

from __future__ import annotations

import pytest

from evertrain.continual import recipes as R
from evertrain.continual.plan import PlanError, load_plan
from evertrain.schedules import from_spec


def _plan(**changes):
    raw = {
        "out_dir": "runs/p",
        "peak": 3e-3,
        "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 16},
        "stages": [
            {
                "name": "base",
                "datasets": {"d0": "data/d0"},
                "tokens": 10_000,
                "schedule": "infinite",
            },
            {
                "name": "code",
                "datasets": {"d1": "data/d1"},
                "tokens": 20_000,
                "schedule": "continue",
                "replay": 0.25,
            },
        ],
    }
    for key, value in changes.items():
        if key.startswith("stage1_"):
            raw["stages"][1][key.removeprefix("stage1_")] = value
        elif key.startswith("stage0_"):
            raw["stages"][0][key.removeprefix("stage0_")] = value
        else:
            raw[key] = value
    return raw


def test_a_valid_plan_compiles_to_stage_schedules_and_mixtures():
    plan = load_plan(_plan())
    assert plan.init_checkpoint_kind(0) == "scratch"
    assert plan.init_checkpoint_kind(1) == "pre-anneal"  # 'continue' picks up before the anneal
    assert plan.stage_mixture(0) == {"d0": 1.0}
    assert plan.stage_mixture(1) == {"d0": 0.25, "d1": 0.75}
    assert plan.old_datasets(1) == ["d0"] and plan.datasets == {"d0": "data/d0", "d1": "data/d1"}
    base = from_spec(plan.stage_schedule(0))
    assert base(200) == pytest.approx(3e-3) and base(10_000) == pytest.approx(3e-4)
    previous = R.BaseModelInfo(
        peak=3e-3, final_lr=3e-4, constant_lr=1.5e-3, floor=3e-4, tokens=10_000
    )
    stage = from_spec(plan.stage_schedule(1, previous))
    assert stage(0) == 1.5e-3 and stage(20_000) == pytest.approx(3e-4)
    with pytest.raises(PlanError, match="needs the previous stage's LR state"):
        plan.stage_schedule(1)


def test_rewarm_finetune_and_explicit_specs():
    plan = load_plan(_plan(stage0_schedule="cosine", stage1_schedule="rewarm", stage1_peak=1e-3))
    assert plan.init_checkpoint_kind(1) == "final"
    rewarm = from_spec(plan.stage_schedule(1))
    assert rewarm(200) == pytest.approx(1e-3) and rewarm(20_000) == pytest.approx(1e-4)
    previous = R.BaseModelInfo(
        peak=3e-3, final_lr=3e-4, constant_lr=3e-4, floor=3e-4, tokens=10_000
    )
    finetune = load_plan(_plan(stage0_schedule="cosine", stage1_schedule="finetune"))
    assert finetune.stage_schedule(1, previous) == from_spec(
        {"name": "constant", "value": 3e-4, "unit": "tokens"}
    )
    explicit = load_plan(_plan(stage1_schedule="wsd:peak=1e-3,total=20000,decay_fraction=0.2"))
    assert from_spec(explicit.stage_schedule(1))(0) == pytest.approx(1e-3)
    mixture = load_plan(_plan(stage1_replay=0.0, stage1_mixture={"d0": 0.1, "d1": 0.9}))
    assert mixture.stage_mixture(1) == {"d0": 0.1, "d1": 0.9}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"stage1_replay": 1.2}, "stages.1.replay: Input should be less than 1"),
        ({"stage1_tokens": 0}, "stages.1.tokens: Input should be greater than 0"),
        ({"stage1_name": "base"}, "stages.1.name='base' is used twice"),
        (
            {"stage1_datasets": {"d0": "x"}},
            "stages.1.datasets: 'd0' already belongs to stage 'base'",
        ),
        ({"stage1_datasets": {}}, "datasets is empty"),
        (
            {"stage0_schedule": "cosine"},
            "stages.1.schedule='continue' needs the previous stage on an 'infinite'",
        ),
        ({"stage0_replay": 0.1}, "stages.0.replay=0.1: stage 0 has nothing to replay"),
        ({"stage1_mixture": {"d9": 1.0}}, "stages.1.mixture names \\['d9'\\]"),
        ({"stage1_mixture": {"d0": 1.0}}, "set either replay or mixture, not both"),
        ({"stage1_warmup": 5}, "stages.1.warmup: Extra inputs are not permitted"),
        ({"stages": []}, "stages: List should have at least 1 item"),
        ({"stage1_name": "a/b"}, "name='a/b' must use only letters"),
    ],
)
def test_bad_plans_name_the_field_and_the_fix(changes, message):
    with pytest.raises(PlanError, match=message):
        load_plan(_plan(**changes))


def test_plan_files_are_read_and_bad_files_are_reported(tmp_path):
    import yaml

    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(_plan()))
    assert [stage.name for stage in load_plan(path).stages] == ["base", "code"]
    with pytest.raises(PlanError, match="does not exist"):
        load_plan(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(PlanError, match="must hold a mapping"):
        load_plan(tmp_path / "list.yaml")


def test_plan_files_read_numbers_as_numbers(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(
        "out_dir: runs/p\n"
        "peak: 3e-3\n"
        "model: {n_layer: 1, n_head: 2, d_model: 32, seq_len: 16}\n"
        "stages:\n"
        "  - name: base\n"
        "    datasets: {d0: data/d0}\n"
        "    tokens: 1e4\n"
        "    schedule: {name: constant, value: 1e-3, unit: tokens}\n"
    )
    plan = load_plan(path)
    assert plan.peak == 3e-3 and plan.stages[0].tokens == 10_000
    # an explicit spec is passed on as written: its value must be a number, not the text '1e-3'
    schedule = plan.stage_schedule(0)
    assert schedule == from_spec({"name": "constant", "value": 1e-3, "unit": "tokens"})
    assert isinstance(schedule.to_spec()["value"], float)
