"""The CPT law with the multi-power law's loss-drop term (``annealing="multi-power"``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from evertrain.laws import LawError
from evertrain.laws._cpt_drop import DropModel, fit_distribution, theta_of
from evertrain.laws._ld import exact_pairs, ld_sum_and_grads
from evertrain.laws.cli import app
from evertrain.laws.cpt import CPTLaw, Recipe, cpt_law_from_dict, load_cpt_law

from .cpt_synth import CPT_DROP_TRUE, CPT_TRUE, make_drop_runs, true_drop_law, true_law

PARAMS = {"L0": 1.0, "A": 2.0, "alpha": 0.5, "B_drop": 0.6, "C_drop": 1.0, "beta_drop": 1.0,
          "gamma_drop": 1.0, "B": 0.3, "E": 2.0, "beta": 1.0, "kappa": 2.0, "gamma": 0.0}  # fmt: skip


def test_formula_matches_hand_computed_values() -> None:
    """Base updates at LR 1, 1, 0.5, then a stage at 0.5, 1 (replay 0.2), by hand."""
    law = CPTLaw({"old": PARAMS, "new": PARAMS}, base_lr=[1.0, 1.0, 0.5], offset=3,
                 warmup_steps=0, annealing="multi-power")  # fmt: skip
    pred = law.predict(Recipe(np.array([0.5, 1.0]), 0.2, 2), [0, 1])
    share = 0.8 / (0.8 + 2.0 * 0.2)  # the replay share R, as in the annealing form
    # update 3: S1 = 3; one drop (0.5 at k = 2) with S_2(3) = 0.5 + 0.5 = 1 after it, at LR 0.5:
    # x = 1 * 0.5^-1 * 1 = 2, G = 1 - 1/3 -> LD = 0.6 * 0.5 * 2/3 = 0.2
    at0 = 1.0 + 2.0 * 3.0**-0.5 - 0.2 + 0.3 * share * (1 - 1 / 1.8)
    # update 4: S1 = 4; the drop at k = 2 now has S = 2 (x = 4, G = 0.8); the re-warm at k = 4
    # is a drop of -0.5 with S = 1 at LR 1 (x = 1, G = 0.5) -> LD = 0.6 (0.4 - 0.25) = 0.09
    at1 = 1.0 + 2.0 * 4.0**-0.5 - 0.09 + 0.3 * share * (1 - 1 / (1 + 2 * 0.8 * 1.5))
    assert pred.loss["old"] == pytest.approx([at0, at1], rel=1e-12)
    # the base curve: update 2 is the drop's own step (S_2(2) = 0.5, x = 1, G = 0.5)
    base = law.predict_base([1, 2])["new"]
    assert base == pytest.approx([1.0 + 2.0 * 2.0**-0.5, 1.0 + 2.0 * 2.5**-0.5 - 0.15], rel=1e-12)


def test_jacobian_matches_finite_differences() -> None:
    """The analytic Jacobian the fit uses, against central differences, every parameter."""
    base, runs = make_drop_runs()
    law = CPTLaw(annealing="multi-power")
    law.offset = runs[0].offset
    series, _, _ = law._series(base, runs)
    model = DropModel(series)
    theta = theta_of({**CPT_DROP_TRUE["old"], "gamma": 0.4})
    pred, jac = model.predict_and_jac(theta)
    assert pred == pytest.approx(model.predict(theta), rel=1e-14)
    for i in range(len(theta)):
        step = 1e-6 * max(1.0, abs(theta[i]))
        up, down = theta.copy(), theta.copy()
        up[i] += step
        down[i] -= step
        numeric = (model.predict(up) - model.predict(down)) / (2 * step)
        scale = max(float(np.abs(numeric).max()), 1e-12)
        assert np.abs(jac[:, i] - numeric).max() / scale < 1e-6, i


def test_loss_drop_gradients_stay_finite_when_the_lr_reaches_zero() -> None:
    lr = np.r_[np.full(10, 1e-3), np.linspace(1e-3, 0.0, 10)]
    for values in ld_sum_and_grads(exact_pairs(lr, np.arange(20)), 1.0, 0.5, 0.5):
        assert np.all(np.isfinite(values))


def test_prediction_at_a_stage_first_lr_zero_step_is_finite_for_steep_drops() -> None:
    """A stage warming up from LR 0 has a drop to 0 with no LR area after it at stage step 0;
    with gamma_drop > 1 that point was NaN, and a band over whole curves dropped every such
    bootstrap draw there as if it had predicted a non-positive loss."""
    base, runs = make_drop_runs()
    law = CPTLaw().fit(base, runs[:1])
    for d in law.params:
        law.params[d]["gamma_drop"] = 1.5
    stage = law.predict(Recipe("cosine:peak=1e-3,total=200,warmup=10,floor=1e-4", 0.0, 200),
                        np.arange(200))  # fmt: skip
    assert stage.lr[0] == 0.0
    at_branch = law.predict_base([law.offset - 1])
    for d in ("old", "new"):
        assert np.all(np.isfinite(stage.loss[d])) and np.all(stage.loss[d] > 0)
        # stage step 0 trained at LR 0: no stage area, so no shift and no drop credited yet;
        # the loss is the base's at its last update
        assert stage.loss[d][0] == pytest.approx(at_branch[d][0], rel=1e-12)


def test_fit_recovers_known_parameters_to_one_percent() -> None:
    """From its grid starts the fit finds the law the curves were drawn from (noise-free)."""
    base, runs = make_drop_runs()
    law = CPTLaw().fit(base, runs)
    assert law.annealing == "multi-power" and law.kappa_fitted and law.gamma_fitted
    for d, truth in CPT_DROP_TRUE.items():
        for name, value in truth.items():
            assert law.params[d][name] == pytest.approx(value, rel=0.01), (d, name)


def test_fit_holds_the_parameters_it_is_told_to_and_recovers_the_rest() -> None:
    """``fixed`` (what ``benchmarks/cpt_law_split.py`` holds in turn) pins the named parameters
    at their values, a wrong one included, and the free ones still fit; an unknown name is an
    error naming the law's parameters."""
    base, runs = make_drop_runs()
    law = CPTLaw().fit(base, runs)
    series, losses, _ = law._series(base, runs)
    loss = np.concatenate([part["old"] for part in losses])
    truth = CPT_DROP_TRUE["old"]
    held = {"kappa": truth["kappa"], "gamma": truth["gamma"]}
    params, _ = fit_distribution(series, loss, kappa_free=True, gamma_free=True, n_starts=8,
                                 fixed=held)  # fmt: skip
    for name, value in truth.items():
        assert params[name] == pytest.approx(value, rel=0.01), name
    wrong, _ = fit_distribution(series, loss, kappa_free=True, gamma_free=True, n_starts=2,
                                fixed={"kappa": 2.0 * truth["kappa"]})  # fmt: skip
    assert wrong["kappa"] == pytest.approx(2.0 * truth["kappa"], rel=1e-9)
    with pytest.raises(ValueError, match="unknown parameters \\['lam'\\]"):
        fit_distribution(series, loss, kappa_free=True, n_starts=1, fixed={"lam": 0.9})


