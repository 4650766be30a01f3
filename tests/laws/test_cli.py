"""`evertrain law fit | predict | optimize | compare` end to end on small synthetic curves."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.laws import MultiPowerLaw

from .laws_synth import MPL_TRUE, make_curves

runner = CliRunner()


@pytest.fixture(scope="module")
def curve_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("curves")
    paths = []
    for curve in make_curves(MultiPowerLaw(MPL_TRUE), noise=2e-4, every=50):
        # logged every 50 steps: the per-step LR must come from --schedule
        path = folder / f"{curve.name}.csv"
        lines = ["step,lr,loss"]
        logged = dict(zip(curve.steps.tolist(), curve.loss.tolist(), strict=True))
        for step in range(int(curve.steps[-1]) + 1):
            if step in logged:
                lines.append(f"{step},{float(curve.lr[step])!r},{logged[step]!r}")
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def fit_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "fit.json"
    MultiPowerLaw(MPL_TRUE).save(path)
    return path


def test_fit_command_with_schedules(curve_files, tmp_path):
    specs = [
        "cosine:peak=3e-4,total=3000,warmup=100,floor=3e-5",
        "constant:value=3e-4,total=3000,warmup=100",
        "piecewise_linear:points=[[0,0],[100,3e-4],[1499,3e-4],[1500,9e-5]]",
    ]
    args = [
        "law",
        "fit",
        *map(str, curve_files),
        "--law",
        "annealing",
        "-o",
        str(tmp_path / "f.json"),
    ]
    for spec in specs:
        args += ["--schedule", spec]
    result = runner.invoke(app, args)
    if result.exit_code == 2 and "bad schedule" in result.output:
        pytest.skip(f"schedule string form unsupported here: {result.output}")
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "f.json").read_text())
    assert payload["law"] == "annealing" and payload["fit"]["r2"] > 0.99
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_predict_writes_csv_and_plot(fit_json, tmp_path):
    out_csv = tmp_path / "pred.csv"
    result = runner.invoke(
        app,
        [
            "law",
            "predict",
            str(fit_json),
            "wsd:peak=3e-4,total=3000,warmup=100,decay_fraction=0.2,floor=3e-5",
            "-o",
            str(tmp_path / "p.png"),
            "--csv",
            str(out_csv),
            "--every",
            "10",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out_csv.open()))
    assert list(rows[0]) == ["step", "lr", "pred"] and rows[-1]["step"] == "2999"
    law = MultiPowerLaw(MPL_TRUE)
    steps = np.array([int(r["step"]) for r in rows])
    expected = law.predict(
        "wsd:peak=3e-4,total=3000,warmup=100,decay_fraction=0.2,floor=3e-5", steps
    )
    np.testing.assert_allclose([float(r["pred"]) for r in rows], expected, rtol=1e-15)
    assert (tmp_path / "p.png").exists() and "final loss" in result.output


def test_predict_reads_the_total_of_any_spec_form_without_steps(fit_json, tmp_path):
    """A piecewise_linear spec has no `total=` field: its total is its last point (200 here)."""
    spec = "piecewise_linear:points=[[0,0],[20,3e-4],[150,3e-4],[200,3e-5]]"
    out_csv = tmp_path / "pred.csv"
    result = runner.invoke(
        app,
        [
            "law",
            "predict",
            str(fit_json),
            spec,
            "-o",
            str(tmp_path / "p.png"),
            "--csv",
            str(out_csv),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out_csv.open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 200))
    expected = MultiPowerLaw(MPL_TRUE).predict(spec)  # every step 1 .. total - 1
    np.testing.assert_allclose([float(r["pred"]) for r in rows], expected, rtol=1e-15)


def test_predict_without_steps_names_a_bad_spec_or_an_open_ended_one(fit_json, tmp_path):
    png = str(tmp_path / "p.png")
    result = runner.invoke(
        app, ["law", "predict", str(fit_json), "wsd:peak=3e-4,totl=300", "-o", png]
    )
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "bad schedule wsd:peak=3e-4,totl=300" in result.output
    assert "unknown parameter 'totl'" in result.output  # the spec's own error, not "no total"
    result = runner.invoke(app, ["law", "predict", str(fit_json), "constant:value=3e-4", "-o", png])
    assert result.exit_code == 2 and "has no total: pass --steps" in result.output


def test_compare_and_optimize(fit_json, tmp_path):
    result = runner.invoke(
        app,
        [
            "law",
            "compare",
            str(fit_json),
            "--steps",
            "3000",
            "--peak",
            "3e-4",
            "--floor",
            "3e-5",
            "--warmup",
            "100",
            "--fractions",
            "0.1,0.3",
            "--shapes",
            "linear",
            "--json",
            str(tmp_path / "rank.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    ranking = json.loads((tmp_path / "rank.json").read_text())["ranking"]
    assert len(ranking) == 3 and ranking[-1]["label"] == "cosine"
    result = runner.invoke(
        app,
        [
            "law",
            "optimize",
            str(fit_json),
            "--steps",
            "3000",
            "--peak",
            "3e-4",
            "--floor",
            "3e-5",
            "--warmup",
            "100",
            "--knots",
            "16",
            "-o",
            str(tmp_path / "opt.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "opt.json").read_text())
    assert payload["schedule"]["name"] == "piecewise_linear" and payload["gain_vs_cosine"] > 0
    assert (tmp_path / "opt.png").exists()


def test_cli_bad_input_exits_2(fit_json, curve_files, tmp_path):
    cases = [
        [
            "law",
            "fit",
            str(curve_files[1]),
            "-o",
            str(tmp_path / "x.json"),
        ],  # sparse log, no schedule
        [
            "law",
            "fit",
            str(curve_files[1]),
            "-s",
            "constant:value=3e-4,total=3000,warmup=100",
            "-o",
            str(tmp_path / "x.json"),
        ],
        ["law", "fit", str(tmp_path / "missing.csv")],
        ["law", "predict", str(tmp_path / "nope.json"), "cosine:peak=1e-3,total=10"],
        ["law", "optimize", str(fit_json), "--steps", "100", "--peak", "3e-4", "--floor", "0"],
        ["law", "compare", str(fit_json), "--peak", "3e-4"],
        ["law", "fit", str(curve_files[0]), "--law", "power"],
        ["law", "fit", str(curve_files[0]), "--method", "lbfgs", "-o", str(tmp_path / "x.json")],
    ]
    for args in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output
    assert not (tmp_path / "x.json").exists()


def test_fit_example_fits_the_packaged_curves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no CSV files, no ../shared: the packaged copy only
    result = runner.invoke(app, ["law", "fit", "--example", "25M"])
    assert result.exit_code == 0, result.output
    assert "mpl fit (reference) on 3 curves" in result.output and "R2=" in result.output
    payload = json.loads((tmp_path / "fit.json").read_text())
    # the published 25M parameters (docs/laws.md, "Evidence")
    assert payload["params"]["L0"] == pytest.approx(3.0405, rel=1e-3)
    assert payload["params"]["B"] == pytest.approx(363.79, rel=2e-3)
    assert (tmp_path / "fit.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "args, needle",
    [
        (
            ["--example", "30M"],
            "--example 30M: no packaged curves of that size; use one of 25M, 100M",
        ),
        (["--example", "25M", "a.csv"], "give either --example SIZE or CSV files"),
        ([], "no curves to fit: give run folders, log.jsonl, TensorBoard or CSV files"),
    ],
)
def test_fit_example_bad_input(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["law", "fit", *args])
    assert result.exit_code == 2 and needle in result.output, result.output


# --- output paths: one line, exit 2, before the work -----------------------------------------


@pytest.fixture
def no_work(monkeypatch):
    """Make fitting, predicting and optimising fail loudly: the path check must come first."""
    import evertrain.laws.cli as laws_cli
    import evertrain.laws.optimize as optimize_module
    from evertrain.laws import AnnealingLaw

    def boom(*args, **kwargs):
        raise AssertionError("the work ran before the output path was checked")

    monkeypatch.setattr(MultiPowerLaw, "fit", boom)
    monkeypatch.setattr(AnnealingLaw, "fit", boom)
    for module in (optimize_module, laws_cli):  # the CLI holds its own names of the two
        monkeypatch.setattr(module, "optimize_schedule", boom)
        monkeypatch.setattr(module, "compare_schedules", boom)
    monkeypatch.setattr(MultiPowerLaw, "predict_lr", boom)


def _bad_outputs(tmp_path):
    """{case: path}: an existing folder, a path below a file, a folder nobody can create in."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    return {
        "folder": (tmp_path / "folder", "is a folder, but a file is written here"),
        "file-as-parent": (tmp_path / "a_file" / "out.json", "a_file is a file, not a folder"),
        "unwritable": (Path("/proc/evertrain-test/out.json"), "cannot write in /proc"),
    }


