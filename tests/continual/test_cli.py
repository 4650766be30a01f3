"""The continual CLI: `evertrain report`, `evertrain demo`, `evertrain continual run|compare|branches`:
results on good input, exit code 2 and a one-line error naming the fix on bad input."""

from __future__ import annotations

import os

import pytest
import yaml
from typer.testing import CliRunner

from evertrain.cli import app

from ..lock_holder import hold_lock_in_child

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
    assert "--scale 0.0 must be a number in [0.05, 1000]" in result.output
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


def test_demo_names_the_data_source_that_cannot_be_split_with_its_own_flags(tmp_path):
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
        # a separator the text does not hold: one document, whatever the data area's default
        "--txt-separator",
        "@@@",
        "--scale",
        "0.05",
        "--out",
        str(tmp_path / "d"),
    )
    assert result.exit_code == 2
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("error: --data OLD (") and "has only 1 document(s)" in error
    assert "--txt-separator" in error and "folder of .txt files or a .jsonl file" in error
    # only flags the demo has: not the data area's keywords
    assert "txt_separator" not in error and "val_fraction" not in error


@pytest.mark.parametrize(
    "peak_text", ["3e-3", "'3e-3'"], ids=["unquoted (YAML 1.1 reads a string)", "quoted string"]
)
def test_branches_reads_numbers_saved_as_text(tmp_path, make_run, peak_text):
    main = make_run(tmp_path, "main", evals=[(500, {"d0": 3.0})])
    (main / "config.yaml").write_text(
        f"schedule:\n  name: linear\n  peak: {peak_text}\n  floor: 3.0e-4\n  total: 500\n"
    )
    result = _invoke("continual", "branches", str(main))
    assert result.exit_code == 0, result.output  # was: Unknown format code 'e' for ... 'str'
    assert result.output.startswith("main  [linear 3.0e-03 → 3.0e-04]")


def test_report_out_that_is_a_file_is_refused_before_any_work(tmp_path, make_run):
    run = make_run(tmp_path, "a", evals=[(100, {"d0": 3.0})])
    (tmp_path / "page.html").write_text("mine")
    for out, message in (
        (tmp_path / "page.html", "is a file, but a folder is written here"),
        (tmp_path / "page.html" / "sub", "is a file, not a folder"),
    ):
        result = _invoke("report", str(run), "--out", str(out))
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert (
            len(lines) == 1 and lines[0].startswith(f"error: --out {out}") and message in lines[0]
        )
    assert (tmp_path / "page.html").read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_report_out_in_a_read_only_folder_is_refused(tmp_path, make_run):
    run = make_run(tmp_path, "a", evals=[(100, {"d0": 3.0})])
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = _invoke("report", str(run), "--out", str(locked / "rep"))
    finally:
        locked.chmod(0o755)
    assert result.exit_code == 2 and "cannot write in" in result.output


def test_report_out_where_nobody_can_write_is_refused_even_for_root(tmp_path, make_run):
    run = make_run(tmp_path, "a", evals=[(100, {"d0": 3.0})])
    result = _invoke("report", str(run), "--out", "/proc/evertrain-report")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--out /proc/evertrain-report" in lines[0]
    assert "cannot write in /proc" in lines[0]


def test_continual_run_on_a_held_output_folder_is_a_one_line_error(tmp_path):
    out = tmp_path / "o"
    holder = hold_lock_in_child(out, "continual output folder")
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "out_dir": str(out),
                "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 16},
                "stages": [{"name": "base", "datasets": {"d0": "x"}, "tokens": 64}],
            }
        )
    )
    try:
        result = _invoke("continual", "run", str(plan))
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"error: continual output folder {out} is in use by pid {holder.pid}"
    )


def test_a_preempted_stage_exits_75_so_the_scheduler_requeues_the_plan(tmp_path, monkeypatch):
    """`run()` raises RunPreempted after saving on SIGTERM/SIGINT (tests/train/test_preempt.py);
    the plan command must pass that on as exit 75 with one line, not a traceback and exit 1."""
    from evertrain.continual import runner as continual_runner
    from evertrain.train import EXIT_PREEMPTED, RunPreempted

    def preempted(plan, **kwargs):
        raise RunPreempted("preempted by SIGTERM at step 3 of 10", None, "SIGTERM")

    monkeypatch.setattr(continual_runner, "run_plan", preempted)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "out_dir": str(tmp_path / "o"),
                "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 16},
                "stages": [{"name": "base", "datasets": {"d0": "x"}, "tokens": 64}],
            }
        )
    )
    result = _invoke("continual", "run", str(plan))
    assert result.exit_code == EXIT_PREEMPTED == 75
    assert "preempted by SIGTERM at step 3" in result.output
    assert "run the same command again" in result.output
    assert "Traceback" not in result.output
