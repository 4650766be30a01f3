"""The CPT law: its formula, fitting known parameters back, prediction, optimisation, the CLI."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from evertrain.laws import LawError
from evertrain.laws.cli import app
from evertrain.laws.cpt import (
    CPTLaw,
    Recipe,
    load_cpt_law,
    parse_goal,
    parse_recipe,
    read_cpt_runs,
    replay_share,
    shift_term,
)

from .cpt_synth import CPT_TRUE, OFFSET, STAGES, make_drop_runs, make_runs, true_law


def test_formula_matches_hand_computed_values() -> None:
    """Three base updates at LR 1, 1, 0.5, then a stage at 0.5, 1 (replay 0.2), by hand."""
    params = {"L0": 1.0, "A": 2.0, "alpha": 0.5, "C": 0.1, "lam": 0.5,
              "B": 0.3, "E": 2.0, "beta": 1.0, "kappa": 2.0}  # fmt: skip
    law = CPTLaw({"old": params, "new": params}, base_lr=[1.0, 1.0, 0.5], offset=3, warmup_steps=0)
    recipe = Recipe(np.array([0.5, 1.0]), 0.2, 2)
    pred = law.predict(recipe, [0, 1])
    # update 3 (stage 0): S1 = 3.0; drops 0, 0, .5, 0 -> m = 0, 0, .5, .25 -> S2 = .75
    # S1cpt = .5; replay share R = .8 / (.8 + 2 * .2) = 2/3; shift = .3 * R * (1 - (1 + 2 * .8 * .5)^-1)
    share = 0.8 / (0.8 + 2.0 * 0.2)
    at0 = 1.0 + 2.0 * 3.0**-0.5 - 0.1 * 0.75 + 0.3 * share * (1 - 1 / 1.8)
    # update 4 (stage 1): S1 = 4.0; drop -.5 -> m = .125 - .5 = -.375 -> S2 = .375; S1cpt = 1.5
    at1 = 1.0 + 2.0 * 4.0**-0.5 - 0.1 * 0.375 + 0.3 * share * (1 - 1 / (1 + 2 * 0.8 * 1.5))
    assert pred.loss["old"] == pytest.approx([at0, at1], rel=1e-12)
    # gamma scales the shift by (the stage's mean LR so far / the base's peak LR 1.0)^gamma:
    # .5 / 1 after stage update 0, (.5 + 1) / 2 = .75 after update 1
    leveled = CPTLaw({"old": {**params, "gamma": 0.5}, "new": params}, base_lr=[1.0, 1.0, 0.5],
                     offset=3, warmup_steps=0).predict(recipe, [0, 1])  # fmt: skip
    shift0, shift1 = 0.3 * share * (1 - 1 / 1.8), 0.3 * share * (1 - 1 / 3.4)
    assert leveled.loss["old"] == pytest.approx(
        [at0 - shift0 + 0.5**0.5 * shift0, at1 - shift1 + 0.75**0.5 * shift1], rel=1e-12
    )
    assert leveled.loss["new"] == pytest.approx(pred.loss["new"], rel=1e-15)  # gamma 0: G = 1
    assert shift_term(np.array([0.0]), 0.0, 1.0, 1.0, 1.0, 1.0)[0] == 0.0
    # no shift at all when every token is replayed old data
    assert shift_term(np.array([5.0]), 1.0 - 1e-12, 0.3, 2.0, 1.0, 2.0)[0] == pytest.approx(0.0)


def test_replay_share_is_two_competing_rates() -> None:
    """R(r) = (1 - r) / ((1 - r) + kappa r): 1 at r = 0, 1 - r at kappa = 1, no help from replay
    at kappa = 0, falling faster with r the larger kappa, and 0 when everything is replayed."""
    keep = 1.0 - np.array([0.0, 0.05, 0.25, 0.5, 0.9])
    assert replay_share(keep, 1.0) == pytest.approx(keep, rel=1e-15)
    assert replay_share(keep, 0.0) == pytest.approx(np.ones_like(keep))
    assert replay_share(0.95, 8.0) == pytest.approx(0.95 / (0.95 + 8.0 * 0.05))
    strong = replay_share(keep, 8.0)
    assert np.all(np.diff(strong) < 0) and np.all(strong <= replay_share(keep, 1.0) + 1e-15)
    assert replay_share(0.0, 3.0) == 0.0


def test_rewarm_raises_the_loss_through_the_annealing_term() -> None:
    """The base branches at its peak (1e-3): re-warming to 2e-3 is negative annealing."""
    law = true_law()
    no_shift = {d: {**p, "B": 0.0} for d, p in CPT_TRUE.items()}
    at = np.array([10])

    def loss(rate: float) -> float:
        lr = np.full(200, rate)
        return float(law.predict_with(no_shift, Recipe(lr, 0.0, 200), at, lr)["old"][0])

    assert loss(2e-3) > law.reference_losses()["old"] > loss(1e-3) > loss(1e-4)


def test_fit_recovers_known_parameters_to_one_percent() -> None:
    """From its grid starts the fit finds the law the curves were drawn from (noise-free)."""
    base, runs = make_runs(noise=0.0)
    law = CPTLaw(annealing="annealing").fit(base, runs)
    assert law.kappa_fitted
    for d, truth in CPT_TRUE.items():
        for name, value in truth.items():
            assert law.params[d][name] == pytest.approx(value, rel=0.01), (d, name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_on_noisy_curves_recovers_the_law_and_predicts_a_new_recipe(seed: int) -> None:
    """With 2e-4 relative noise: every parameter to 1 % but the old data's shift pair (E, beta),
    which trade off against each other when the forgetting is small (B = 0.25): 5 % there, and
    the law's prediction of a recipe it was not fitted on stays within 0.1 % of the truth."""
    base, runs = make_runs(noise=2e-4, seed=seed)
    law = CPTLaw(annealing="annealing").fit(base, runs)
    for d, truth in CPT_TRUE.items():
        for name, value in truth.items():
            tolerance = 0.05 if (d, name) in {("old", "E"), ("old", "beta")} else 0.01
            assert law.params[d][name] == pytest.approx(value, rel=tolerance), (d, name)
    recipe = Recipe({"name": "wsd", "peak": 1.5e-3, "total": 2000, "warmup": 40,
                     "decay_fraction": 0.2, "floor": 1.5e-4}, 0.1, 2000)  # fmt: skip
    got = law.predict(recipe, np.arange(99, 2000, 100))  # kappa fitted: replay 0.1 is fine
    truth = true_law().predict(recipe, np.arange(99, 2000, 100))
    for d in ("old", "new"):
        assert got.loss[d] == pytest.approx(truth.loss[d], rel=1e-3), d


