"""`evertrain law fit` reads the logs people have: run folders, log.jsonl, TensorBoard, W&B/CSV
exports with any column names, a sparse lr column, rows without a loss; `law predict` takes
token-unit specs with --tokens-per-step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.laws import LawError, MultiPowerLaw
from evertrain.laws.logs import load_log_curve
from evertrain.schedules import from_spec

from .laws_synth import MPL_TRUE, make_curves

runner = CliRunner()
SPEC = "wsd:peak=3e-3,total=60,warmup=6,decay_fraction=0.3"


def _write_run(
    folder: Path,
    spec: str | dict = SPEC,
    *,
    every: int = 5,
    total: int = 60,
    tokens_per_step: int = 128,
    logged_spec: str | dict | None = None,
) -> Path:
    """An evertrain run folder as the trainer leaves it (config.yaml + log.jsonl), by hand."""
    folder.mkdir(parents=True)
    logged = from_spec(logged_spec or spec)
    config = {"schedule": from_spec(spec).to_spec()}
    (folder / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    lines = []
    unit_tokens = logged.unit == "tokens"
    for step in range(every, total + 1, every):
        progress = (step - 1) * tokens_per_step if unit_tokens else step - 1
        record = {
            "kind": "train",
            "step": step,
            "tokens": step * tokens_per_step,
            "lr": logged(progress),
            "loss": 6.0 - 0.01 * step,
        }
        lines.append(json.dumps(record))
        if step % 20 == 0:
            lines.append(json.dumps({"kind": "eval", "step": step, "eval": {"val": 5.0}}))
    (folder / "log.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_run_folder_and_its_log_rebuild_the_lr_from_the_recorded_schedule(tmp_path):
    run = _write_run(tmp_path / "run")
    for path in (run, run / "log.jsonl"):
        curve, notes = load_log_curve(path)
        # record step S (after the update) is update S - 1
        assert curve.steps.tolist() == list(range(4, 60, 5)) and curve.name == "run"
        np.testing.assert_array_equal(curve.lr, from_spec(SPEC)(np.arange(60.0)))
        assert "rebuilt from the run's recorded schedule" in notes[-1]


def test_token_unit_run_is_rebuilt_from_the_logged_token_counts(tmp_path):
    spec = "wsd:peak=3e-3,total=7680,warmup=768,decay_fraction=0.3,unit=tokens"
    run = _write_run(tmp_path / "run", spec, tokens_per_step=128)
    curve, notes = load_log_curve(run)
    np.testing.assert_allclose(curve.lr, from_spec(spec)(np.arange(60.0) * 128), rtol=1e-12)
    assert "rebuilt" in notes[-1]


def test_a_recorded_schedule_that_does_not_match_the_log_is_not_used(tmp_path):
    run = _write_run(tmp_path / "run", SPEC, logged_spec="cosine:peak=1e-3,total=60")
    curve, notes = load_log_curve(run)
    assert "the run's recorded schedule gives lr" in notes[-1] and "but the log has" in notes[-1]
    assert "interpolated linearly" in notes[-1]
    logged = from_spec("cosine:peak=1e-3,total=60")
    assert curve.lr[9] == pytest.approx(logged(9))  # a logged point: exact


def test_wandb_export_with_its_own_column_names_and_a_sparse_lr(tmp_path):
    path = tmp_path / "wandb_export.csv"
    schedule = from_spec("cosine:peak=1e-3,total=100,warmup=10")
    rows = ["Step,my-run - train/loss,my-run - train/loss__MIN,my-run - train/learning_rate"]
    for step in range(0, 100, 2):
        lr = repr(schedule(step)) if step % 10 == 0 else ""  # lr logged every 10 steps
        rows.append(f"{step},{5 - step / 100},{5 - step / 100},{lr}")
    path.write_text("\n".join(rows) + "\n")
    curve, notes = load_log_curve(path)
    assert len(curve.steps) == 50 and curve.steps[-1] == 98
    assert "'my-run - train/loss'" in notes[0] and "'my-run - train/learning_rate'" in notes[0]
    assert "logged at 10 of 99 steps, interpolated linearly" in notes[-1]
    assert curve.lr[10] == schedule(10) and curve.lr[5] == pytest.approx(schedule(5), rel=1e-9)
    # the same through the CLI: the output says how the LR was obtained
    result = runner.invoke(app, ["law", "fit", str(path), "-o", str(tmp_path / "f.json")])
    assert "interpolated linearly" in result.output


def test_column_flags_name_any_columns_and_a_wrong_name_lists_them(tmp_path):
    path = tmp_path / "log.tsv"
    rows = ["it\tobjective\teta"] + [f"{k}\t{4 - k / 50}\t1e-3" for k in range(60)]
    path.write_text("\n".join(rows) + "\n")
    curve, notes = load_log_curve(path, step_col="it", loss_col="objective", lr_col="eta")
    assert len(curve.steps) == 60 and notes[-1] == "lr: logged at every step"
    with pytest.raises(
        LawError, match=r"no step column among it, objective, eta: name it with --step-col"
    ):
        load_log_curve(path)
    with pytest.raises(LawError, match=r"--loss-col 'nll': .* its columns are it, objective, eta"):
        load_log_curve(path, step_col="it", loss_col="nll")


def test_rows_without_a_loss_are_an_error_naming_the_row_and_dropna_drops_them(tmp_path):
    path = tmp_path / "curve.csv"
    rows = ["step,lr,loss"] + [f"{k},1e-3,{'' if k in (7, 9) else 4 - k / 100}" for k in range(30)]
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "fit.json"
    result = runner.invoke(app, ["law", "fit", str(path), "-o", str(out)])
    assert result.exit_code == 2
    assert "line 9 (step 7) has no loss (2 such rows): pass --dropna" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    curve, notes = load_log_curve(path, dropna=True)
    assert 7 not in curve.steps and len(curve.steps) == 28
    assert "--dropna: dropped 2 rows without a loss" in notes


def test_tensorboard_event_files_are_read(tmp_path):
    pytest.importorskip("tensorboard")
    torch_tb = pytest.importorskip("torch.utils.tensorboard")
    writer = torch_tb.SummaryWriter(log_dir=str(tmp_path / "tb"))
    for step in range(0, 50):
        writer.add_scalar("train/loss", 4 - step / 100, step)
        if step % 5 == 0:
            writer.add_scalar("train/lr", 1e-3, step)
    writer.close()
    curve, notes = load_log_curve(tmp_path / "tb")
    assert len(curve.steps) == 50 and np.allclose(curve.lr, 1e-3, rtol=1e-6)  # float32 in TB
    assert "TensorBoard tags: loss 'train/loss', lr 'train/lr'" in notes[0]
    events = next((tmp_path / "tb").glob("events.out.tfevents*"))
    assert len(load_log_curve(events)[0].steps) == 50


def test_tensorboard_missing_gives_an_install_hint(tmp_path, monkeypatch):
    (tmp_path / "events.out.tfevents.1.host").write_bytes(b"")
    for name in ("tensorboard", "tensorboard.backend.event_processing.event_accumulator"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(LawError, match=r"needs tensorboard \(pip install tensorboard\)"):
        load_log_curve(tmp_path / "events.out.tfevents.1.host")


def test_reading_logs_imports_no_torch(tmp_path):
    run = _write_run(tmp_path / "run")
    code = (
        "import sys; from evertrain.laws.logs import load_log_curve; "
        f"load_log_curve({str(run)!r}); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_predict_token_unit_specs_need_and_use_tokens_per_step(tmp_path):
    fit = tmp_path / "fit.json"
    MultiPowerLaw(MPL_TRUE).save(fit)
    steps_spec = "wsd:peak=3e-4,total=2000,warmup=200,decay_fraction=0.2"
    tokens_spec = "wsd:peak=3e-4,total=1024000,warmup=102400,decay_fraction=0.2,unit=tokens"
    refused = runner.invoke(
        app, ["law", "predict", str(fit), tokens_spec, "-o", str(tmp_path / "p.png")]
    )
    assert refused.exit_code == 2 and "--tokens-per-step" in refused.output
    assert not (tmp_path / "p.png").exists()
    by_tokens = runner.invoke(
        app, ["law", "predict", str(fit), tokens_spec, "--tokens-per-step", "512",
              "-o", str(tmp_path / "t.png")],
    )  # fmt: skip
    by_steps = runner.invoke(
        app, ["law", "predict", str(fit), steps_spec, "-o", str(tmp_path / "s.png")]
    )
    assert by_tokens.exit_code == 0, by_tokens.output
    final = [
        line.split()[1]
        for line in (by_tokens.output, by_steps.output)
        for line in [line for line in line.splitlines() if "(step 1999)" in line]
    ]
    assert len(final) == 2 and final[0] == final[1]


def test_fit_on_a_sparse_csv_still_takes_schedule(tmp_path):
    curve = make_curves(MultiPowerLaw(MPL_TRUE), noise=0.0, every=100)[0]
    path = tmp_path / "c.csv"
    path.write_text(
        "step,loss\n"
        + "".join(f"{s},{float(v)!r}\n" for s, v in zip(curve.steps, curve.loss, strict=True))
    )
    loaded, notes = load_log_curve(path, schedule=curve.lr)
    np.testing.assert_array_equal(loaded.lr, curve.lr[: int(curve.steps[-1]) + 1])
    assert notes[-1].startswith("lr: from --schedule")