CASES = ["folder", "file-as-parent", "unwritable"]


def _assert_one_line_error(result, path, needle):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert str(path) in lines[0] and needle in lines[0], result.output


@pytest.mark.parametrize("case", CASES)
def test_fit_refuses_a_bad_output_before_fitting(case, no_work, tmp_path):
    if case == "unwritable" and not Path("/proc/self").exists():
        pytest.skip("needs Linux /proc (a folder nobody can create files in, root included)")
    path, needle = _bad_outputs(tmp_path)[case]
    for flag in ("-o", "--plot"):
        result = runner.invoke(app, ["law", "fit", "--example", "25M", flag, str(path)])
        _assert_one_line_error(result, path, needle)
    # the old `-o DIR` wrote its temp file beside DIR; nothing may be left anywhere
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "folder"]
    assert not any((tmp_path / "folder").iterdir())


@pytest.mark.parametrize("case", CASES)
def test_predict_optimize_compare_refuse_bad_outputs_before_the_work(
    case, no_work, fit_json, tmp_path
):
    if case == "unwritable" and not Path("/proc/self").exists():
        pytest.skip("needs Linux /proc (a folder nobody can create files in, root included)")
    path, needle = _bad_outputs(tmp_path)[case]
    spec = "cosine:peak=3e-4,total=3000,warmup=100,floor=3e-5"
    budget = ["--steps", "3000", "--peak", "3e-4", "--floor", "3e-5"]
    for args in (
        ["predict", str(fit_json), spec, "-o", str(path)],
        ["predict", str(fit_json), spec, "-o", str(tmp_path / "p.png"), "--csv", str(path)],
        ["optimize", str(fit_json), *budget, "-o", str(path)],
        ["optimize", str(fit_json), *budget, "-o", str(tmp_path / "o.json"), "--plot", str(path)],
        ["compare", str(fit_json), spec, "--json", str(path)],
    ):
        result = runner.invoke(app, ["law", *args])
        _assert_one_line_error(result, path, needle)


def test_predict_checks_every_numbered_csv_path(no_work, fit_json, tmp_path):
    (tmp_path / "pred_2.csv").mkdir()  # the second schedule's CSV would land on a folder
    specs = ["cosine:peak=3e-4,total=3000", "constant:value=3e-4,total=3000"]
    result = runner.invoke(
        app,
        [
            "law",
            "predict",
            str(fit_json),
            *specs,
            "-o",
            str(tmp_path / "p.png"),
            "--csv",
            str(tmp_path / "pred.csv"),
        ],
    )
    _assert_one_line_error(result, tmp_path / "pred_2.csv", "is a folder")
    assert not (tmp_path / "pred_1.csv").exists()


def test_fit_refuses_a_read_only_folder(no_work, tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            try:
                (folder / "probe").write_text("x")
            except OSError:
                pass
            else:
                pytest.skip(
                    "running as root: permission bits do not stop root (the /proc case "
                    "covers an unwritable folder)"
                )
        result = runner.invoke(
            app, ["law", "fit", "--example", "25M", "-o", str(folder / "fit.json")]
        )
        _assert_one_line_error(result, folder / "fit.json", "cannot write in")
    finally:
        folder.chmod(0o755)
