"""Budget vs schedule: a run whose last steps fall at or past the schedule's end says so in one
line (naming the budget, the schedule's total, the steps and LR affected and the fix), as a run
that stops before the schedule's end already did; a budget that exactly spans it is silent."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from evertrain.schedules import from_spec
from evertrain.train import TrainConfig, run
from evertrain.train.budget import fitting_budget, schedule_fit_warning, total_steps

from .conftest import make_config

STEP = 256  # tokens per step of make_config (batch 4 x seq 64)


def fit(spec: str, budget_tokens: int) -> str | None:
    return schedule_fit_warning(from_spec(spec), budget_tokens=budget_tokens, tokens_per_step=STEP)


def test_total_steps_round_up_a_partial_step() -> None:
    assert [total_steps(b, STEP) for b in (256, 257, 511, 512)] == [1, 2, 2, 2]


def test_token_unit_schedule_ending_before_the_last_step_warns_with_numbers_and_fix() -> None:
    # 8 steps: the updates at progress 0, 256, ..., 1792; the schedule ends at 1024 tokens, so the
    # updates at 1024..1792 (the last 4) run at its floor.
    message = fit("cosine:peak=1e-3,total=1024,unit=tokens", 8 * STEP)
    assert message == (
        "budget_tokens=2048 runs 8 steps but the schedule ends at total=1024 tokens: the last 4 "
        "steps train at or past its end at lr=0; raise the schedule's total to 2048 "
        "(--set schedule.total=2048) or lower budget_tokens to 1024"
    )
    assert "\n" not in message


def test_step_unit_schedule_ending_before_the_last_step_warns() -> None:
    message = fit("wsd:peak=1e-3,total=3,floor=1e-5", 5 * STEP)
    assert message is not None
    assert "runs 5 steps but the schedule ends at total=3 steps: the last 2 steps" in message
    assert "lr=1e-05" in message and "total to 5" in message and "budget_tokens to 768" in message


@pytest.mark.parametrize(
    ("spec", "budget"),
    [
        ("cosine:peak=1e-3,total=1024,unit=tokens", 4 * STEP),  # last update at 768 < 1024
        ("cosine:peak=1e-3,total=1024,unit=tokens", 3 * STEP + 1),  # ceil: the same 4 steps
        ("cosine:peak=1e-3,total=769,unit=tokens", 4 * STEP),  # a total between two steps
        ("cosine:peak=1e-3,total=4", 4 * STEP),  # step unit: last update at step 3 < 4
        ("constant:value=1e-3", 100 * STEP),  # no total: open-ended
        ("infinite:peak=1e-3,constant=5e-4,warmup=2,cooldown=2", 100 * STEP),
    ],
)
def test_a_budget_that_spans_the_schedule_is_silent(spec: str, budget: int) -> None:
    assert fit(spec, budget) is None


@pytest.mark.parametrize(
    ("spec", "budget", "past"),
    [
        ("cosine:peak=1e-3,total=768,unit=tokens", 4 * STEP, "the last step trains"),
        ("cosine:peak=1e-3,total=3", 4 * STEP, "the last step trains"),
    ],
)
def test_the_last_step_exactly_at_the_end_warns(spec: str, budget: int, past: str) -> None:
    assert past in (fit(spec, budget) or "")


def test_the_suggested_fixes_silence_the_warning() -> None:
    schedule = from_spec("cosine:peak=1e-3,total=1000,unit=tokens")
    assert fitting_budget(schedule, STEP) == 1024
    assert fit("cosine:peak=1e-3,total=1000,unit=tokens", 1024) is None
    assert fit("cosine:peak=1e-3,total=2048,unit=tokens", 2048) is None  # total raised to budget


def test_a_run_past_the_schedule_end_warns_once(tiny_data: dict[str, str], tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        tiny_data,
        budget_tokens=3 * STEP,
        schedule={"name": "linear", "peak": 1e-3, "total": 2 * STEP, "unit": "tokens"},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(cfg, progress=False)
    budget_lines = [str(w.message) for w in caught if "budget_tokens=768" in str(w.message)]
    assert budget_lines == [
        "budget_tokens=768 runs 3 steps but the schedule ends at total=512 tokens: the last step "
        "trains at or past its end at lr=0; raise the schedule's total to 768 "
        "(--set schedule.total=768) or lower budget_tokens to 512"
    ]


def test_cli_prints_the_warning_as_one_line(tiny_data: dict[str, str], tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from evertrain.cli import app

    cfg = make_config(tmp_path / "run", tiny_data, budget_tokens=2 * STEP)
    cfg["schedule"]["total"] = STEP
    cfg["schedule"]["warmup"] = 0
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["train", "run", str(config), "--no-progress"])
    assert result.exit_code == 0, result.output
    warning_lines = [line for line in result.output.splitlines() if "schedule ends" in line]
    assert len(warning_lines) == 1 and warning_lines[0].startswith(
        "evertrain: warning: budget_tokens=512"
    )
    assert "UserWarning" not in result.output
    assert TrainConfig.model_validate(cfg).total_steps == 2
