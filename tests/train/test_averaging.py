"""Weight averaging (train/averaging.py): EMA, LAWA and SWA against hand-computed averages, the
trainer's eval_avg records and average.safetensors, and bit-exact resume with each kind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from evertrain.train import TrainConfig, history, run
from evertrain.train.averaging import WeightAverager
from evertrain.train.checkpoint import CheckpointError, load_checkpoint
from evertrain.train.config import AveragingConfig, ConfigError

from .conftest import make_config

AVERAGING = {
    "ema": {"kind": "ema", "half_life_tokens": 1024},
    "lawa": {"kind": "lawa", "k": 2, "interval_steps": 4},
    "swa": {"kind": "swa", "start_step": 3},  # before the step-4 checkpoint a resume starts from
}


def _walk(config: dict, weights: list[float], tokens_per_step: int = 10) -> WeightAverager:
    """Feed a one-parameter model the weights ``weights[1:]`` after steps 1, 2, ... (it starts
    at ``weights[0]``)."""
    model = torch.nn.Linear(1, 1, bias=False)
    averager = WeightAverager(AveragingConfig(**config), model)
    with torch.no_grad():
        model.weight.fill_(weights[0])
    averager.start(model, 0, 0)
    for step, value in enumerate(weights[1:], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        averager.update(model, step, step * tokens_per_step)
    return averager


def _value(averager: WeightAverager) -> float:
    weights = averager.weights()
    assert weights is not None
    return float(weights["weight"])


WALK = [0.0, 1.0, 3.0, -2.0, 5.0, 4.0, 7.0]


def test_ema_equals_the_hand_computed_average() -> None:
    decay = 0.5 ** (10 / 20)  # tokens_per_step 10, half-life 20 tokens
    expected = WALK[0]
    for value in WALK[1:]:
        expected = decay * expected + (1 - decay) * value
    assert _value(_walk({"kind": "ema", "half_life_tokens": 20}, WALK)) == pytest.approx(
        expected, abs=1e-6
    )


def test_lawa_is_the_mean_of_the_last_k_snapshots() -> None:
    # Snapshots after steps 2, 4 and 6 (WALK[2], WALK[4], WALK[6]); k=2 keeps the last two.
    averager = _walk({"kind": "lawa", "k": 2, "interval_steps": 2}, WALK)
    assert averager.snapshot_steps == [4, 6]
    assert _value(averager) == pytest.approx((WALK[4] + WALK[6]) / 2, abs=1e-6)
    # In tokens: every 30 tokens = steps 3 and 6.
    by_tokens = _walk({"kind": "lawa", "k": 5, "interval_tokens": 30}, WALK)
    assert by_tokens.snapshot_steps == [3, 6]
    assert _value(by_tokens) == pytest.approx((WALK[3] + WALK[6]) / 2, abs=1e-6)


def test_swa_is_the_uniform_mean_from_its_start_to_the_end() -> None:
    averager = _walk({"kind": "swa", "start_step": 3}, WALK)
    assert _value(averager) == pytest.approx(sum(WALK[3:]) / len(WALK[3:]), abs=1e-6)
    by_tokens = _walk({"kind": "swa", "start_tokens": 50}, WALK)  # steps 5 and 6
    assert _value(by_tokens) == pytest.approx((WALK[5] + WALK[6]) / 2, abs=1e-6)
    assert _walk({"kind": "swa", "start_step": 99}, WALK).weights() is None  # not started yet


def test_average_on_cpu_and_swap_restores_the_live_weights() -> None:
    averager = _walk({"kind": "swa", "start_step": 1, "device": "cpu"}, WALK)
    assert averager.average is not None and averager.average[0].device.type == "cpu"
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.123)
    with averager.swapped_in(model) as present:
        assert present and float(model.weight.detach()) == pytest.approx(
            sum(WALK[1:]) / 6, abs=1e-6
        )
    assert float(model.weight.detach()) == pytest.approx(0.123)


@pytest.mark.parametrize(
    ("averaging", "field"),
    [
        ({"kind": "ema"}, "averaging.half_life_tokens"),
        ({"kind": "lawa", "k": 2}, "interval_steps or interval_tokens"),
        ({"kind": "swa", "start_step": 1, "k": 3}, "averaging.k"),
    ],
)
def test_bad_averaging_config_names_the_field(
    averaging: dict, field: str, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig.model_validate(make_config(tmp_path / "run", tiny_data, averaging=averaging))


def test_trainer_lawa_average_equals_the_mean_of_its_checkpoints(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """End to end: LAWA with k=2 every 4 steps at step 12 is the mean of the weights the
    trainer saved at steps 8 and 12; evaluated at every eval under eval_avg."""
    out = tmp_path / "run"
    run(make_config(out, tiny_data, averaging=AVERAGING["lawa"]), progress=False)
    checkpoints = out / "checkpoints"
    w8 = load_file(checkpoints / "step_00000008" / "model.safetensors")
    w12 = load_file(checkpoints / "step_00000012" / "model.safetensors")
    average = load_file(checkpoints / "step_00000012" / "average.safetensors")
    assert set(average) == set(w12)
    for name in average:
        torch.testing.assert_close(average[name], (w8[name] + w12[name]) / 2, rtol=0, atol=1e-6)
    evals = history(out, "eval")
    assert [sorted(r["eval_avg"]) for r in evals] == [["code", "prose"]] * 3
    assert evals[-1]["eval_avg"] != evals[-1]["eval"]
    # Loaded as a model, the average gives the logged eval_avg losses.
    from evertrain.train.loop import _load_datasets, evaluate
    from evertrain.train.model import GPT, GPTConfig

    cfg = TrainConfig.model_validate(make_config(out, tiny_data))
    state = load_checkpoint(checkpoints / "step_00000012")
    model = GPT(GPTConfig(**state["model_config"]))
    load_checkpoint(checkpoints / "step_00000012", model, weights="average")
    _, eval_sets, _ = _load_datasets(cfg)
    losses = evaluate(model, eval_sets, seq_len=64, batch_size=4, eval_tokens=1024)
    assert losses == pytest.approx(evals[-1]["eval_avg"], abs=1e-6)
    # The continual readers see the live weights' losses only.
    from evertrain.continual.runs import load_run

    assert load_run(out).final_eval == pytest.approx(evals[-1]["eval"])


def test_load_average_of_a_run_without_averaging_is_a_one_line_error(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run(make_config(out, tiny_data, budget_tokens=4 * 256), progress=False)
    with pytest.raises(CheckpointError, match="holds no averaged weights"):
        load_checkpoint(out / "checkpoints" / "step_00000004", weights="average")


def _killed_then_resumed(config: dict, kill_at: str) -> None:
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.environ["EVERTRAIN_TEST_KILL_AT"] = kill_at
            torch.set_num_threads(1)
            run(config, progress=False)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    run(config, resume=True, progress=False)


@pytest.mark.parametrize("kind", sorted(AVERAGING))
def test_resume_with_averaging_is_bit_exact(
    kind: str, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """Killed after step 6 (last checkpoint at step 4), resumed: the final averaged weights
    and every eval_avg equal an uninterrupted run's bit for bit."""
    runs = {}
    for name in ("straight", "resumed"):
        out = tmp_path / name
        config = make_config(out, tiny_data, deterministic=True, averaging=AVERAGING[kind])
        if name == "straight":
            run(config, progress=False)
        else:
            _killed_then_resumed(config, "step:6")
        final = out / "checkpoints" / "step_00000012"
        runs[name] = (
            (final / "average.safetensors").read_bytes(),
            [r.get("eval_avg") for r in history(out, "eval")],
        )
    assert runs["resumed"] == runs["straight"]


