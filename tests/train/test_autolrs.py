"""schedule: auto -- the AutoLRS-style per-stage LR search (evertrain.train.autolrs)."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch

from evertrain import _yaml
from evertrain.train import TrainConfig, autolrs, history, run
from evertrain.train.autolrs import AutoSchedule, fit_exponential, forecast_loss
from evertrain.train.config import ConfigError

from .conftest import fork_child, make_config, rank_env

# 12 steps of 256 tokens: warmup 2, stages [2, 6), [6, 10), [10, 12); 3 candidates x 3 steps each.
AUTO = {
    "name": "auto",
    "lr_min": 1e-4,
    "lr_max": 1e-2,
    "stage_steps": 4,
    "horizon": 3,
    "candidates": 3,
    "warmup": 2,
}
STAGE_STARTS = [2, 6, 10]


def auto_config(out_dir: Path, data: dict[str, str], **spec: Any) -> dict[str, Any]:
    return make_config(
        out_dir,
        {"prose": data["prose"]},
        schedule={**AUTO, **spec},
        checkpoint_interval_tokens=3 * 256,  # checkpoints at steps 3, 6, 9, 12
    )


def losses(out_dir: Path) -> list[tuple[int, float, float]]:
    return [(r["step"], r["lr"], r["loss"]) for r in history(out_dir)]


@pytest.fixture(scope="module")
def tuned(tiny_data: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted auto run, shared by the tests that compare against it."""
    out_dir = tmp_path_factory.mktemp("auto") / "run"
    run(auto_config(out_dir, tiny_data), progress=False)
    return out_dir


# ---------------------------------------------------------------------------- the spec
def test_auto_spec_parses_round_trips_and_names_bad_fields(tmp_path: Path, tiny_data) -> None:
    cfg = TrainConfig.model_validate(auto_config(tmp_path / "r", tiny_data))
    assert isinstance(cfg.schedule, AutoSchedule)
    assert TrainConfig.model_validate(cfg.to_dict()).schedule == cfg.schedule
    inline = "auto:lr_min=1e-4,lr_max=1e-2,stages=3,horizon=2"
    parsed = TrainConfig.model_validate({**cfg.to_dict(), "schedule": inline}).schedule
    assert isinstance(parsed, AutoSchedule) and parsed.stages == 3 and parsed.candidates == 4
    for bad, field in [
        ({"horizon": 5}, "horizon=5 is longer than stage_steps=4"),
        ({"stages": 2}, "exactly one of stage_steps"),
        ({"lr_max": 1e-5}, "lr_max=1e-05 must be above lr_min"),
        ({"candidates": 1}, "candidates=1"),
        ({"forecast": "gp"}, "forecast='gp'"),
        ({"peak": 1e-3}, "unknown parameter(s) peak"),
    ]:
        with pytest.raises(ValueError, match=r"schedule") as caught:
            TrainConfig.model_validate(auto_config(tmp_path / "r", tiny_data, **bad))
        assert field in str(caught.value)
    with pytest.raises(ValueError, match="chosen while the run trains"):
        cfg.schedule(0)


def test_an_auto_schedule_that_cannot_fit_the_run_is_refused_before_any_work(
    tmp_path: Path, tiny_data
) -> None:
    for bad, message in [
        ({"warmup": 12}, "warmup=12 leaves no step to search in a run of 12 steps"),
        ({"stage_steps": None, "stages": 5, "horizon": 3}, "horizon=3 is longer than a stage (2"),
    ]:
        cfg = auto_config(tmp_path / "r", tiny_data, **bad)
        cfg["schedule"] = {k: v for k, v in cfg["schedule"].items() if v is not None}
        with pytest.raises(ValueError, match="schedule: auto") as caught:
            TrainConfig.model_validate(cfg)
        assert message in str(caught.value)
    fsdp = {**auto_config(tmp_path / "r", tiny_data), "parallel": {"strategy": "fsdp"}}
    with pytest.raises(ValueError, match="use parallel.strategy: ddp"):
        TrainConfig.model_validate(fsdp)
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------- the forecast
def test_exponential_fit_recovers_a_synthetic_curve() -> None:
    a, b, c = 2.0, 3.0, 0.05
    curve = [a + b * math.exp(-c * t) for t in range(1, 31)]
    fitted = fit_exponential(curve)
    assert fitted is not None
    assert fitted == pytest.approx((a, b, c), rel=1e-4)
    forecast, used = forecast_loss(curve, 200)
    assert used == "exponential"
    assert forecast == pytest.approx(a + b * math.exp(-c * 200), rel=1e-5)
    # too short to fit: the last-k mean; a non-finite loss: diverged
    assert forecast_loss([4.0, 3.0], 100, last_k=2) == (3.5, "last_mean")
    assert forecast_loss([4.0, math.nan], 100) == (math.inf, "diverged")