def test_one_replay_ratio_fixes_kappa_and_predicting_another_warns() -> None:
    base, runs = make_runs()
    law = CPTLaw(annealing="annealing").fit(base, runs[:1])
    assert not law.kappa_fitted and law.params["old"]["kappa"] == pytest.approx(1.0)
    with pytest.warns(UserWarning, match="kappa was not fitted"):
        law.predict(Recipe(STAGES["cos0"][0], 0.3, 2000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        law.predict(Recipe(STAGES["cos0"][0], 0.0, 2000))


def test_a_recipe_outside_the_fitted_runs_warns_once_naming_what_and_the_fix() -> None:
    base, runs = make_runs()
    law = CPTLaw(annealing="annealing").fit(base, runs)  # peaks 5e-4 .. 2e-3, replay 0 .. 0.5, 2000 steps
    inside = Recipe({**STAGES["cos0"][0], "peak": 1.5e-3}, 0.3, 2000)
    assert law.extrapolation(inside) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        law.predict(inside)
    outside = Recipe({**STAGES["cos0"][0], "peak": 4e-3}, 0.7, 2000)
    assert len(law.extrapolation(outside)) == 2
    with pytest.warns(UserWarning) as caught:
        law.predict(outside)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "peak 0.004 outside the fitted peaks [0.0005, 0.002]" in message
    assert "replay 0.7 outside the fitted ratios [0, 0.5]" in message
    assert "fit on runs that span what you predict" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        law.predict(outside, warn=False)  # the caller reports law.extrapolation itself


def test_a_probe_the_first_fifth_of_a_run_fits_beside_full_runs() -> None:
    """`law cpt design --probes`: a run stopped early (its schedule unchanged) is one more
    continual run to the fit; its peak and replay count as fitted, its short length does not
    make full-length recipes extrapolate, and with two full runs it recovers the law."""
    from evertrain.laws.cpt import ContinualRun

    base, runs = make_runs()
    full = runs[2]  # cos50: peak 2e-3, replay 0.5, 2000 steps
    n = round(0.2 * len(full.lr))
    keep = full.steps < n
    probe = ContinualRun("cos50-probe", full.lr[:n], full.replay, full.offset, full.steps[keep],
                         {d: v[keep] for d, v in full.loss.items()})  # fmt: skip
    law = CPTLaw(annealing="annealing").fit(base, [runs[0], runs[1], probe])
    assert law.gamma_fitted and law.kappa_fitted and law.fitted_steps == [2000, 2000, 400]
    for d in ("old", "new"):
        for name in ("kappa", "gamma"):
            assert law.params[d][name] == pytest.approx(CPT_TRUE[d][name], rel=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # peak, replay and length all inside the fitted runs
        pred = law.predict(Recipe(STAGES["cos50"][0], 0.5, 2000), steps=full.steps)
    for d in ("old", "new"):
        np.testing.assert_allclose(pred.loss[d], full.loss[d], rtol=1e-3)


def test_gamma_is_fitted_only_when_the_runs_span_two_or_more_peaks(tmp_path) -> None:
    base, runs = make_runs()
    law = CPTLaw(annealing="annealing").fit(base, runs)  # peaks 1e-3, 5e-4, 2e-3
    assert law.gamma_fitted and law.params["old"]["gamma"] == pytest.approx(0.5, rel=0.01)
    one_peak = CPTLaw(annealing="annealing").fit(base, [runs[0]])
    assert not one_peak.gamma_fitted
    assert one_peak.params["old"]["gamma"] == pytest.approx(0.0, abs=1e-12)
    # a law written before gamma existed loads as the paper's form: gamma 0, not fitted
    payload = law.to_dict()
    for d in ("old", "new"):
        del payload["params"][d]["gamma"]
    del payload["options"]["gamma_fitted"]
    (tmp_path / "old.json").write_text(json.dumps(payload))
    old = load_cpt_law(tmp_path / "old.json")
    assert not old.gamma_fitted and old.params["old"]["gamma"] == 0.0


def test_predict_held_out_recipe_and_json_round_trip(tmp_path) -> None:
    base, runs = make_runs()
    law = CPTLaw(annealing="annealing").fit(base, runs)
    recipe = Recipe({"name": "wsd", "peak": 1e-3, "total": 1500, "warmup": 30,
                     "decay_fraction": 0.2, "floor": 1e-4}, 0.1, 1500)  # fmt: skip
    truth = true_law().predict(recipe)
    pred = law.predict(recipe)
    for d in ("old", "new"):
        assert np.max(np.abs(pred.loss[d] / truth.loss[d] - 1)) < 1e-4
    law.save(tmp_path / "law.json")
    again = load_cpt_law(tmp_path / "law.json")
    assert again.predict(recipe).loss["new"] == pytest.approx(pred.loss["new"], rel=1e-12)


def test_optimize_meets_the_goal_and_beats_the_grid() -> None:
    law = true_law()
    law.fitted_steps, law.fitted_peaks, law.fitted_replays = [2000], [5e-4, 2e-3], [0.0, 0.5]
    ref = law.reference_losses()
    result = law.optimize("forget:1", peaks=[5e-4, 1e-3, 2e-3])
    assert result["final"]["old"] <= 1.01 * ref["old"]
    # nothing feasible on the same grid has a lower new-data loss
    for family in ("cosine", "wsd"):
        for peak in (5e-4, 1e-3, 2e-3):
            for replay in np.linspace(0, 0.5, 11):
                from evertrain.laws.cpt import recipe_spec

                r = Recipe(recipe_spec(family, peak, 2000, 40, 0.1), float(replay), 2000)
                p = law.predict(r, [1999])
                if p.final("old") <= 1.01 * ref["old"]:
                    assert p.final("new") >= result["final"]["new"] - 1e-12
    weighted = law.optimize("weighted:0", peaks=[5e-4, 1e-3])  # all weight on the old data
    assert weighted["recipe"].replay == pytest.approx(0.5)


@pytest.mark.parametrize("goal", ["weighted:2", "forget:x", "best", "forget:-1"])
def test_bad_goal_names_the_forms(goal: str) -> None:
    with pytest.raises(LawError, match="weighted:W"):
        parse_goal(goal)


def test_parse_recipe_forms(tmp_path) -> None:
    r = parse_recipe("schedule=cosine:peak=3e-4,total=2000,warmup=40;replay=0.25")
    assert (r.replay, r.steps) == (0.25, 2000)
    (tmp_path / "r.yaml").write_text(
        "schedule: {name: constant, peak: 1e-4}\nreplay: 0.1\ntokens: 8192\n"
    )
    r = parse_recipe(str(tmp_path / "r.yaml"), tokens_per_step=256)
    assert r.steps == 32
    with pytest.raises(LawError, match="replay"):
        parse_recipe("schedule=cosine:peak=3e-4,total=10;replay=1.5")
    # a stage too short to predict says where its length came from
    spec = "cosine:peak=3e-4,total=200,warmup=0,unit=tokens"
    with pytest.raises(LawError, match=r"steps=1 \(the schedule's total in tokens over 256 tokens "
                                       r"per step\) must be >= 2"):  # fmt: skip
        parse_recipe(f"schedule={spec};replay=0.1", tokens_per_step=256)
    with pytest.raises(LawError, match=r"steps=1 \(300 tokens at 256 tokens per step\)"):
        parse_recipe("schedule=cosine:peak=3e-4,total=10;replay=0.1;tokens=300", tokens_per_step=256)


# --------------------------------------------------------------------------------------------
# Run folders as the trainer writes them, and the CLI
# --------------------------------------------------------------------------------------------

TOKENS_PER_STEP = 256


def _write_run(
    folder, lr, steps, loss, *, schedule, mixture=None, meta=None, eval_names=("web", "code")
):
    """A run folder as `evertrain train run` leaves it: config.yaml, log.jsonl (train records
    with the LR every step; eval records {name: loss} after update k at record step k+1)."""
    folder.mkdir(parents=True)
    train = {"web": "data/web", "code": "data/code"} if mixture else {"web": "data/web"}
    mix = "null" if mixture is None else json.dumps(mixture)
    (folder / "config.yaml").write_text(
        f"out_dir: {folder}\nschedule: {json.dumps(schedule)}\nbatch_size: 8\n"
        f"data:\n  train: {json.dumps(train)}\n  mixture: {mix}\n"
    )
    lines = []
    eval_at = dict(zip(steps.tolist(), range(len(steps)), strict=True))
    for k in range(len(lr)):
        lines.append({"kind": "train", "step": k + 1, "tokens": (k + 1) * TOKENS_PER_STEP,
                      "lr": float(lr[k]), "loss": 3.0})  # fmt: skip
        if k in eval_at:
            i = eval_at[k]
            values = {"web": float(loss["old"][i]), "code": float(loss["new"][i])}
            lines.append({"kind": "eval", "step": k + 1, "tokens": (k + 1) * TOKENS_PER_STEP,
                          "eval": {n: values[n] for n in eval_names}})  # fmt: skip
    (folder / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if meta is not None:
        (folder / "continual.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def run_folders(tmp_path_factory):
    from .cpt_synth import BASE_SPEC

    root = tmp_path_factory.mktemp("cpt_runs")
    base, runs = make_drop_runs()  # drawn from the form `law cpt fit` fits by default
    _write_run(root / "base", base.lr, base.steps, base.loss, schedule=BASE_SPEC)
    for run in runs:
        meta = {"old": ["web"], "new": ["code"], "offset_tokens": OFFSET * TOKENS_PER_STEP}
        mixture = {"web": run.replay, "code": 1.0 - run.replay}
        _write_run(root / run.name, run.lr, run.steps, run.loss, schedule=run.schedule,
                   mixture=mixture, meta=meta)  # fmt: skip
    return root


def test_read_run_folders(run_folders) -> None:
    base, runs = read_cpt_runs(run_folders / "base", [run_folders / n for n in STAGES])
    assert base.tokens_per_step == TOKENS_PER_STEP
    assert [r.replay for r in runs] == [0.0, 0.25, 0.5]
    assert {r.offset for r in runs} == {OFFSET}
    assert runs[0].steps[0] == 99  # record step 100 is update 99


def _branched_folders(run_folders, root):
    """``run_folders`` copied under ``root`` as `evertrain continual` leaves them: the base's
    continual.json records its inputs hash, each stage's its start checkpoint in the base and
    its validation shards' hashes."""
    import shutil

    shutil.copytree(run_folders, root)
    (root / "base" / "continual.json").write_text(json.dumps({"fingerprint": "base-f0"}))
    (root / "base" / "checkpoints" / "final").mkdir(parents=True)
    for name in STAGES:
        meta = json.loads((root / name / "continual.json").read_text())
        meta["inputs"] = {
            "config": {"init_from": str(root / "base" / "checkpoints" / "final")},
            "data": {"eval": {"web": {"shards_sha256": {"val": "sha-web"}},
                              "code": {"shards_sha256": {"val": "sha-code"}}}},
        }  # fmt: skip
        (root / name / "continual.json").write_text(json.dumps(meta))
    return root


def test_a_law_records_the_data_and_base_it_was_fitted_on(run_folders, tmp_path) -> None:
    root = _branched_folders(run_folders, tmp_path / "runs")
    base, runs = read_cpt_runs(root / "base", [root / n for n in STAGES])
    expected = {"old": ["web"], "new": ["code"], "data": {"web": "sha-web", "code": "sha-code"},
                "base": {"name": "base", "fingerprint": "base-f0"},
                "offset_tokens": OFFSET * TOKENS_PER_STEP}  # fmt: skip
    assert base.fitted_on == expected
    law = CPTLaw(annealing="annealing").fit(base, runs[:1], n_starts=1)
    assert law.fitted_on == expected
    assert load_cpt_law(law.save(tmp_path / "law.json")).fitted_on == expected
    # a law from arrays (or CSV) knows nothing of its data, and says so with None
    plain_base, plain_runs = make_runs()
    assert CPTLaw(annealing="annealing").fit(plain_base, plain_runs[:1], n_starts=1).fitted_on is None


def test_runs_of_another_base_or_another_shift_are_refused(run_folders, tmp_path) -> None:
    import shutil

    root = _branched_folders(run_folders, tmp_path / "runs")
    shutil.copytree(root / "base", tmp_path / "other-base")
    stages = [root / n for n in STAGES]
    with pytest.raises(LawError, match=r"continued from .*final, not from the base run .*other-base"
                                       r" given first: give the base run it branched from"):  # fmt: skip
        read_cpt_runs(tmp_path / "other-base", stages)
    meta = json.loads((stages[1] / "continual.json").read_text())
    (stages[1] / "continual.json").write_text(json.dumps({**meta, "new": ["docs"]}))
    with pytest.raises(LawError, match=r"continues on new data docs, the other runs on code: fit "
                                       r"one law per shift"):  # fmt: skip
        read_cpt_runs(root / "base", stages)
    (stages[1] / "continual.json").write_text(json.dumps(meta))
    meta["inputs"]["data"]["eval"]["code"]["shards_sha256"]["val"] = "sha-code-retokenized"
    (stages[2] / "continual.json").write_text(json.dumps(meta))
    with pytest.raises(LawError, match=r"the runs' code validation shards differ \(sha256 sha-code and "
                                       r"sha-code-ret\)"):  # fmt: skip
        read_cpt_runs(root / "base", stages)


@pytest.mark.usefixtures("few_cpt_starts")
def test_cli_fit_predict_optimize(run_folders, tmp_path) -> None:
    cli = CliRunner()
    out = tmp_path / "law.json"
    args = ["cpt", "fit", str(run_folders / "base"), *(str(run_folders / n) for n in STAGES)]
    result = cli.invoke(app, [*args, "-o", str(out), "--bootstrap", "4"])
    assert result.exit_code == 0, result.output
    assert "old: PredE=" in result.output and out.is_file()
    recipe = "schedule=cosine:peak=1e-3,total=1000,warmup=20,floor=1e-4;replay=0.2"
    csv_out = tmp_path / "pred.csv"
    png = tmp_path / "pred.png"
    result = cli.invoke(
        app, ["cpt", "predict", str(out), recipe, "--csv", str(csv_out), "--plot", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert png.stat().st_size > 0
    assert "[90% band]" in result.output
    assert "warning" not in result.output  # peak 1e-3 and replay 0.2 lie inside the fitted runs
    outside = "schedule=cosine:peak=5e-3,total=3000,warmup=20,floor=5e-4;replay=0.2"
    result = cli.invoke(app, ["cpt", "predict", str(out), outside])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warned) == 2, result.output
    assert "peak 0.005 outside the fitted peaks [0.0005, 0.002]" in warned[0]
    assert "3000 steps, longer than the longest fitted stage (2000)" in warned[1]
    header = csv_out.read_text().splitlines()[0].split(",")
    assert header == ["step", "lr", "loss_old", "loss_old_lower", "loss_old_upper",
                      "loss_new", "loss_new_lower", "loss_new_upper"]  # fmt: skip
    result = cli.invoke(app, ["cpt", "optimize", str(out), "--goal", "weighted:0.5"])
    assert result.exit_code == 0, result.output
    assert "replay" in result.output and "new-data loss" in result.output


@pytest.mark.usefixtures("few_cpt_starts")
def test_cli_fit_takes_more_than_three_continual_runs(run_folders, tmp_path) -> None:
    # `law cpt design --runs 5` names five runs to train: `law cpt fit` must take them all
    import shutil

    shutil.copytree(run_folders / "cos0", tmp_path / "cos0-again")
    out = tmp_path / "law.json"
    runs = [str(run_folders / n) for n in STAGES] + [str(tmp_path / "cos0-again")]
    result = CliRunner().invoke(
        app, ["cpt", "fit", str(run_folders / "base"), *runs, "-o", str(out), "--bootstrap", "0"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["fit"]["runs"][1:] == [*STAGES, "cos0-again"]
    result = CliRunner().invoke(app, ["cpt", "fit", str(run_folders / "base"), "-o", str(out)])
    assert result.exit_code == 2
    assert "one or more continual runs (1 RUN given)" in result.output


def test_cli_run_without_per_distribution_eval_is_one_line_exit_2(run_folders, tmp_path) -> None:
    from .cpt_synth import BASE_SPEC

    base, _ = make_runs(every=100)
    _write_run(tmp_path / "base_web_only", base.lr, base.steps, base.loss, schedule=BASE_SPEC,
               eval_names=("web",))  # fmt: skip
    result = CliRunner().invoke(
        app, ["cpt", "fit", str(tmp_path / "base_web_only"), str(run_folders / "cos0"),
              "-o", str(tmp_path / "law.json"), "--bootstrap", "0"],
    )  # fmt: skip
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "base_web_only" in lines[0] and "code" in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["cpt", "optimize", "LAW", "--goal", "cheapest"], "weighted:W"),
        (["cpt", "predict", "LAW", "schedule=cosine:peak=1e-3,total=100;replay=1.5"], "replay"),
        (
            ["cpt", "predict", "missing.json", "schedule=constant:peak=1e-3;steps=10"],
            "does not exist",
        ),
    ],
)
def test_cli_bad_input_exit_2(run_folders, tmp_path, argv, needle) -> None:
    law = true_law()
    law.save(tmp_path / "law.json")
    argv = [str(tmp_path / "law.json") if a == "LAW" else a for a in argv]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_csv_runs(tmp_path) -> None:
    base, runs = make_runs(every=100)

    def write(path, lr, steps, loss):
        rows = ["step,lr,loss_old,loss_new"]
        at = dict(zip(steps.tolist(), range(len(steps)), strict=True))
        for k, rate in enumerate(lr):
            i = at.get(k)
            cells = (
                ("", "")
                if i is None
                else (repr(float(loss["old"][i])), repr(float(loss["new"][i])))
            )
            rows.append(f"{k},{float(rate)!r},{cells[0]},{cells[1]}")
        path.write_text("\n".join(rows) + "\n")

    write(tmp_path / "base.csv", base.lr[:OFFSET], base.steps, base.loss)
    write(tmp_path / "s.csv", runs[0].lr, runs[0].steps, runs[0].loss)
    with pytest.raises(LawError, match="--replay"):
        read_cpt_runs(tmp_path / "base.csv", [tmp_path / "s.csv"])
    b, r = read_cpt_runs(tmp_path / "base.csv", [tmp_path / "s.csv"], replay=[0.0])
    assert r[0].offset == OFFSET and not math.isnan(b.loss["old"][0])


def test_a_recipe_longer_than_its_schedule_warns_with_both_lengths() -> None:
    law = true_law()
    spec = "cosine:peak=1e-3,total=200,warmup=10,floor=1e-4"
    with pytest.warns(UserWarning, match=r"300 steps run past its schedule's end \(total 200\), "
                                         r"so the last 100 hold its final LR"):  # fmt: skip
        law.predict(Recipe(spec, 0.25, 300), steps=[299])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the schedule's own length, or shorter: nothing to say
        law.predict(Recipe(spec, 0.25, 200), steps=[199])
        law.predict(Recipe(spec, 0.25, 150), steps=[149])
