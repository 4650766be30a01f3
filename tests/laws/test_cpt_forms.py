"""benchmarks/cpt_law_forms.py: its forms are the shipped law with the paper's choices put back,
so its ``evertrain`` form must be the library's law and its pieces must add up."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from evertrain.laws.cpt import ContinualRun, CPTLaw, Recipe, _Model

from .cpt_synth import OFFSET, WARMUP, make_runs, true_law

pytest.importorskip("torch")  # the benchmark imports its sibling continual.py
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import cpt_law_forms as forms  # noqa: E402


def _series(base, runs):
    law = CPTLaw(annealing="annealing")
    law.offset = OFFSET
    series, losses, _ = law._series(base, runs)
    return series, losses


def test_split_annealing_areas_add_up_to_the_whole_history():
    base, runs = make_runs()
    series, _ = _series(base, runs)
    model = forms._FormModel(series, WARMUP, forms.FORMS["paper"], OFFSET)
    before, after = model.split(0.995)
    assert np.allclose(before + after, _Model(series, WARMUP).s2(0.995), rtol=0, atol=1e-12)
    on_base = model.s1_cpt == 0
    assert np.all(after[on_base] == 0) and np.any(after[~on_base] != 0)
    # the pre-training share is frozen at the stage start
    assert np.ptp(before[~on_base][: len(runs[0].steps)]) == 0


def test_paper_replay_factor_is_exponential_and_linear_at_zero():
    base, runs = make_runs()
    series, _ = _series(base, runs)
    model = forms._FormModel(series, WARMUP, forms.Form(exp_replay=True), OFFSET)
    stage = model.in_stage  # the base curve has no shift to compare
    keep = model.keep[stage]
    growth = model.shape(3.0, 0.8, 0.0, 0.0)[stage] / keep  # k = 0: the factor is 1 - r
    steep = model.shape(3.0, 0.8, 4.0, 0.0)[stage] / growth
    assert np.allclose(steep, np.expm1(4.0 * keep) / np.expm1(4.0))
    assert len(set(np.round(keep, 6))) == 3  # the three stages' replay ratios all checked


def test_evertrain_form_is_the_library_law():
    base, runs = make_runs()
    truth = true_law()
    recipe = Recipe({"name": "cosine", "peak": 1.5e-3, "total": 2000, "warmup": 40,
                     "floor": 1.5e-4}, 0.1, 2000)  # fmt: skip
    steps = np.arange(19, 2000, 20)
    held = ContinualRun("held", truth.stage_lr(recipe), 0.1, OFFSET, steps,
                        truth.predict(recipe, steps).loss)  # fmt: skip
    grid = {r.name: r for r in runs} | {"held": held}
    errors = forms.held_out_errors(
        base, grid, tuple(r.name for r in runs), forms.FORMS["evertrain"]
    )
    law = CPTLaw(annealing="annealing").fit(base, runs)
    pred = law.predict(recipe, steps=steps[-1:], warn=False)
    for d in ("old", "new"):
        library_error = abs(pred.loss[d][-1] - held.loss[d][-1]) / held.loss[d][-1]
        assert errors[d] < 1e-3 and library_error < 1e-3
        assert abs(errors[d] - library_error) < 2e-4
