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
    conformal_quantile,
    cv_quantile,
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