# ---------------------------------------------------------------------------- the search
def test_every_candidate_starts_from_the_same_state(tuned: Path) -> None:
    records = history(tuned, "autolrs")
    assert [r["start"] for r in records] == STAGE_STARTS
    main = {step: loss for step, _, loss in losses(tuned)}
    for record in records:
        firsts = {c["losses"][0] for c in record["candidates"]}
        assert len(firsts) == 1, record  # bit-identical first loss: weights and batch restored
        # The stage re-trains from the snapshot: its first steps ARE the chosen candidate's
        # (optimizer moments, sampler and RNG restored too, not only the weights).
        chosen = next(c for c in record["candidates"] if c["lr"] == record["chosen"])
        start = record["start"]
        main_losses = [main[start + k + 1] for k in range(len(chosen["losses"]))]
        assert main_losses == chosen["losses"]
        assert record["search_steps"] == sum(len(c["losses"]) for c in record["candidates"])
        assert record["search_tokens"] == record["search_steps"] * 256
    assert records[-1]["search_tokens_total"] == sum(r["search_tokens"] for r in records)
    # the main path's own progress does not count the search
    assert history(tuned)[-1]["tokens"] == 12 * 256


def test_realised_schedule_replays_the_tuned_run(tuned: Path, tmp_path: Path, tiny_data) -> None:
    realised = tuned / autolrs.REALISED_FILE
    spec = _yaml.load(realised.read_text())["schedule"]
    assert spec["name"] == "piecewise_linear"
    chosen = {r["start"]: r["chosen"] for r in history(tuned, "autolrs")}
    lrs = {step - 1: lr for step, lr, _ in losses(tuned)}  # record step k+1 used lr of step k
    assert all(lrs[start] == lr for start, lr in chosen.items())
    cfg = auto_config(tmp_path / "replay", tiny_data)
    cfg["schedule"] = str(realised)  # a spec file, as a user would pass it
    run(cfg, progress=False)
    assert losses(tmp_path / "replay") == losses(tuned)
    assert history(tmp_path / "replay", "eval") == history(tuned, "eval")
    assert history(tmp_path / "replay", "autolrs") == []


def test_a_clearly_best_lr_is_chosen_over_a_divergent_one(tmp_path: Path, tiny_data) -> None:
    # 1e-5 barely moves, 10 blows up (AdamW steps of size ~10), 3.2e-3 is clearly best.
    spec = {"lr_min": 1e-5, "lr_max": 10.0, "stage_steps": 5, "horizon": 4, "warmup": 0}
    cfg = auto_config(tmp_path / "r", tiny_data, **spec)
    cfg["budget_tokens"] = 5 * 256
    run(cfg, progress=False)
    (record,) = history(tmp_path / "r", "autolrs")
    by_lr = {c["lr"]: c for c in record["candidates"]}
    assert sorted(by_lr) == pytest.approx([1e-5, math.sqrt(1e-5 * 10.0), 10.0])
    assert record["chosen"] == pytest.approx(math.sqrt(1e-5 * 10.0))
    divergent = by_lr[10.0]["forecast"]
    assert divergent is None or divergent > max(
        c["forecast"] for c in by_lr.values() if c["lr"] < 10
    )


# ---------------------------------------------------------------------------- exact resume
def _same_run(resumed: Path, tuned: Path) -> None:
    assert losses(resumed) == losses(tuned)
    assert history(resumed, "eval") == history(tuned, "eval")
    assert history(resumed, "autolrs") == history(tuned, "autolrs")  # no stage logged twice
    realised = autolrs.REALISED_FILE
    assert (resumed / realised).read_text() == (tuned / realised).read_text()


