"""Prediction bands: the block bootstrap, its coverage on synthetic noisy curves, JSON, CLI, plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from evertrain.laws import AnnealingLaw, LawError, LossCurve, law_from_dict
from evertrain.laws.cli import app
from evertrain.laws.cpt import CPTLaw, Recipe
from evertrain.laws.intervals import band_from_draws, block_resample, coverage, default_block

from .cpt_synth import make_runs, true_law
from .laws_synth import ANNEALING_TRUE, make_curves, synthetic_lrs

NOISE = 2e-3


def test_block_resample_keeps_blocks_of_consecutive_residuals() -> None:
    series = np.arange(100.0)
    out = block_resample(series, 10, np.random.default_rng(0))
    assert len(out) == 100
    steps = np.diff(out)
    # inside a block values advance by one (circularly), so most differences are 1 or -99
    assert np.mean((steps == 1) | (steps == -99)) >= 0.85
    assert default_block(1000) == 10 and default_block(1) == 1


def test_band_quantiles_by_hand() -> None:
    draws = np.ones((1, 1))
    # one draw, five residual quantiles: the 25 % / 75 % quantiles are the 2nd and 4th values
    lower, upper = band_from_draws(draws, [-0.2, -0.1, 0.0, 0.1, 0.2], 0.5)
    assert lower[0] == pytest.approx(np.exp(-0.1)) and upper[0] == pytest.approx(np.exp(0.1))
    # two draws, no noise: a confidence band between them
    lower, upper = band_from_draws(np.array([[1.0], [np.e]]), None, 0.5)
    assert lower[0] == pytest.approx(np.exp(0.25)) and upper[0] == pytest.approx(np.exp(0.75))
    with pytest.raises(LawError, match="level"):
        band_from_draws(draws, None, 1.5)


def test_a_resample_predicting_a_non_positive_loss_is_left_out_not_a_nan_band() -> None:
    # a refit far from its data can predict a loss below zero, which has no log: before, the
    # whole band turned NaN and every measured point counted as outside it
    draws = np.array([[1.0, 1.0], [np.e, np.e], [-0.2, np.e**2]])
    with pytest.warns(UserWarning, match="1 of 3 bootstrap resamples predict a non-positive"):
        lower, upper = band_from_draws(draws, None, 0.5)
    assert np.isfinite(lower).all() and np.isfinite(upper).all()
    # point 0: the bad draw left out, the band of the other two; point 1: all three kept
    assert lower[0] == pytest.approx(np.exp(0.25)) and upper[0] == pytest.approx(np.exp(0.75))
    assert lower[1] == pytest.approx(np.exp(0.5)) and upper[1] == pytest.approx(np.exp(1.5))
    # every resample non-positive at a point: the band there is unknown, said, never NaN
    with pytest.warns(UserWarning, match="unbounded where all do"):
        lower, upper = band_from_draws(np.array([[-1.0, 1.0], [0.0, np.e]]), None, 0.5)
    assert (lower[0], upper[0]) == (0.0, np.inf) and np.isfinite(upper[1])


@pytest.fixture(scope="module")
def boot_annealing():
    curves = make_curves(AnnealingLaw(ANNEALING_TRUE, warmup="as-is"), noise=NOISE, seed=1)
    law = AnnealingLaw(warmup="as-is")
    result = law.fit(curves, bootstrap=60, seed=0)
    return law, result


def test_coverage_near_nominal_on_fresh_noisy_curves(boot_annealing) -> None:
    """New noisy measurements of the same schedules: about 90 % inside the 90 % band."""
    law, _ = boot_annealing
    truth = AnnealingLaw(ANNEALING_TRUE, warmup="as-is")
    rng = np.random.default_rng(7)
    inside = []
    for lr in synthetic_lrs().values():
        steps = np.arange(100, 3000, 10)
        fresh = truth.predict_lr(lr, steps) * (1 + NOISE * rng.standard_normal(len(steps)))
        inside.append(coverage(law.predict_band(lr, steps, 0.9), fresh))
    assert 0.8 <= float(np.mean(inside)) <= 0.97


def test_confidence_band_is_narrower_and_holds_the_truth(boot_annealing) -> None:
    law, _ = boot_annealing
    lr = synthetic_lrs()["cosine"]
    steps = np.arange(200, 3000, 50)
    pred = law.predict_band(lr, steps, 0.9)
    conf = law.predict_band(lr, steps, 0.9, kind="confidence")
    assert np.all(conf.upper - conf.lower < pred.upper - pred.lower)
    assert np.all(pred.lower <= pred.pred) and np.all(pred.pred <= pred.upper)
    truth = AnnealingLaw(ANNEALING_TRUE, warmup="as-is").predict_lr(lr, steps)
    assert coverage(conf, truth) >= 0.8


def test_bootstrap_survives_json_and_no_bootstrap_is_an_error(boot_annealing, tmp_path) -> None:
    law, result = boot_annealing
    result.save(tmp_path / "fit.json")
    again = law_from_dict(json.loads((tmp_path / "fit.json").read_text()))
    lr, steps = synthetic_lrs()["constant"], np.arange(100, 3000, 100)
    assert again.predict_band(lr, steps).upper == pytest.approx(law.predict_band(lr, steps).upper)
    plain = AnnealingLaw(ANNEALING_TRUE, warmup="as-is")
    with pytest.raises(LawError, match="bootstrap"):
        plain.predict_band(lr, steps)


def test_cli_predict_interval_csv_and_plot(boot_annealing, tmp_path) -> None:
    _, result = boot_annealing
    result.save(tmp_path / "fit.json")
    spec = "cosine:peak=3e-4,total=3000,warmup=100,floor=3e-5"
    out = CliRunner().invoke(
        app, ["predict", str(tmp_path / "fit.json"), spec, "--interval", "0.9",
              "--csv", str(tmp_path / "p.csv"), "-o", str(tmp_path / "p.png")],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "(90% band)" in out.output and (tmp_path / "p.png").stat().st_size > 0
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "step,lr,pred,lower,upper"
    _, _, pred, low, high = (float(x) for x in rows[-1].split(","))
    assert low <= pred <= high


def test_cli_interval_without_bootstrap_is_exit_2(tmp_path) -> None:
    AnnealingLaw(ANNEALING_TRUE).save(tmp_path / "fit.json")
    out = CliRunner().invoke(
        app, ["predict", str(tmp_path / "fit.json"), "constant:peak=3e-4", "--steps", "100",
              "--interval", "0.9", "-o", str(tmp_path / "p.png")],
    )  # fmt: skip
    assert out.exit_code == 2 and "--bootstrap" in out.output


@pytest.mark.usefixtures("few_cpt_starts")
def test_cpt_band_coverage_on_held_out_recipe() -> None:
    base, runs = make_runs(noise=1e-3, seed=3)
    law = CPTLaw(annealing="annealing").fit(base, runs, bootstrap=30, seed=0)  # the truth's form
    recipe = Recipe({"name": "cosine", "peak": 1e-3, "total": 2000, "warmup": 40,
                     "floor": 1e-4}, 0.1, 2000)  # fmt: skip
    steps = np.arange(19, 2000, 20)
    pred = law.predict(recipe, steps, interval=0.9)
    truth = true_law().predict(recipe, steps)
    rng = np.random.default_rng(11)
    shares = []
    for d in ("old", "new"):
        fresh = truth.loss[d] * np.exp(1e-3 * rng.standard_normal(len(steps)))
        shares.append(np.mean((fresh >= pred.lower[d]) & (fresh <= pred.upper[d])))
        assert np.all(pred.lower[d] <= pred.loss[d]) and np.all(pred.loss[d] <= pred.upper[d])
    assert 0.8 <= float(np.mean(shares)) <= 0.99


def test_fit_bootstrap_argument_checked() -> None:
    curves = [LossCurve("c", np.arange(1, 50), np.linspace(3, 2.5, 49), np.full(50, 1e-3))]
    with pytest.raises(LawError, match="bootstrap"):
        AnnealingLaw(warmup="as-is", fit_lambda=False).fit(curves, bootstrap=1)
