"""`evertrain schedule show | plot | export`: output content and exit code 2 on bad specs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.schedules import from_spec

WSD = "wsd:peak=3e-4,total=24000,warmup=2160,decay_fraction=0.2,floor=3e-5"


@pytest.fixture
def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always separates stderr
        return CliRunner()


def test_show_lists_key_points_and_extremes(runner):
    result = runner.invoke(app, ["schedule", "show", WSD])
    assert result.exit_code == 0, result.output
    rows = {}
    for line in result.stdout.splitlines()[2:]:
        label, *cells = re.split(r"\s{2,}", line.strip())
        rows[label] = cells
    assert rows["start"] == ["0", "0"]
    assert rows["end of warmup"] == ["2160", "0.0003"]
    assert rows["start of decay"] == ["19200", "0.0003"]
    assert rows["end of decay / end (total)"] == ["24000", "3e-05"]
    assert rows["min"] == ["0"] and rows["max"] == ["0.0003"]


def test_show_json_round_trips(runner):
    result = runner.invoke(app, ["schedule", "show", WSD, "--json"])
    assert result.exit_code == 0
    assert from_spec(json.loads(result.stdout)) == from_spec(WSD)


def test_export_csv_every_step_matches_the_library(runner, tmp_path):
    out = tmp_path / "lr.csv"
    result = runner.invoke(
        app, ["schedule", "export", "cosine:peak=1e-3,total=100,warmup=10", "--csv", "-o", str(out)]
    )
    assert result.exit_code == 0
    rows = out.read_text().strip().splitlines()
    assert rows[0] == "steps,lr" and len(rows) == 102  # header + steps 0..100
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    expected = from_spec("cosine:peak=1e-3,total=100,warmup=10")(data[:, 0])
    np.testing.assert_array_equal(data[:, 1], expected)  # %.17g round-trips float64 exactly


def test_export_points_and_json_to_stdout(runner):
    result = runner.invoke(app, ["schedule", "export", WSD, "--json", "--points", "11"])
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["progress"] == [2400.0 * i for i in range(11)]
    assert payload["lr"][-1] == 3e-5 and payload["spec"]["name"] == "wsd"


def test_plot_writes_a_png_with_several_curves(runner, tmp_path):
    out = tmp_path / "plots" / "lr.png"
    result = runner.invoke(
        app,
        ["schedule", "plot", WSD, "cosine:peak=3e-4,total=24000,warmup=2160", "-o", str(out),
         "--x", "tokens", "--tokens-per-step", "4096"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["show", "cosin:peak=1"], "did you mean 'cosine'"),
        (["show", "wsd:peak=1e-3,total=100,warmup=500"], "warmup=500 is longer than total=100"),
        (["export", "wsd:peak=-1,total=10"], "peak=-1 must be >= 0"),
        (["export", "wsd:peak=1,total=10", "--points", "1"], "--points=1 must be >= 2"),
        (["plot", "wsd:peak=1,total=10", "--x", "tokens"], "--tokens-per-step"),
        (["plot", "wsd:peak=1,total=10", "--x", "epochs"], "use steps or tokens"),
        (["show", "missing_file.yaml"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(runner, args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["schedule", *args])
    assert result.exit_code == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_failed_export_leaves_an_existing_file_untouched(runner, tmp_path):
    out = tmp_path / "lr.csv"
    out.write_text("precious\n")
    result = runner.invoke(
        app, ["schedule", "export", "wsd:peak=1,total=10,warmup=50", "-o", str(out)]
    )
    assert result.exit_code == 2
    assert out.read_text() == "precious\n"


@pytest.mark.parametrize("command", ["plot", "export"])
def test_bad_output_paths_exit_2_with_one_line_before_the_work(
    runner, command, tmp_path, monkeypatch
):
    import evertrain.schedules.summary as summary

    def boom(*args, **kwargs):
        raise AssertionError("sampled the schedule before checking the output path")

    monkeypatch.setattr(summary, "sample", boom)
    (tmp_path / "folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    cases = [
        (tmp_path / "folder", "is a folder, but a file is written here"),
        (tmp_path / "a_file" / "lr.out", "a_file is a file, not a folder"),
    ]
    if Path("/proc/self").exists():  # unwritable even for root
        cases.append(("/proc/evertrain/lr.out", "cannot write in /proc"))
    for path, needle in cases:
        result = runner.invoke(app, ["schedule", command, WSD, "-o", str(path)])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: -o {path}: "), result.stderr
        assert needle in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "folder"]