def test_resume_after_a_stop_mid_stage_is_exact(
    tuned: Path, tmp_path: Path, tiny_data, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stopped at step 8 (inside stage [6, 10), searched after the checkpoint of step 6): the
    # resume goes back to step 6, drops the logged stage record and searches that stage again.
    cfg = auto_config(tmp_path / "r", tiny_data)
    monkeypatch.setenv("EVERTRAIN_TEST_NAN_AT_STEPS", "8")
    with pytest.raises(RuntimeError, match="non-finite loss"):
        run(cfg, progress=False)
    assert len(history(tmp_path / "r", "autolrs")) == 2
    monkeypatch.delenv("EVERTRAIN_TEST_NAN_AT_STEPS")
    run(cfg, resume=True, progress=False)
    _same_run(tmp_path / "r", tuned)


def test_resume_after_a_crash_mid_search_is_exact(
    tuned: Path, tmp_path: Path, tiny_data, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Crash inside the search of stage [10, 12) (candidate steps 19.. belong to it): the resume
    # starts at the checkpoint of step 9, whose state holds the LRs of stages 0 and 1.
    real_step, calls = autolrs.candidate_step, []

    def crashing_step(*args: Any) -> float:
        calls.append(1)
        if len(calls) == 22:
            raise RuntimeError("crash mid-trial")  # no checkpoint may come of it
        return real_step(*args)

    monkeypatch.setattr(autolrs, "candidate_step", crashing_step)
    cfg = auto_config(tmp_path / "r", tiny_data)
    with pytest.raises(RuntimeError, match="crash mid-trial"):
        run(cfg, progress=False)
    newest = max(n for n in os.listdir(tmp_path / "r" / "checkpoints") if n.startswith("step_"))
    assert newest == "step_00000009"
    monkeypatch.setattr(autolrs, "candidate_step", real_step)
    run(cfg, resume=True, progress=False)
    _same_run(tmp_path / "r", tuned)


def test_two_ddp_ranks_search_like_one_process(tuned: Path, tmp_path: Path, tiny_data) -> None:
    """Two forked gloo ranks (the global batch split between them) choose the single process's
    LRs: the forecasts come from all-reduced losses and rank 0's choice is broadcast."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cfg = auto_config(tmp_path / "ddp", tiny_data)

    def body() -> int:
        run(cfg, progress=False)
        return 3 if torch.distributed.is_initialized() else 0

    children = [fork_child(body, rank_env(rank, port)) for rank in range(2)]
    assert [os.waitpid(pid, 0)[1] for pid in children] == [0, 0]
    ddp, single = history(tmp_path / "ddp", "autolrs"), history(tuned, "autolrs")
    assert [r["chosen"] for r in ddp] == [r["chosen"] for r in single]
    assert [loss for *_, loss in losses(tmp_path / "ddp")] == pytest.approx(
        [loss for *_, loss in losses(tuned)], rel=1e-4
    )


def test_candidate_grid_keeps_the_range_ends_and_refines_around_the_best() -> None:
    grid, spacing = autolrs.candidate_grid(1e-4, 1e-2, 3)
    assert grid[0] == 1e-4 and grid[-1] == 1e-2  # exact, as written in the spec
    assert grid[1] == pytest.approx(1e-3) and spacing == pytest.approx(math.log(10))
    refined, finer = autolrs.candidate_grid(1e-4, 1e-2, 3, best=1e-3, spacing=spacing)
    assert refined == pytest.approx([1e-3 / math.sqrt(10), 1e-3, 1e-3 * math.sqrt(10)])
    assert finer == pytest.approx(spacing / 2)
    clipped, _ = autolrs.candidate_grid(1e-4, 1e-2, 3, best=1e-2, spacing=spacing)
    assert max(clipped) == 1e-2 and min(clipped) == pytest.approx(1e-2 / math.sqrt(10))


def test_a_second_round_trains_only_new_lrs(tmp_path: Path, tiny_data) -> None:
    cfg = auto_config(tmp_path / "r", tiny_data, rounds=2, stage_steps=10, horizon=3)
    run(cfg, progress=False)
    (record,) = history(tmp_path / "r", "autolrs")
    tried = [c["lr"] for c in record["candidates"]]
    assert len(tried) == 5  # 3 + the 2 new neighbours of the best (the best is not retrained)
    assert record["search_steps"] == 5 * 3
    assert tried[:3] == pytest.approx([1e-4, 1e-3, 1e-2])
    best_first = min(record["candidates"][:3], key=lambda c: c["forecast"])["lr"]
    cell = (best_first / 10**0.5 * (1 - 1e-9), best_first * 10**0.5 * (1 + 1e-9))
    assert all(cell[0] <= lr <= cell[1] for lr in tried[3:])
    best = min(record["candidates"], key=lambda c: c["forecast"])
    assert record["chosen"] == best["lr"]


def test_a_continual_stage_on_an_auto_base_is_refused_in_one_line(tuned: Path) -> None:
    # The base's LR state cannot be read from an auto spec: a one-line ContinualError (exit 2 in
    # the CLI), never a traceback. (Reading tuned/realised_schedule.yaml instead would lift this.)
    from evertrain.continual.runner import ContinualError, base_info

    with pytest.raises(ContinualError, match="unknown schedule name='auto'") as caught:
        base_info(tuned)
    assert "\n" not in str(caught.value)


def test_resuming_a_fixed_schedule_run_on_auto_is_refused(tmp_path: Path, tiny_data) -> None:
    fixed = make_config(tmp_path / "r", {"prose": tiny_data["prose"]}, budget_tokens=4 * 256)
    run(fixed, progress=False)
    recorded = (tmp_path / "r" / "config_history.jsonl").read_text()
    switched = {**auto_config(tmp_path / "r", tiny_data), "budget_tokens": 12 * 256}
    with pytest.raises(ConfigError, match="cannot resume on an auto one; start a new run with"):
        run(switched, resume=True, progress=False)
    assert len(history(tmp_path / "r")) == 4  # the run's log is kept as it was
    # refused before the resume records the changed config
    assert (tmp_path / "r" / "config_history.jsonl").read_text() == recorded
