"""Per-step LR of the shared curves, CSV loading, schedule resolution."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from evertrain.laws import (
    SHARED_CURVES,
    SHARED_SIZES,
    LawError,
    load_curve,
    load_shared_curves,
    lr_array,
    shared_curve_lr,
    shared_curves_dir,
)
from evertrain.laws.curves import read_curve_csv, shared_curve_total


@pytest.mark.parametrize("size", ["25M", "100M"])
def test_shared_lr_matches_logged_lr_column(size):
    for name in SHARED_CURVES:
        steps, _, logged = read_curve_csv(shared_curves_dir(size) / f"{name}.csv")
        lr = shared_curve_lr(name, max(shared_curve_total(name), int(steps.max()) + 1))
        np.testing.assert_allclose(lr[steps], logged, rtol=1e-12, atol=0, err_msg=name)


def test_shared_lr_warmup_and_shapes():
    lr = shared_curve_lr("wsdcon_9")
    assert (
        len(lr) == 16000
        and lr[0] == 0.0
        and lr[2159] == 3e-4
        and lr[1] == pytest.approx(3e-4 / 2159)
    )
    assert lr[7999] == 3e-4 and lr[8000] == pytest.approx(9e-5)
    cosine = shared_curve_lr("cosine_24000")
    assert cosine[2160] == 3e-4 and np.all(np.diff(cosine[2160:]) < 0)
    with pytest.raises(LawError, match="unknown shared curve"):
        shared_curve_lr("linear_100")


def test_load_curve_from_schedule_or_dense_column(tmp_path):
    sparse = tmp_path / "sparse.csv"
    sparse.write_text("step,loss\n10,4.0\n20,3.9\n30,3.8\n")
    with pytest.raises(LawError, match="pass the schedule spec"):
        load_curve(sparse)
    curve = load_curve(sparse, "cosine:peak=1e-3,total=100,warmup=5")
    assert len(curve.lr) == 31 and curve.lr[5] == pytest.approx(1e-3)
    dense = tmp_path / "dense.csv"
    dense.write_text(
        "step,lr,loss\n" + "".join(f"{i},{1e-3 * (1 - i / 10)},{4 - i / 10}\n" for i in range(10))
    )
    curve = load_curve(dense)
    assert curve.lr[3] == pytest.approx(7e-4) and curve.name == "dense"
    logged_sparse = tmp_path / "logged.csv"
    logged_sparse.write_text("step,lr,loss\n0,1e-3,4\n5,1e-3,3.9\n")
    with pytest.raises(LawError, match="logged at 2 of 6 steps"):
        load_curve(logged_sparse)
    bad = tmp_path / "bad.csv"
    bad.write_text("iteration,value\n1,2\n")
    with pytest.raises(LawError, match="must name the columns 'step' and 'loss'"):
        load_curve(bad)


def test_lr_array_inputs():
    np.testing.assert_array_equal(lr_array(np.array([1.0, 2.0, 3.0]), 2), [1.0, 2.0])
    with pytest.raises(LawError, match="3 steps but 5 are needed"):
        lr_array([1.0, 2.0, 3.0], 5)
    with pytest.raises(LawError, match="bad schedule"):
        lr_array("cosine:peak=1e-3,total=100,warmup=500", 10)
    tokens = lr_array(
        {"name": "linear", "peak": 1.0, "total": 1000, "unit": "tokens"}, 4, tokens_per_step=100
    )
    assert tokens[1] == pytest.approx(0.9)
    with pytest.raises(LawError, match="tokens_per_step"):
        lr_array({"name": "linear", "peak": 1.0, "total": 1000, "unit": "tokens"}, 4)


def test_load_curve_recognises_shared_curves_only_by_their_lr(tmp_path):
    curve = load_curve(shared_curves_dir("25M") / "wsdcon_9.csv")
    np.testing.assert_array_equal(
        curve.lr[: len(shared_curve_lr("wsdcon_9"))], shared_curve_lr("wsdcon_9")
    )
    impostor = tmp_path / "cosine_24000.csv"  # same name, a different run
    impostor.write_text("step,lr,loss\n100,1e-3,4.0\n200,1e-3,3.9\n")
    with pytest.raises(LawError, match="pass the run's schedule spec"):
        load_curve(impostor)


# --- the published curves packaged with evertrain ------------------------------------------

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("size", SHARED_SIZES)
def test_size_names_load_the_packaged_curves_from_any_working_directory(
    size, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # nothing named 25M/100M or ../shared here
    curves = load_shared_curves(size)
    assert sorted(curves) == sorted(SHARED_CURVES)
    # the same data as reading the packaged folder by path
    by_path = load_shared_curves(shared_curves_dir(size))
    for name in SHARED_CURVES:
        np.testing.assert_array_equal(curves[name].loss, by_path[name].loss)
    assert curves["cosine_24000"].steps[-1] < 24000  # the protocol drops the final row


def test_a_folder_path_still_loads_and_a_bad_source_names_the_fix(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(shared_curves_dir("25M") / "wsdcon_9.csv", folder)
    curves = load_shared_curves(folder, names=["wsdcon_9"])
    assert curves["wsdcon_9"].meta["path"] == str(folder / "wsdcon_9.csv")
    with pytest.raises(LawError, match=r"pass a size \(25M, 100M\)"):
        load_shared_curves(tmp_path / "missing")
    with pytest.raises(LawError, match="unknown shared curve size '30M'"):
        shared_curves_dir("30M")


def test_packaged_curves_keep_their_attribution_and_licence():
    folder = shared_curves_dir("25M").parent
    assert "Luo et al., 2025" in (folder / "README.md").read_text()
    assert "MIT License" in (folder / "LICENSE-source").read_text()


def test_every_packaged_curve_file_is_declared_package_data():
    """A non-editable install carries only files matched by pyproject's package-data globs."""
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["evertrain.laws"]
    package = REPO / "src" / "evertrain" / "laws"
    declared = {path for pattern in globs for path in package.glob(pattern)}
    shipped = {path for path in (package / "curves_data").rglob("*") if path.is_file()}
    assert len(shipped) == 2 + 2 * len(SHARED_CURVES)
    assert shipped == declared