def test_resume_that_adds_averaging_starts_the_average_there(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run(
        make_config(out, tiny_data, budget_tokens=8 * 256, schedule="constant:value=1e-3"),
        progress=False,
    )
    config = make_config(out, tiny_data, schedule="constant:value=1e-3", averaging=AVERAGING["ema"])
    with pytest.warns(UserWarning, match="changed config: averaging: None -> "):
        run(config, resume=True, progress=False)
    evals = history(out, "eval")
    assert "eval_avg" not in evals[0] and evals[-1]["eval_avg"]


def test_yaml_round_trip_keeps_averaging(tiny_data: dict[str, str], tmp_path: Path) -> None:
    cfg = TrainConfig.model_validate(
        make_config(tmp_path / "run", tiny_data, averaging=AVERAGING["swa"])
    )
    again = TrainConfig.model_validate(yaml.safe_load(cfg.to_yaml()))
    assert again.averaging == cfg.averaging


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"averaging": AVERAGING["ema"]}, "averaging: not supported with parallel.strategy fsdp"),
        (
            {"optimizer": {"name": "schedulefree_adamw"}, "schedule": "constant:value=1e-3"},
            "optimizer: schedulefree_adamw is not supported with parallel.strategy fsdp",
        ),
    ],
)
def test_fsdp_refuses_a_second_copy_of_the_weights(
    extra: dict, field: str, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    config = make_config(tmp_path / "run", tiny_data, parallel={"strategy": "fsdp"}, **extra)
    with pytest.raises(ConfigError, match=field):
        TrainConfig.model_validate(config)
