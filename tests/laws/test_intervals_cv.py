"""CPT bands widened by leave-one-run-out cross-validation (the model-discrepancy term)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from evertrain.laws.cpt import ContinualRun, CPTLaw, Recipe, load_cpt_law
from evertrain.laws.curves import LawError
from evertrain.laws.intervals import (
    BAND_BOOTSTRAP_ONLY,
    BAND_WITH_CV,
    _log_scale,
    conformal_quantile,
    cv_quantile,
    cv_scores,
)

from .cpt_synth import make_runs, true_law

STEPS = np.arange(19, 2000, 20)
#: held-out recipes: another peak (cosine) and another schedule and replay (WSD)
HELD_OUT = [
    Recipe({"name": "cosine", "peak": 1.4e-3, "total": 2000, "warmup": 40, "floor": 1.4e-4},
           0.1, 2000),
    Recipe({"name": "wsd", "peak": 1e-3, "total": 2000, "warmup": 40, "decay_fraction": 0.2,
            "floor": 1e-4}, 0.3, 2000),
]  # fmt: skip


def peak_forgetting(lr: np.ndarray, replay: float, steps: np.ndarray) -> np.ndarray:
    """A factor on the old-data loss the law has no term for: forgetting that grows with the
    stage's peak LR as peak^1.5 (1 % at peak 1e-3, no replay, by the stage's end)."""
    return 1 + 0.01 * (float(np.max(lr)) / 1e-3) ** 1.5 * (1 - replay) * np.sqrt(
        (steps + 1) / len(lr)
    )


def misspecified_runs():
    base, runs = make_runs(noise=1e-3, seed=3, every=50)
    return base, [
        ContinualRun(r.name, r.lr, r.replay, r.offset, r.steps,
                     {"old": r.loss["old"] * peak_forgetting(r.lr, r.replay, r.steps),
                      "new": r.loss["new"]})
        for r in runs
    ]  # fmt: skip


def test_conformal_quantile_by_hand() -> None:
    scores = [0.5, -3.0, 2.0, 1.0, 4.0, 6.0, 5.0, 7.0, 8.0]  # |.|: 0.5, 1, 2, ..., 8 (n = 9)
    assert conformal_quantile(scores, 0.9) == 8.0  # rank ceil(10 x 0.9) = 9
    assert conformal_quantile(scores, 0.5) == 4.0  # rank ceil(10 x 0.5) = 5
    assert conformal_quantile([1.0, 2.0], 0.9) == 2.0  # rank 3 > n: the largest
    with pytest.raises(LawError, match="level"):
        conformal_quantile(scores, 1.5)
    with pytest.raises(LawError, match="not finite"):
        conformal_quantile([1.0, float("nan")], 0.9)  # a NaN would sort last, unseen


def test_log_scale_leaves_out_non_positive_draws_and_never_returns_nan() -> None:
    draws = np.array([[1.0, 1.0, -1.0], [np.e, np.e, 2.0], [-0.5, np.e, 0.0]])
    scale = _log_scale(draws, 0.0)
    # column 0: logs {0, 1} (the -0.5 draw left out), population sd 0.5; column 1: {0, 1, 1}
    assert scale[0] == pytest.approx(0.5)
    assert scale[1] == pytest.approx(np.std([0.0, 1.0, 1.0]))
    assert scale[2] == np.inf  # one positive draw: no spread to measure, unknown, not NaN
    assert _log_scale(np.array([[1.0], [1.0]]), 0.01)[0] == pytest.approx(0.01)  # noise floor


def test_a_fold_left_unscored_is_skipped_when_choosing_the_scores() -> None:
    # "far" had no point with a measurable spread (every resample non-positive there)
    cv = {"scores": {"old": {"near": [1.0, 2.0], "far": []}}, "reduced": {}, "extrapolated": {}}
    assert cv_scores(cv, "old") == [1.0, 2.0]
    cv["extrapolated"] = {"near": ["peak outside"]}
    assert cv_scores(cv, "old") == [1.0, 2.0]  # the fallback to every fold skips it too


@pytest.mark.usefixtures("few_cpt_starts")
def test_one_continual_run_keeps_the_bootstrap_band_and_says_so() -> None:
    base, runs = make_runs(noise=1e-3, seed=3, every=50)
    law = CPTLaw(annealing="annealing").fit(base, runs[:1], bootstrap=4, seed=0)
    assert law.bootstrap["band"] == BAND_BOOTSTRAP_ONLY
    assert "cross_validation" not in law.bootstrap and cv_quantile(law, "old", 0.9) is None


@pytest.mark.usefixtures("few_cpt_starts")
def test_held_out_coverage_of_a_misspecified_law_needs_the_cv_term(tmp_path) -> None:
    """The law cannot express forgetting that grows with the peak; on recipes it was not fitted
    on the bootstrap band (fit noise and parameter spread) misses that error, and the band
    widened by the leave-one-run-out discrepancy covers it."""
    base, runs = misspecified_runs()
    law = CPTLaw(annealing="annealing").fit(base, runs, bootstrap=10, seed=0)
    cv = law.bootstrap["cross_validation"]
    assert law.bootstrap["band"] == BAND_WITH_CV
    assert cv["held_out"] == [r.name for r in runs]
    for d in ("old", "new"):
        assert [len(cv["scores"][d][r.name]) for r in runs] == [len(r.steps) for r in runs]
    # the old data's held-out errors are larger than the folds' own uncertainty explains
    assert cv_quantile(law, "old", 0.9) > 3.0

    bootstrap_only = copy.copy(law)
    bootstrap_only.bootstrap = {k: v for k, v in law.bootstrap.items() if k != "cross_validation"}
    rng = np.random.default_rng(11)
    inside: dict[str, list[float]] = {"cv": [], "bootstrap": []}
    for recipe in HELD_OUT:
        lr = true_law().stage_lr(recipe)
        truth = true_law().predict(recipe, STEPS).loss["old"] * peak_forgetting(
            lr, recipe.replay, STEPS
        )
        fresh = truth * np.exp(1e-3 * rng.standard_normal(len(STEPS)))
        for name, fitted in (("cv", law), ("bootstrap", bootstrap_only)):
            band = fitted.predict(recipe, STEPS, interval=0.9)
            inside[name].append(
                float(np.mean((fresh >= band.lower["old"]) & (fresh <= band.upper["old"])))
            )
            assert np.all(band.lower["old"] <= band.loss["old"])
            assert np.all(band.loss["old"] <= band.upper["old"])
    assert np.mean(inside["bootstrap"]) < 0.8  # what the bands were before the CV term
    assert np.mean(inside["cv"]) >= 0.9

    # the scores travel with the law: a loaded law draws the same band
    law.save(tmp_path / "law.json")
    loaded = load_cpt_law(tmp_path / "law.json")
    a = law.predict(HELD_OUT[1], STEPS, interval=0.9)
    b = loaded.predict(HELD_OUT[1], STEPS, interval=0.9)
    np.testing.assert_allclose(a.upper["old"], b.upper["old"])
    np.testing.assert_allclose(a.lower["new"], b.lower["new"])


@pytest.mark.usefixtures("few_cpt_starts")
def test_the_band_is_calibrated_on_folds_that_interpolate() -> None:
    """Four runs, one of them inside the others' peaks and replay ratios. Held out, the other
    three are extremes (their fold extrapolates) and one is the only run at its peak (its fold
    also holds ``gamma`` fixed); a recipe inside the fitted ranges takes its quantile from the
    interpolating fold only, one outside from all; with no interpolating fold, from the folds
    that fit the full law's parameters; with none of those, from all."""
    from . import cpt_synth

    cosine = cpt_synth.STAGES["cos0"][0]
    stages = {
        **cpt_synth.STAGES,
        "cos50": ({**cosine, "peak": 1e-3, "floor": 1e-4}, 0.5),
        "cos10": ({**cosine, "peak": 7e-4, "floor": 7e-5}, 0.1),
    }
    base, runs = cpt_synth.draw_runs(cpt_synth.true_law(), 1e-3, 3, 50, 50, stages=stages)
    law = CPTLaw(annealing="annealing").fit(base, runs, bootstrap=4, seed=0)
    cv = law.bootstrap["cross_validation"]
    assert law.gamma_fitted and law.kappa_fitted
    assert list(cv["reduced"]) == []  # without wsd25 the peaks are still 7e-4 and 1e-3
    assert sorted(cv["extrapolated"]) == ["cos0", "cos50", "wsd25"]
    assert "replay 0 outside" in cv["extrapolated"]["cos0"][0]
    assert "peak 0.0005 outside" in cv["extrapolated"]["wsd25"][0]

    def scores(d: str, *names: str) -> list[float]:
        return [e for name in names for e in cv["scores"][d][name]]

    for d in ("old", "new"):
        assert cv_quantile(law, d, 0.9) == conformal_quantile(scores(d, "cos10"), 0.9)
        everything = scores(d, *(r.name for r in runs))
        assert cv_quantile(law, d, 0.9, interpolating=False) == conformal_quantile(everything, 0.9)
    # a recipe outside the fitted peaks still gets a band (cpt_band takes every fold's scores
    # for it: the interpolating=False quantile checked above)
    outside = Recipe({**cosine, "peak": 3e-3, "floor": 3e-4}, 0.1, 2000)
    inside = Recipe({**cosine, "peak": 8e-4, "floor": 8e-5}, 0.2, 2000)
    assert law.extrapolation(outside) and not law.extrapolation(inside)
    wide = law.predict(outside, STEPS, interval=0.9, warn=False)
    assert np.all(wide.lower["old"] <= wide.loss["old"])

    # no interpolating fold: those that fit what the full law fits; none of those either: all
    cv["extrapolated"] = {r.name: ["outside"] for r in runs}
    cv["reduced"] = {"wsd25": "fixes gamma (its runs share one peak)"}
    kept = scores("old", "cos0", "cos50", "cos10")
    assert cv_quantile(law, "old", 0.9) == conformal_quantile(kept, 0.9)
    cv["reduced"] = {r.name: "fixes gamma" for r in runs}
    assert cv_quantile(law, "old", 0.9) == conformal_quantile(
        scores("old", *cv["scores"]["old"]), 0.9
    )


