"""The natural loop from the command line: train two short runs, fit a law to their run folders,
optimise a schedule, train with it. Tiny (40 steps of 4 x 32 tokens per run)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from evertrain.cli import app  # noqa: E402

runner = CliRunner()

CONFIG = """\
out_dir: runs/{name}
model: {{n_layer: 1, n_head: 2, d_model: 32, seq_len: 32}}
data: {{train: {{english: data/english}}, eval_tokens: 512}}
schedule: {schedule}
batch_size: 4
budget_tokens: 5120
eval_interval_tokens: 5120
checkpoint_interval_tokens: 5120
log_interval: 4
"""


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
    return result.output


def test_train_fit_optimize_train_from_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _ok(["data", "prepare", "stdlib-english", "-o", "data/english", "--vocab-size", "300",
         "--max-bytes", "40000"])  # fmt: skip
    runs = {
        "constant": "{name: constant, value: 3e-3, warmup: 4}",
        "wsd": "{name: wsd, peak: 3e-3, total: 40, warmup: 4, decay_fraction: 0.4}",
    }
    for name, schedule in runs.items():
        (tmp_path / f"{name}.yaml").write_text(CONFIG.format(name=name, schedule=schedule))
        _ok(["train", "run", f"{name}.yaml"])
    fitted = _ok(["law", "fit", "runs/constant", "runs/wsd/log.jsonl", "-o", "fit.json"])
    assert fitted.count("lr: rebuilt from the run's recorded schedule") == 2
    _ok(["law", "optimize", "fit.json", "--steps", "40", "--peak", "3e-3", "--floor", "3e-5",
         "--warmup", "4", "--knots", "8", "-o", "opt.json"])  # fmt: skip
    spec = json.loads((tmp_path / "opt.json").read_text())["schedule"]
    assert spec["name"] == "piecewise_linear"
    trained = _ok(["train", "run", "wsd.yaml", "--set", "out_dir=runs/optimised", "--set",
                   "schedule=opt.json"])  # fmt: skip
    assert "warning" not in trained.lower()  # the optimised spec's total is the run's length
    predicted = _ok(["law", "predict", "fit.json", "opt.json", "--steps", "40", "-o", "p.png"])
    assert "(step 39)" in predicted
    # the optimised run's folder is itself a fit input: its LR is rebuilt from opt.json
    log = [
        json.loads(line)
        for line in (tmp_path / "runs/optimised/log.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in log if r["kind"] == "train"][-1] == 40
