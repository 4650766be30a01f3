"""The annealing law: hand-computed areas, warmup conventions, lambda gradient."""

from __future__ import annotations

import numpy as np
import pytest

from evertrain.laws import AnnealingLaw, LawError
from evertrain.laws.annealing import warmup_length


def test_hand_computed_s1_s2_as_is():
    lr = np.array([1.0, 1.0, 0.5, 0.5, 0.25])
    law = AnnealingLaw(warmup="as-is")
    s1, s2 = law.areas(lr, np.arange(5), lam=0.5)
    # drops [0, 0, .5, 0, .25]; m = [0, 0, .5, .25, .375]; S2 = cumsum(m)
    np.testing.assert_allclose(s1, [1.0, 2.0, 2.5, 3.0, 3.25], rtol=1e-15)
    np.testing.assert_allclose(s2, [0.0, 0.0, 0.5, 0.75, 1.125], rtol=1e-15)
    params = {"L0": 1.0, "A": 2.0, "alpha": 1.0, "C": 0.5, "lam": 0.5}
    fitted = AnnealingLaw(params, warmup="as-is")
    assert fitted.predict_lr(lr, [4])[0] == pytest.approx(1 + 2 / 3.25 - 0.5 * 1.125, rel=1e-15)


def test_peak_warmup_counts_warmup_at_peak():
    lr = np.array([0.0, 0.5, 1.0, 1.0, 0.5])
    assert warmup_length(lr) == 2
    peak = AnnealingLaw(warmup="peak")
    np.testing.assert_allclose(peak.effective_lr(lr), [1.0, 1.0, 1.0, 1.0, 0.5])
    s1, s2 = peak.areas(lr, [4], lam=0.5)
    assert s1[0] == pytest.approx(4.5) and s2[0] == pytest.approx(
        0.5
    )  # no negative "annealing" from warmup
    as_is = AnnealingLaw(warmup="as-is")
    s1, s2 = as_is.areas(lr, [4], lam=0.5)
    # drops [0, -.5, -.5, 0, .5]: m = [0, -.5, -.75, -.375, .3125]
    assert s1[0] == pytest.approx(3.0) and s2[0] == pytest.approx(-1.3125)
    explicit = AnnealingLaw(warmup="peak", warmup_steps=1)
    np.testing.assert_allclose(explicit.effective_lr(lr), [0.5, 0.5, 1.0, 1.0, 0.5])


def test_lambda_jacobian_matches_finite_difference(annealing_curves):
    law = AnnealingLaw(warmup="as-is")
    law._setup(annealing_curves)
    data = law._prepare(annealing_curves, "exact")
    theta = law._theta({"L0": 2.5, "A": 0.5, "alpha": 0.5, "C": 0.7, "lam": 0.99})
    _, jac = law._predict_jac(theta, data)
    for index in range(len(theta)):
        step = 1e-6 * max(1.0, abs(theta[index]))
        up, down = theta.copy(), theta.copy()
        up[index] += step
        down[index] -= step
        numeric = (law._predict_jac(up, data)[0] - law._predict_jac(down, data)[0]) / (2 * step)
        np.testing.assert_allclose(jac[:, index], numeric, rtol=1e-5, atol=1e-9)


def test_bad_options():
    with pytest.raises(LawError, match="warmup='first'"):
        AnnealingLaw(warmup="first")
    with pytest.raises(LawError, match="lam=1.5"):
        AnnealingLaw(lam=1.5)
