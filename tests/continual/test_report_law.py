"""The continual report overlays a CPT law's predicted curves with bands on the measured ones:
in curves.json and the page's embedded data (``predicted`` per per-dataset panel, one entry per
run, with ``lower``/``upper``), drawn by the page's script and in the PNG; a bad law is a one-line
exit-2 error before anything is written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.continual.report import write_report
from evertrain.continual.report_page import embedded_data
from evertrain.laws import CPTLaw

from ..laws.cpt_synth import make_runs

STAGE_STEPS = 60


@pytest.fixture(scope="module")
def law_path(tmp_path_factory):
    """A CPT law fitted (with a small bootstrap) on the synthetic curves of known parameters."""
    base, runs = make_runs(noise=0.002, every=100)
    law = CPTLaw(annealing="annealing").fit(base, runs, n_starts=1, bootstrap=4, seed=0)
    return law.save(tmp_path_factory.mktemp("law") / "law.json")


def _stage(tmp_path, make_run):
    """A continual stage of 60 updates of 100 tokens (cosine-ish LR), 25 % replay, evaluated on
    the old (D0) and new (D1) data every 20 updates; and a plain run the law says nothing about."""
    lr = 1e-3 * (0.55 + 0.45 * np.cos(np.pi * np.arange(STAGE_STEPS) / STAGE_STEPS))
    train = [((i + 1) * 100, float(lr[i]), {"D0": 25 * (i + 1), "D1": 75 * (i + 1)})
             for i in range(STAGE_STEPS)]  # fmt: skip
    evals = [(t, {"D0": 2.5 + t / 1e5, "D1": 3.0 - t / 1e5}) for t in (2000, 4000, 6000)]
    stage = make_run(
        tmp_path, "stage", evals=evals, train=train,
        meta={"name": "stage", "recipe": "rewarm+replay", "old": ["D0"], "new": ["D1"]},
        config={"data": {"train": {"D0": "d0", "D1": "d1"}, "mixture": {"D0": 0.25, "D1": 0.75}}},
    )  # fmt: skip
    plain = make_run(tmp_path, "plain", evals=[(1000, {"D0": 2.6})], train=train[:10])
    return stage, plain


def test_report_embeds_the_laws_predicted_curves_and_bands(tmp_path, make_run, law_path):
    stage, plain = _stage(tmp_path, make_run)
    page = write_report([stage, plain], tmp_path / "report", baseline=None, law=law_path)
    data = embedded_data(page.read_text())
    panels = {p["id"]: p for p in data["curves"]["panels"]}
    for dataset in ("D0", "D1"):
        predicted = panels[f"loss:{dataset}"]["predicted"]
        assert len(predicted) == 2 and predicted[1] is None  # one entry per run, none for plain
        entry = predicted[0]
        measured = panels[f"loss:{dataset}"]["series"][0]
        assert entry["x"] == [2000.0, 4000.0, 6000.0]
        assert entry["x"] == measured["x"][-3:]  # at the run's own evaluations
        assert len(entry["y"]) == len(entry["lower"]) == len(entry["upper"]) == 3
        assert all(
            lo <= y <= up
            for lo, y, up in zip(entry["lower"], entry["y"], entry["upper"], strict=True)
        )
        assert entry["upper"][0] > entry["lower"][0]
    assert panels["loss:D0"]["predicted_level"] == 0.9
    assert "predicted" not in panels["avg"] and "predicted" not in panels["lr"]
    # the law's prediction is the one `law cpt predict` gives for the run's LR and replay
    from evertrain.laws import Recipe, load_cpt_law

    cpt = load_cpt_law(law_path)
    lr = [r for r in panels["lr"]["series"][0]["y"]]
    expected = cpt.predict(Recipe(np.array(lr), 0.25, STAGE_STEPS), steps=[19, 39, 59])
    assert panels["loss:D1"]["predicted"][0]["y"] == pytest.approx(expected.loss["new"], rel=1e-5)
    # curves.json holds the same; the page's script draws bands and dashed predicted lines
    assert json.loads((tmp_path / "report" / "curves.json").read_text()) == data["curves"]
    assert '"class": "band"' in page.read_text() and '"class": "predicted"' in page.read_text()


def test_a_law_of_other_data_or_another_base_draws_nothing_and_says_why(
    tmp_path, make_run, law_path
):
    """A law records what it was fitted on; on a run of another shift or base the report draws
    no predicted curve for that run, with one warning naming both values, and still draws the
    runs it does describe."""
    from evertrain.laws import load_cpt_law

    law = load_cpt_law(law_path)
    law.fitted_on = {"old": ["D0"], "new": ["D1"], "data": {"D1": "sha-d1"},
                     "base": {"name": "base", "fingerprint": "f-base"}, "offset_tokens": None}  # fmt: skip
    base = tmp_path / "base"
    (base / "checkpoints" / "final").mkdir(parents=True)
    (base / "continual.json").write_text(json.dumps({"fingerprint": "f-base"}))
    other = tmp_path / "other-base"
    (other / "checkpoints" / "final").mkdir(parents=True)
    (other / "continual.json").write_text(json.dumps({"fingerprint": "f-other"}))
    lr = 1e-3 * (0.55 + 0.45 * np.cos(np.pi * np.arange(STAGE_STEPS) / STAGE_STEPS))

    def stage(name, new, start, sha="sha-d1"):
        train = [((i + 1) * 100, float(lr[i]), {"D0": 25 * (i + 1), new: 75 * (i + 1)})
                 for i in range(STAGE_STEPS)]  # fmt: skip
        evals = [(t, {"D0": 2.5, new: 3.0}) for t in (2000, 4000, 6000)]
        inputs = {"config": {"init_from": str(start / "checkpoints" / "final")},
                  "data": {"eval": {new: {"shards_sha256": {"val": sha}}}}}  # fmt: skip
        meta = {"name": name, "recipe": "rewarm+replay", "old": ["D0"], "new": [new],
                "inputs": inputs}  # fmt: skip
        config = {"data": {"train": {"D0": "d0", new: "n"}, "mixture": {"D0": 0.25, new: 0.75}}}
        return make_run(tmp_path, name, evals=evals, train=train, meta=meta, config=config)

    runs = [stage("same", "D1", base), stage("shift", "D2", base), stage("rebased", "D1", other),
            stage("redata", "D1", base, sha="sha-changed")]  # fmt: skip
    with pytest.warns(UserWarning) as caught:
        page = write_report(runs, tmp_path / "report", baseline=None, law=law)
    said = [str(w.message) for w in caught if "no predicted curve" in str(w.message)]
    assert len(said) == 3, said
    assert "shift: no predicted curve drawn" in said[0]
    assert "its new data is D2, the law's is D1" in said[0]
    assert "its base run has fingerprint f-other, the law's base base has f-base" in said[1]
    assert "D1 validation shards (sha256 sha-changed) are not the law's (sha-d1)" in said[2]
    assert all("fit a law on this run's shift and base" in m for m in said)
    panels = {p["id"]: p for p in embedded_data(page.read_text())["curves"]["panels"]}
    predicted = panels["loss:D1"]["predicted"]
    assert predicted[0] is not None and predicted[2] is None and predicted[3] is None
    assert "predicted" not in panels.get("loss:D2", {})


def test_report_without_a_law_has_no_predicted_series(tmp_path, make_run):
    stage, _ = _stage(tmp_path, make_run)
    page = write_report([stage], tmp_path / "report", baseline=None)
    panels = embedded_data(page.read_text())["curves"]["panels"]
    assert not any("predicted" in p for p in panels)


def test_report_command_with_a_law_and_with_a_bad_law(tmp_path, make_run, law_path):
    stage, _ = _stage(tmp_path, make_run)
    runner = CliRunner()
    good = runner.invoke(
        app, ["report", str(stage), "--out", str(tmp_path / "r"), "--law", str(law_path)]
    )
    assert good.exit_code == 0, good.output
    curves = json.loads((tmp_path / "r" / "curves.json").read_text())
    assert any(p.get("predicted") for p in curves["panels"])
    (tmp_path / "bad.json").write_text('{"law": "mpl"}')
    bad = runner.invoke(
        app,
        ["report", str(stage), "--out", str(tmp_path / "b"), "--law", str(tmp_path / "bad.json")],
    )
    assert bad.exit_code == 2
    assert bad.output.startswith("error: --law") or "--law" in bad.output.splitlines()[0]
    assert len(bad.output.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()
