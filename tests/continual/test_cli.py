"""The continual CLI: `evertrain report`, `evertrain demo`, `evertrain continual run|compare|branches`:
results on good input, exit code 2 and a one-line error naming the fix on bad input."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from evertrain.cli import app

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args))


def test_report_command_writes_the_page(tmp_path, make_run):
    run = make_run(
        tmp_path,
        "a",
        evals=[(100, {"d0": 3.0}), (200, {"d0": 2.5})],
        train=[(100, 1e-3, {"d0": 100}), (200, 1e-3, {"d0": 200})],
    )
    result = _invoke("report", str(run), "--out", str(tmp_path / "rep"))
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("index.html")
    assert (tmp_path / "rep" / "curves.png").exists()


def test_report_command_on_a_non_run_exits_2(tmp_path):
    (tmp_path / "nothing").mkdir()
    result = _invoke("report", str(tmp_path / "nothing"), "--out", str(tmp_path / "rep"))
    assert result.exit_code == 2
    assert "neither log.jsonl nor manifest.json" in result.output
    assert "Traceback" not in result.output


def test_demo_rejects_a_bad_scale_before_doing_anything(tmp_path):
    result = _invoke("demo", "--scale", "0", "--out", str(tmp_path / "d"))
    assert result.exit_code == 2
    assert "scale=0.0 must be a number in [0.05, 1000]" in result.output
    assert not (tmp_path / "d").exists()


def test_continual_run_reports_plan_errors_by_field(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "out_dir": str(tmp_path / "o"),
                "stages": [{"name": "base", "datasets": {"d0": "x"}, "tokens": -5}],
            }
        )
    )
    result = _invoke("continual", "run", str(plan))
    assert result.exit_code == 2
    assert "stages.0.tokens: Input should be greater than 0" in result.output


def test_compare_rejects_malformed_dataset_options(tmp_path):
    result = _invoke(
        "continual",
        "compare",
        "rewarm",
        "--base",
        str(tmp_path),
        "--old",
        "nodir",
        "--new",
        "code=x",
        "--tokens",
        "1000",
    )
    assert result.exit_code == 2
    assert "--old 'nodir': expected NAME=PREPARED_DIR" in result.output


def test_branches_lists_the_tree(tmp_path, make_run):
    main = make_run(
        tmp_path,
        "main",
        evals=[(500, {"d0": 3.0}), (1000, {"d0": 2.8})],
        config={"schedule": {"name": "constant", "value": 1e-3}},
    )
    for fork in (500, 1000):
        make_run(
            tmp_path,
            f"decay-{fork}",
            evals=[(100, {"d0": 2.5})],
            parent={
                "checkpoint": str(main / "checkpoints" / f"tokens_{fork}"),
                "run": str(main),
                "tokens": fork,
            },
            config={"schedule": {"name": "linear", "peak": 1e-3, "floor": 1e-4, "total": 100}},
        )
    make_run(tmp_path, "unrelated", evals=[(100, {"d0": 9.0})])
    result = _invoke("continual", "branches", str(main), "--plot", str(tmp_path / "tree.png"))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("main  [constant 1.00e-03]  tokens 0 → 1,000")
    assert lines[1].startswith(
        "├─ decay-500 forked at 500 (tokens_500)  [linear 1.0e-03 → 1.0e-04]  tokens 500 → 600"
    )
    assert lines[2].startswith("└─ decay-1000 forked at 1,000")
    assert "unrelated" not in result.output
    assert (tmp_path / "tree.png").exists()


def test_demo_names_the_data_source_that_cannot_be_split(tmp_path):
    pytest.importorskip("tokenizers")
    (tmp_path / "old.txt").write_text("one single document about apples and pears. " * 200)
    (tmp_path / "new.jsonl").write_text(
        "".join(f'{{"text": "def f{i}(x):\\n    return x + {i}"}}\n' for i in range(50))
    )
    result = _invoke(
        "demo",
        "--data",
        str(tmp_path / "old.txt"),
        str(tmp_path / "new.jsonl"),
        "--scale",
        "0.05",
        "--out",
        str(tmp_path / "d"),
    )
    assert result.exit_code == 2
    assert "--data D0 (" in result.output and "the corpus has 1 document" in result.output
    assert "folder of .txt files or a .jsonl file" in result.output
