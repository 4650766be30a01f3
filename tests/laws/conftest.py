"""Fixtures of the laws tests: synthetic curves with known parameters."""

from __future__ import annotations

import pytest

from evertrain.laws import AnnealingLaw, LossCurve, MultiPowerLaw

from .laws_synth import ANNEALING_TRUE, MPL_TRUE, make_curves


@pytest.fixture(scope="session")
def mpl_curves() -> list[LossCurve]:
    return make_curves(MultiPowerLaw(MPL_TRUE), noise=2e-4)


@pytest.fixture(scope="session")
def annealing_curves() -> list[LossCurve]:
    return make_curves(AnnealingLaw(ANNEALING_TRUE, warmup="as-is"), noise=2e-4)


@pytest.fixture(scope="session")
def fitted_mpl(mpl_curves):
    law = MultiPowerLaw()
    # the converged optimiser: recovering known parameters tests it, not the early-stopped one
    result = law.fit(mpl_curves, seed=0, method="multistart")
    return law, result
