"""Synthetic CPT data drawn from known parameters: a WSD base and three continual stages."""

from __future__ import annotations

import numpy as np

from evertrain.laws.cpt import BaseRun, ContinualRun, CPTLaw, Recipe, _Series, _series_predict
from evertrain.laws.curves import lr_array

CPT_TRUE = {
    "old": {"L0": 2.0, "A": 0.6, "alpha": 0.5, "C": 0.8, "lam": 0.995,
            "B": 0.25, "E": 3.0, "beta": 0.8, "kappa": 3.0, "gamma": 0.5},
    "new": {"L0": 2.3, "A": 0.9, "alpha": 0.45, "C": 1.0, "lam": 0.995,
            "B": -0.8, "E": 5.0, "beta": 1.2, "kappa": 0.6, "gamma": 0.3},
}  # fmt: skip
BASE_SPEC = {"name": "wsd", "peak": 1e-3, "total": 3000, "warmup": 100,
             "decay_fraction": 0.1, "floor": 1e-4}  # fmt: skip
OFFSET = 2700  # the stages branch at the base's pre-anneal point
WARMUP = 100
STAGES = {
    "cos0": ({"name": "cosine", "peak": 1e-3, "total": 2000, "warmup": 40, "floor": 1e-4}, 0.0),
    "wsd25": ({"name": "wsd", "peak": 5e-4, "total": 2000, "warmup": 40, "decay_fraction": 0.2,
               "floor": 5e-5}, 0.25),
    "cos50": ({"name": "cosine", "peak": 2e-3, "total": 2000, "warmup": 40, "floor": 2e-4}, 0.5),
}  # fmt: skip


def true_law() -> CPTLaw:
    base_lr = lr_array(BASE_SPEC, 3000)
    return CPTLaw(CPT_TRUE, base_lr=base_lr[:OFFSET], offset=OFFSET, warmup_steps=WARMUP)


def make_runs(
    noise: float = 0.0, seed: int = 0, every: int = 20
) -> tuple[BaseRun, list[ContinualRun]]:
    return draw_runs(true_law(), noise, seed, every, base_every=50)


def draw_runs(
    law: CPTLaw,
    noise: float,
    seed: int,
    every: int,
    base_every: int,
    stages: dict[str, tuple[dict, float]] | None = None,
) -> tuple[BaseRun, list[ContinualRun]]:
    """The base (evaluated every ``base_every`` updates) and ``stages`` (default
    :data:`STAGES`; evaluated every ``every``) under ``law``, with relative log-normal
    ``noise``."""
    rng = np.random.default_rng(seed)
    base_lr = lr_array(BASE_SPEC, 3000)
    base_steps = np.arange(base_every - 1, OFFSET, base_every)
    series = _Series(base_lr[:OFFSET], base_steps, np.zeros(len(base_steps)), 0.0)
    assert law.params is not None
    base_loss = {d: _series_predict(series, p, WARMUP) for d, p in law.params.items()}
    base_loss = {d: v * np.exp(noise * rng.standard_normal(len(v))) for d, v in base_loss.items()}
    base = BaseRun("base", base_lr, base_steps, base_loss)
    runs = []
    for name, (spec, replay) in (STAGES if stages is None else stages).items():
        recipe = Recipe(spec, replay, 2000)
        steps = np.arange(every - 1, 2000, every)
        pred = law.predict(recipe, steps)
        loss = {d: v * np.exp(noise * rng.standard_normal(len(v))) for d, v in pred.loss.items()}
        runs.append(ContinualRun(name, law.stage_lr(recipe), replay, OFFSET, steps, loss, spec))
    return base, runs


#: the same base and stages under the multi-power loss-drop term (``annealing="multi-power"``)
CPT_DROP_TRUE = {
    "old": {"L0": 2.0, "A": 0.6, "alpha": 0.5, "B_drop": 300.0, "C_drop": 0.5, "beta_drop": 0.6,
            "gamma_drop": 0.5, "B": 0.25, "E": 3.0, "beta": 0.8, "kappa": 3.0, "gamma": 0.5},
    "new": {"L0": 2.3, "A": 0.9, "alpha": 0.45, "B_drop": 400.0, "C_drop": 0.3, "beta_drop": 0.8,
            "gamma_drop": 0.4, "B": -0.8, "E": 5.0, "beta": 1.2, "kappa": 0.6, "gamma": 0.3},
}  # fmt: skip


def true_drop_law() -> CPTLaw:
    base_lr = lr_array(BASE_SPEC, 3000)
    return CPTLaw(CPT_DROP_TRUE, base_lr=base_lr[:OFFSET], offset=OFFSET, warmup_steps=WARMUP,
                  annealing="multi-power")  # fmt: skip


def make_drop_runs(
    noise: float = 0.0, seed: int = 0, every: int = 100
) -> tuple[BaseRun, list[ContinualRun]]:
    """:func:`make_runs`' base and stages, drawn from :data:`CPT_DROP_TRUE`."""
    return draw_runs(true_drop_law(), noise, seed, every, base_every=100)
