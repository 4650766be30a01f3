"""`continual run` and `continual compare` print their results table, as `evertrain demo` does."""

from __future__ import annotations

from types import SimpleNamespace

import yaml
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.continual.demo import format_table

runner = CliRunner()


def _two_runs(tmp_path, make_run):
    first = make_run(
        tmp_path / "runs",
        "base",
        evals=[(100, {"prose": 3.0}), (200, {"prose": 2.5})],
        train=[(100, 1e-3, {"prose": 100}), (200, 1e-3, {"prose": 200})],
    )
    second = make_run(
        tmp_path / "runs",
        "code",
        evals=[(300, {"prose": 2.7, "code": 2.0}), (400, {"prose": 2.6, "code": 1.5})],
        train=[(300, 1e-3, {"prose": 200, "code": 100}), (400, 1e-3, {"prose": 200, "code": 200})],
    )
    return [first, second]


def test_continual_run_prints_the_results_table(tmp_path, make_run, monkeypatch):
    from evertrain.continual import runner as continual_runner

    runs = _two_runs(tmp_path, make_run)
    monkeypatch.setattr(
        continual_runner, "run_plan", lambda plan, **_: [SimpleNamespace(out_dir=r) for r in runs]
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "out_dir": str(tmp_path / "o"),
                "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 16},
                "stages": [{"name": "base", "datasets": {"prose": "x"}, "tokens": 64}],
            }
        )
    )
    result = runner.invoke(app, ["continual", "run", str(plan)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if line.startswith("run "))
    assert header.split() == ["run", "loss", "prose", "loss", "code", "avg", "forget", "tokens"]
    base_row = next(line for line in lines if line.startswith("base "))
    code_row = next(line for line in lines if line.startswith("code "))
    assert "2.500" in base_row and "1.500" in code_row and "400" in code_row
    assert lines[-1].startswith("report: ") and lines[-1].endswith("index.html")


def test_the_demo_table_is_unchanged_and_names_the_baseline() -> None:
    rows = [
        {"run": "retrain", "after": {"D0": 3.1, "D1": 2.9}, "loss_avg": 3.0, "tokens": 1000},
        {
            "run": "rewarm+replay",
            "after": {"D0": 3.2, "D1": 2.8},
            "loss_avg": 3.0,
            "forgetting": 0.05,
            "tokens": 500,
            "loss_gap_vs_baseline": 0.01,
            "tokens_vs_baseline": 0.5,
        },
    ]
    table = format_table(rows, "title").splitlines()
    assert table[1] == (
        "run                loss D0  loss D1      avg   forget     tokens  vs retrain"
    )
    assert table[4] == (
        "rewarm+replay        3.200    2.800    3.000   +0.050        500  +1.0% @50%"
    )
    assert "vs" not in format_table(rows, baseline=None).splitlines()[0]


def test_continual_compare_prints_the_results_table(tmp_path, make_run, monkeypatch):
    from evertrain.continual import runner as continual_runner

    base, recipe_run = _two_runs(tmp_path, make_run)
    config = {"model": {}, "batch_size": 4, "data": {"eval_tokens": 64}}
    monkeypatch.setattr(continual_runner, "base_info", lambda base_dir: (None, config))
    monkeypatch.setattr(continual_runner, "resolve_base", lambda base_dir: (base, None))
    monkeypatch.setattr(
        continual_runner, "run_recipe", lambda *a, **k: SimpleNamespace(out_dir=recipe_run)
    )
    result = runner.invoke(
        app,
        ["continual", "compare", "rewarm", "--base", str(base), "--old", "prose=x",
         "--new", "code=y", "--tokens", "100", "--out", str(tmp_path / "cmp")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert any(line.split()[:3] == ["run", "loss", "prose"] for line in result.output.splitlines())
    assert any(line.startswith("code ") for line in result.output.splitlines())
