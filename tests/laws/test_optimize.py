"""Schedule choice: optimiser feasibility and gains, WSD search, ranking, analytic gradients."""

from __future__ import annotations

import numpy as np
import pytest

from evertrain.laws import AnnealingLaw, LawError, MultiPowerLaw
from evertrain.laws.optimize import best_wsd, compare_schedules, final_loss, optimize_schedule

from .laws_synth import ANNEALING_TRUE, MPL_TRUE


def _finite_difference(law, lr, t):
    numeric = np.zeros(t + 1)
    for m in range(t + 1):
        step = lr[m] * 1e-5
        up, down = lr.copy(), lr.copy()
        up[m] += step
        down[m] -= step
        numeric[m] = (law.predict_lr(up, [t])[0] - law.predict_lr(down, [t])[0]) / (2 * step)
    return numeric


@pytest.mark.parametrize(
    "law",
    [
        MultiPowerLaw(MPL_TRUE),
        AnnealingLaw(ANNEALING_TRUE, warmup="peak", warmup_steps=30),
        AnnealingLaw(ANNEALING_TRUE, warmup="as-is"),
    ],
    ids=["mpl", "annealing-peak", "annealing-as-is"],
)
def test_final_loss_gradient_matches_finite_difference(law):
    rng = np.random.default_rng(0)
    lr = np.r_[np.linspace(1e-5, 3e-4, 30), np.linspace(3e-4, 3e-5, 90)] * (
        1 + 0.05 * rng.random(120)
    )
    lr[30:] = np.minimum(lr[30:], lr[29] * 0.999)  # keep the warmup's end the first peak
    value, grad = law.final_loss_and_grad(lr, 119)
    assert value == pytest.approx(law.predict_lr(lr, [119])[0], rel=1e-13)
    numeric = _finite_difference(law, lr, 119)
    np.testing.assert_allclose(grad, numeric, rtol=0, atol=1e-6 * np.abs(numeric).max())


def test_optimize_schedule_is_feasible_and_beats_baselines():
    law = MultiPowerLaw(MPL_TRUE)
    steps, peak, floor, warmup = 3000, 3e-4, 3e-5, 100
    result = optimize_schedule(law, steps, peak, floor, warmup, n_knots=24)
    lr = result.lr
    assert lr[0] == 0.0 and lr[warmup] == pytest.approx(peak)
    assert np.all(np.diff(lr[warmup:]) <= 1e-18)  # non-increasing after warmup
    assert lr[warmup:].min() >= floor * (1 - 1e-12) and lr.max() <= peak * (1 + 1e-12)
    assert result.gain_vs_cosine > 0.01  # decaying late beats cosine by a wide margin here
    assert result.gain_vs_wsd >= -1e-9  # started from the best WSD, never worse
    # the spec is an evertrain schedule evaluating to the same per-step LR
    from evertrain.schedules import from_spec

    np.testing.assert_allclose(from_spec(result.spec)(np.arange(steps)), lr, rtol=1e-12, atol=0)
    assert final_loss(law, result.spec, steps) == pytest.approx(result.final_loss, rel=1e-12)
    payload = result.to_dict()
    assert payload["schedule"]["name"] == "piecewise_linear" and "gain_vs_wsd" in payload


def test_best_wsd_and_compare_ranking():
    law = MultiPowerLaw(MPL_TRUE)
    wsd = best_wsd(
        law, 3000, 3e-4, 3e-5, 100, fractions=(0.1, 0.2, 0.3), shapes=("linear", "cosine")
    )
    assert wsd["label"].startswith("wsd-")
    cosine = "cosine:peak=3e-4,total=3000,warmup=100,floor=3e-5"
    constant = "constant:value=3e-4,total=3000,warmup=100"
    ranking = compare_schedules(
        law, {"cosine": cosine, "constant": constant, "wsd": wsd["schedule"]}, 3000
    )
    assert ranking[0]["label"] == "wsd"
    specs = {"cosine": cosine, "constant": constant, "wsd": wsd["schedule"]}
    for row in ranking:
        assert row["final_loss"] == final_loss(law, specs[row["label"]], 3000)
    assert [row["rank"] for row in ranking] == [1, 2, 3]
    assert ranking[0]["gap"] == 0 and all(
        b["final_loss"] >= a["final_loss"] for a, b in zip(ranking, ranking[1:], strict=False)
    )


def test_optimize_bad_input():
    law = MultiPowerLaw(MPL_TRUE)
    with pytest.raises(LawError, match="floor=0"):
        optimize_schedule(law, 3000, 3e-4, 0.0, 100)
    with pytest.raises(LawError, match="warmup=5000"):
        optimize_schedule(law, 3000, 3e-4, 3e-5, 5000)
    with pytest.raises(LawError, match="no candidate"):
        compare_schedules(law, {}, 3000)
