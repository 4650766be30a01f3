"""Schedule-free AdamW (optimizer.name: schedulefree_adamw): eval and checkpoints use the
averaged point x (the trainer calls optimizer.eval()/train()), exact resume, one warmup, and a
one-line error for a schedule that decays."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evertrain.train import TrainConfig, history, run
from evertrain.train.checkpoint import load_checkpoint
from evertrain.train.config import ConfigError
from evertrain.train.loop import _load_datasets, evaluate
from evertrain.train.model import GPT, GPTConfig
from evertrain.train.optim import build_optimizer

from .conftest import make_config

CONSTANT = {"name": "constant", "value": 3e-3, "warmup": 3 * 256, "unit": "tokens"}


def sf_config(out: Path, data: dict[str, str], **overrides) -> dict:
    return make_config(
        out, data, schedule=CONSTANT, optimizer={"name": "schedulefree_adamw"}, **overrides
    )


def test_eval_and_checkpoint_use_the_optimizers_x_point(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """Fails if the trainer forgets optimizer.eval(): the saved weights must be the x that the
    optimizer's own eval() gives (not y, where gradients are taken), and the logged eval loss
    that of x."""
    out = tmp_path / "run"
    run(sf_config(out, tiny_data), progress=False)
    final = out / "checkpoints" / "step_00000012"
    state = load_checkpoint(final)
    assert state["optimizer"]["param_groups"][0]["train_mode"] is False  # saved in eval mode
    saved = load_file(final / "model.safetensors")

    # Rebuild the optimizer from the checkpoint and go to y and back to x by its own switch.
    model = GPT(GPTConfig(**state["model_config"]))
    load_checkpoint(final, model)
    optimizer = build_optimizer(model, name="schedulefree_adamw")  # in train mode: y = x now
    optimizer.load_state_dict(state["optimizer"])  # eval mode again, as saved
    optimizer.train()  # x -> y
    y = {name: p.detach().clone() for name, p in model.named_parameters()}
    cfg = TrainConfig.model_validate(sf_config(out, tiny_data))
    _, eval_sets, _ = _load_datasets(cfg)

    def losses() -> dict[str, float]:
        return evaluate(model, eval_sets, seq_len=64, batch_size=4, eval_tokens=1024)

    loss_y = losses()
    optimizer.eval()  # y -> x
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), saved[name], rtol=0, atol=1e-6)
        assert not torch.allclose(y[name], saved[name], atol=1e-4) or p.dim() == 1
    assert any(not torch.allclose(y[n], saved[n], atol=1e-4) for n in y)
    logged = history(out, "eval")[-1]["eval"]
    assert logged == pytest.approx(losses(), abs=1e-6)
    assert logged != pytest.approx(loss_y, abs=1e-4)


def test_resume_is_bit_exact(tiny_data: dict[str, str], tmp_path: Path) -> None:
    results = {}
    for name in ("straight", "resumed"):
        out = tmp_path / name
        config = sf_config(out, tiny_data, deterministic=True)
        if name == "straight":
            run(config, progress=False)
        else:
            pid = os.fork()
            if pid == 0:  # child: never return into pytest
                code = 1
                try:
                    os.environ["EVERTRAIN_TEST_KILL_AT"] = "step:6"
                    torch.set_num_threads(1)
                    run(config, progress=False)
                    code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            run(config, resume=True, progress=False)
        final = out / "checkpoints" / "step_00000012"
        records = [
            {k: v for k, v in r.items() if k != "tokens_per_s"}
            for r in history(out, "train") + history(out, "eval")
        ]
        results[name] = ((final / "model.safetensors").read_bytes(), records)
    assert results["resumed"] == results["straight"]


def test_warmup_comes_from_the_schedule(tiny_data: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(sf_config(out, tiny_data, budget_tokens=4 * 256), progress=False)
    lrs = [r["lr"] for r in history(out, "train")]
    assert lrs == pytest.approx([0.0, 1e-3, 2e-3, 3e-3])
    with pytest.raises(ConfigError, match="optimizer.warmup_steps: schedulefree's own warmup"):
        TrainConfig.model_validate(
            make_config(
                out,
                tiny_data,
                schedule=CONSTANT,
                optimizer={"name": "schedulefree_adamw", "warmup_steps": 10},
            )
        )


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_a_decaying_schedule_is_a_one_line_error(
    schedule: str, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    spec = {"name": schedule, "peak": 3e-3, "total": 12 * 256, "warmup": 256, "unit": "tokens"}
    with pytest.raises(ConfigError) as caught:
        TrainConfig.model_validate(
            make_config(
                tmp_path / "run", tiny_data, schedule=spec, optimizer={"name": "schedulefree_adamw"}
            )
        )
    message = str(caught.value).splitlines()[-1]
    assert f"schedule: '{schedule}' decays after its warmup" in message
    assert "use the constant schedule with a warmup" in message
    # A schedule that only rises and then stays is fine; plain AdamW may decay.
    TrainConfig.model_validate(make_config(tmp_path / "run", tiny_data, schedule=spec))
    TrainConfig.model_validate(sf_config(tmp_path / "run", tiny_data))


def test_optimizer_state_of_another_kind_is_refused(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """AdamW moments cannot seed schedule-free AdamW: a fork says so in one line; weights only
    (init_optimizer: false) works."""
    parent = tmp_path / "adamw"
    run(make_config(parent, tiny_data, budget_tokens=2 * 256, schedule=CONSTANT), progress=False)
    child = sf_config(tmp_path / "child", tiny_data, budget_tokens=2 * 256, init_from=str(parent))
    with pytest.raises(
        ConfigError,
        match="its optimizer state is adamw's, this run's optimizer.name is schedulefree_adamw; set init_optimizer: false",
    ):
        run(child, progress=False)
    child["out_dir"] = str(tmp_path / "child2")
    run({**child, "init_optimizer": False}, progress=False)
    assert history(tmp_path / "child2", "eval")