@pytest.mark.usefixtures("few_cpt_starts")
def test_a_fold_that_must_fix_gamma_is_recorded() -> None:
    """Two runs at one peak and one at another: holding out the only other-peak run leaves a
    fold that cannot fit ``gamma``, and the law's record says so."""
    from . import cpt_synth

    stages = dict(cpt_synth.STAGES)
    stages["cos50"] = ({**stages["cos50"][0], "peak": 1e-3, "floor": 1e-4}, 0.5)
    base, runs = cpt_synth.draw_runs(cpt_synth.true_law(), 1e-3, 3, 50, 50, stages=stages)
    law = CPTLaw(annealing="annealing").fit(base, runs, bootstrap=4, seed=0)
    cv = law.bootstrap["cross_validation"]
    assert list(cv["reduced"]) == ["wsd25"]  # the only run at peak 5e-4
    assert cv["reduced"]["wsd25"] == "fixes gamma (its runs share one peak)"
    # every held-out run is an extreme of its fold: the quantile falls back to the folds that
    # fit gamma (cos0 and cos50)
    assert sorted(cv["extrapolated"]) == ["cos0", "cos50", "wsd25"]
    kept = cv["scores"]["old"]["cos0"] + cv["scores"]["old"]["cos50"]
    assert cv_quantile(law, "old", 0.9) == conformal_quantile(kept, 0.9)