@pytest.mark.parametrize("seed", [0, 1])
def test_fit_on_noisy_curves_predicts_a_new_recipe(seed: int) -> None:
    """With 2e-4 relative noise on curves evaluated every 100 updates: the prediction of a
    recipe the fit never saw stays within 0.1 % of the truth; ``L0, A, alpha, B_drop`` come back
    to 1 %, the rest to 10 % (the shift's ``E`` and ``beta`` and the drop's ``C_drop``,
    ``beta_drop``, ``gamma_drop`` trade off against each other at this noise)."""
    base, runs = make_drop_runs(noise=2e-4, seed=seed)
    law = CPTLaw().fit(base, runs)
    recipe = Recipe({"name": "wsd", "peak": 1.5e-3, "total": 2000, "warmup": 40,
                     "decay_fraction": 0.2, "floor": 1.5e-4}, 0.1, 2000)  # fmt: skip
    got = law.predict(recipe, np.arange(99, 2000, 100))
    truth = true_drop_law().predict(recipe, np.arange(99, 2000, 100))
    for d in ("old", "new"):
        assert got.loss[d] == pytest.approx(truth.loss[d], rel=1e-3), d
        for name, value in CPT_DROP_TRUE[d].items():
            tight = name in ("L0", "A", "alpha", "B_drop")
            assert law.params[d][name] == pytest.approx(value, rel=0.01 if tight else 0.1), (
                d,
                name,
            )


def test_json_round_trip_keeps_the_term_and_a_file_without_it_loads_as_fitted(tmp_path) -> None:
    law = true_drop_law()
    path = law.save(tmp_path / "law.json")
    again = load_cpt_law(path)
    assert again.annealing == "multi-power"
    recipe = Recipe({"name": "cosine", "peak": 1e-3, "total": 500, "warmup": 10}, 0.1, 500)
    for d in ("old", "new"):
        assert again.predict(recipe).loss[d] == pytest.approx(law.predict(recipe).loss[d],
                                                              rel=1e-15)  # fmt: skip
    payload = json.loads(path.read_text())
    assert payload["options"]["annealing"] == "multi-power"
    del payload["options"]["annealing"]  # as a law saved before the option existed
    assert cpt_law_from_dict(payload).annealing == "multi-power"  # read from its parameters
    old_style = true_law().to_dict()
    del old_style["options"]["annealing"]
    assert cpt_law_from_dict(old_style).annealing == "annealing"
    assert CPTLaw().annealing == "multi-power"  # what a fit without saying uses
    mixed = {"old": CPT_DROP_TRUE["old"], "new": CPT_TRUE["new"]}
    with pytest.raises(LawError, match=r"params\['new'\] missing \['B_drop'"):
        CPTLaw(mixed, base_lr=[1.0], offset=1)


def test_unknown_term_is_an_error_naming_the_choices() -> None:
    with pytest.raises(LawError, match="choose from annealing, multi-power"):
        CPTLaw(annealing="power")


def test_bootstrap_bands_bracket_the_prediction() -> None:
    base, runs = make_drop_runs(noise=2e-4)
    law = CPTLaw(annealing="multi-power").fit(base, runs[:2], bootstrap=4, n_starts=2)
    assert law.bootstrap and "cross_validation" in law.bootstrap
    pred = law.predict(Recipe(runs[2].lr, 0.25, len(runs[2].lr)), np.arange(99, 2000, 100),
                       interval=0.9, warn=False)  # fmt: skip
    for d in ("old", "new"):
        assert np.all(pred.lower[d] < pred.loss[d]) and np.all(pred.loss[d] < pred.upper[d])


def test_cli_bad_term_exits_2_before_reading_runs(tmp_path) -> None:
    result = CliRunner().invoke(
        app, ["cpt", "fit", str(tmp_path / "nope"), str(tmp_path / "nope2"), "--annealing", "x",
              "-o", str(tmp_path / "law.json")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "choose from annealing, multi-power" in result.output
    assert "Traceback" not in result.output
