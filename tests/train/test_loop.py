"""The training loop end to end on tiny data: logs, schedule progress, eval, checkpoints, fork,
non-finite policies, gradient accumulation and the refusal to overwrite a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from evertrain.schedules import from_spec
from evertrain.train import ConfigError, NonFiniteLossError, TrainConfig, history, run
from evertrain.train.checkpoint import load_checkpoint, verify_checkpoint
from evertrain.train.model import GPT, GPTConfig

from .conftest import make_config

COMPARED = ("step", "tokens", "lr", "loss", "grad_norm", "tokens_per_source", "skipped")


def comparable(out_dir: Path) -> list[dict]:
    """Log records without the wall-clock field (tokens_per_s)."""
    records = []
    for record in history(out_dir, "train") + history(out_dir, "eval"):
        records.append({k: v for k, v in record.items() if k != "tokens_per_s"})
    return records


@pytest.fixture(scope="module")
def finished_run(tiny_data: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run") / "base"
    cfg = TrainConfig.model_validate(make_config(out, tiny_data))
    return cfg, run(cfg, progress=False)


def test_log_schedule_eval_and_checkpoints(finished_run) -> None:
    cfg, result = finished_run
    out = Path(cfg.out_dir)
    assert (result.steps, result.tokens) == (12, 12 * 256)
    train = history(out, "train")
    assert [r["step"] for r in train] == list(range(1, 13))
    assert [r["tokens"] for r in train] == [256 * k for k in range(1, 13)]
    schedule = from_spec(cfg.schedule)
    # Token-unit schedule: the update at step k uses lr = s(tokens seen before it).
    assert [r["lr"] for r in train] == [schedule(256 * k) for k in range(12)]
    assert all(sum(r["tokens_per_source"].values()) == r["tokens"] for r in train)
    assert set(train[-1]["tokens_per_source"]) == {"prose", "code"}
    assert train[-1]["loss"] < train[0]["loss"] - 0.5  # it learns
    evals = history(out, "eval")
    assert [r["step"] for r in evals] == [4, 8, 12]
    assert result.final_eval == evals[-1]["eval"] and set(result.final_eval) == {"prose", "code"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["step"] for c in manifest["checkpoints"]] == [8, 12]  # keep_last=2 pruned step 4
    assert [c["eval"] for c in manifest["checkpoints"]] == [e["eval"] for e in evals[1:]]
    assert manifest["parent"] is None
    assert result.last_checkpoint == out / "checkpoints" / "step_00000012"
    assert TrainConfig.model_validate(yaml.safe_load((out / "config.yaml").read_text())) == cfg


def test_checkpoint_holds_exact_final_weights(finished_run) -> None:
    cfg, result = finished_run
    state = load_checkpoint(result.last_checkpoint)
    model = GPT(GPTConfig(**state["model_config"]))
    load_checkpoint(result.last_checkpoint, model)
    assert state["step"] == 12 and state["tokens"] == 3072
    # The schedule travels in the config (no second copy: nothing read it).
    assert "schedule" not in state and state["config"] == cfg.to_dict()
    assert from_spec(state["config"]["schedule"]) == cfg.schedule
    assert state["sampler"]["sequences_drawn"] == 12 * 4
    # Re-evaluating the restored weights reproduces the logged final eval exactly.
    from evertrain.data import PreparedDataset
    from evertrain.train import evaluate

    again = evaluate(
        model,
        {name: PreparedDataset(path) for name, path in cfg.data.train.items()},
        seq_len=64,
        batch_size=cfg.batch_size,
        eval_tokens=cfg.data.eval_tokens,
    )
    assert again == result.final_eval


def test_existing_run_is_never_overwritten(finished_run) -> None:
    cfg, _ = finished_run
    out = Path(cfg.out_dir)
    before = (out / "log.jsonl").read_bytes(), (out / "manifest.json").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run; pass resume=True"):
        run(cfg, progress=False)
    assert ((out / "log.jsonl").read_bytes(), (out / "manifest.json").read_bytes()) == before
    # Resuming a finished run changes nothing and reports its last eval.
    result = run(cfg, resume=True, progress=False)
    assert result.steps == 12 and result.final_eval == history(out, "eval")[-1]["eval"]
    assert (out / "log.jsonl").read_bytes() == before[0]


def test_corrupted_checkpoint_falls_back_and_log_matches(finished_run, tmp_path: Path) -> None:
    import shutil

    cfg, _ = finished_run
    out = tmp_path / "copy"
    shutil.copytree(cfg.out_dir, out)
    expected = comparable(out)
    state = out / "checkpoints" / "step_00000012" / "state.pt"
    state.write_bytes(state.read_bytes()[:100])  # truncated by a failing disk
    with pytest.warns(UserWarning, match="state.pt is corrupted or truncated"):
        result = run(cfg.model_copy(update={"out_dir": str(out)}), resume=True, progress=False)
    assert result.steps == 12
    assert comparable(out) == expected  # steps 9..12 re-run identically from step 8
    # The bad copy is set aside for inspection, the re-written step 12 is whole again.
    assert (out / "checkpoints" / ".corrupt-step_00000012" / "state.pt").stat().st_size == 100
    verify_checkpoint(out / "checkpoints" / "step_00000012")


def test_steps_unit_schedule_uses_zero_based_step(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    spec = {"name": "piecewise_linear", "points": [[0, 1e-3], [5, 2e-3]]}
    cfg = make_config(tmp_path, tiny_data, schedule=spec, budget_tokens=6 * 256)
    # The update at step 5 is at the schedule's end (total=5): said, and trained as asked.
    with pytest.warns(UserWarning, match="the last step trains at or past its end at lr=0.002"):
        run(cfg, progress=False)
    schedule = from_spec(spec)
    assert [r["lr"] for r in history(tmp_path, "train")] == [schedule(k) for k in range(6)]


def test_grad_accum_matches_the_bigger_batch(tiny_data: dict[str, str], tmp_path: Path) -> None:
    run(make_config(tmp_path / "a", tiny_data, budget_tokens=4 * 256), progress=False)
    run(
        make_config(tmp_path / "b", tiny_data, budget_tokens=4 * 256, batch_size=2, grad_accum=2),
        progress=False,
    )
    a, b = history(tmp_path / "a"), history(tmp_path / "b")
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
        assert rb["grad_norm"] == pytest.approx(ra["grad_norm"], rel=1e-4)


def test_fork_records_lineage_and_starts_fresh(
    finished_run, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    parent_cfg, parent = finished_run
    parent_ckpt = Path(parent_cfg.out_dir) / "checkpoints" / "step_00000008"
    cfg = make_config(
        tmp_path / "child",
        tiny_data,
        init_from=str(parent_ckpt),
        schedule={"name": "constant", "value": 1e-4, "unit": "tokens"},
        data__mixture={"prose": 0.0, "code": 1.0},
        budget_tokens=4 * 256,
    )
    result = run(cfg, progress=False)
    manifest = json.loads((tmp_path / "child" / "manifest.json").read_text())
    assert manifest["parent"] == {
        "checkpoint": str(parent_ckpt.resolve()),
        "run": str(Path(parent_cfg.out_dir).resolve()),
        "step": 8,
        "tokens": 2048,
    }
    train = history(tmp_path / "child")
    assert [r["tokens"] for r in train] == [256, 512, 768, 1024]  # fresh progress
    assert all(r["lr"] == 1e-4 for r in train)  # the new schedule
    assert train[-1]["tokens_per_source"] == {"prose": 0, "code": 1024}  # the new mixture
    # Forked weights: the first loss is the trained model's, far below a fresh model's ~ln(300)+.
    assert train[0]["loss"] < history(parent_cfg.out_dir)[0]["loss"] - 0.8
    assert result.steps == 4
    # A run directory also works as init_from (its newest valid checkpoint).
    run(
        make_config(tmp_path / "c2", tiny_data, init_from=parent_cfg.out_dir, budget_tokens=256),
        progress=False,
    )
    manifest = json.loads((tmp_path / "c2" / "manifest.json").read_text())
    assert manifest["parent"]["step"] == 12


def test_unfinished_schedule_warns(tiny_data: dict[str, str], tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path, tiny_data, budget_tokens=2 * 256, schedule="cosine:peak=1e-3,total=100"
    )
    with pytest.warns(UserWarning, match="schedule total=100 steps but the run ends at 2 steps"):
        run(cfg, progress=False)


def test_fork_from_missing_checkpoint_is_a_config_error(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="init_from: .*neither a checkpoint"):
        run(
            make_config(tmp_path / "x", tiny_data, init_from=str(tmp_path / "nope")), progress=False
        )


def test_nonfinite_stop_keeps_last_good_checkpoint(
    tiny_data: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVERTRAIN_TEST_NAN_AT_STEPS", "6")
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite loss \(nan\) at step 6 .*step_00000004"
    ):
        run(make_config(tmp_path, tiny_data), progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [c["step"] for c in manifest["checkpoints"]] == [4]
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[-1]["kind"] == "nonfinite" and records[-1]["loss"] is None
    assert max(r["step"] for r in records if r["kind"] == "train") == 5


def test_nonfinite_skip_counts_and_leaves_weights_finite(
    tiny_data: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVERTRAIN_TEST_NAN_AT_STEPS", "6,7")
    result = run(make_config(tmp_path, tiny_data, nonfinite="skip"), progress=False)
    train = history(tmp_path)
    assert result.skipped_steps == 2 and train[-1]["skipped"] == 2
    assert [r["loss"] is None for r in train] == [k in (6, 7) for k in range(1, 13)]
    assert all(math.isfinite(r["loss"]) for r in train[7:])
    assert all(math.isfinite(v) for v in result.final_eval.values())
    model = GPT(GPTConfig(**load_checkpoint(result.last_checkpoint)["model_config"]))
    load_checkpoint(result.last_checkpoint, model)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_named_checkpoints_are_never_pruned(tiny_data: dict[str, str], tmp_path: Path) -> None:
    cfg = make_config(tmp_path, tiny_data, checkpoint_at_tokens=[512, 1100], keep_last=1)
    run(cfg, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    names = [(c["name"], c["step"], c["pinned"]) for c in manifest["checkpoints"]]
    # 1100 falls inside step 5 (1024, 1280]: the checkpoint is taken right after that step.
    assert names == [
        ("tokens_512", 2, True),
        ("tokens_1100", 5, True),
        ("step_00000012", 12, False),
    ]


def test_bfloat16_autocast_tracks_float32(tiny_data: dict[str, str], tmp_path: Path) -> None:
    small = {"budget_tokens": 2 * 256, "data__eval_tokens": 256}
    run(make_config(tmp_path / "fp32", tiny_data, **small), progress=False)
    run(make_config(tmp_path / "bf16", tiny_data, dtype="bfloat16", **small), progress=False)
    fp32, bf16 = history(tmp_path / "fp32"), history(tmp_path / "bf16")
    for a, b in zip(fp32, bf16, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], abs=0.05)
        assert b["loss"] != a["loss"]  # autocast really ran in bfloat16


def test_tensorboard_scalars_and_thread_setting(tiny_data: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    before = torch.get_num_threads()
    run(
        make_config(tmp_path, tiny_data, budget_tokens=4 * 256, tensorboard=True, threads=2),
        progress=False,
    )
    assert torch.get_num_threads() == before  # restored after the run
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "eval/prose", "eval/code"} <= set(events.Tags()["scalars"])
    losses = [event.value for event in events.Scalars("train/loss")]
    assert losses == pytest.approx([r["loss"] for r in history(tmp_path)], rel=1e-6)
