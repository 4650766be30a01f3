"""The multi-power law's loss-drop term: hand values, fast == naive, the coarse approximation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evertrain.laws import MultiPowerLaw, multi_power_ld, multi_power_ld_naive
from evertrain.laws._ld import (
    change_points,
    coarse_pairs,
    exact_pairs,
    ld_sum,
    ld_sum_and_grads,
)


def test_hand_computed_ld_and_law():
    # lr = [1, 1, .5, .5]: one change point k=2 (drop .5), S_2(3) = .5 + .5 = 1
    lr = np.array([1.0, 1.0, 0.5, 0.5])
    # gamma = 0: x = C S = 1, G = 1 - 2^-1 = 1/2, LD = B * .5 * .5
    assert multi_power_ld(lr, [3], B=1.0, C=1.0, beta=1.0, gamma=0.0)[0] == pytest.approx(
        0.25, rel=1e-15
    )
    # gamma = 1: x = .5^-1 * 1 = 2, G = 1 - 1/3, LD = .5 * 2/3
    assert multi_power_ld(lr, [3], B=1.0, C=1.0, beta=1.0, gamma=1.0)[0] == pytest.approx(
        1 / 3, rel=1e-15
    )
    # before the drop LD is 0; at the drop step S_2(2) = .5 -> x = 1, G = 1/2
    assert multi_power_ld(lr, [1, 2], B=2.0, C=1.0, beta=1.0, gamma=1.0) == pytest.approx(
        [0.0, 0.5], rel=1e-15
    )
    law = MultiPowerLaw(
        {"L0": 1.0, "A": 2.0, "alpha": 1.0, "B": 1.0, "C": 1.0, "beta": 1.0, "gamma": 1.0}
    )
    # L(3) = 1 + 2 * S1^-1 - LD with S1 = 3
    assert law.predict_lr(lr, [3])[0] == pytest.approx(1 + 2 / 3 - 1 / 3, rel=1e-15)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 1.5, 3.0])
def test_a_drop_to_lr_zero_counts_nothing_until_lr_area_follows(gamma):
    # lr = [1, 0, 1]: a drop of 1 at k=1 to LR 0, then a rise of 1 at k=2. At t=1 no LR area
    # follows the drop (S_1(1) = 0: nothing has trained yet), so G = 0 and LD = 0 whatever
    # gamma; the LR floor alone gave 1e-300^-gamma = inf for gamma > ~1.03 and inf * 0 = NaN.
    # At t=2, S_1(2) = 1 after an LR of 0: x = inf, G = 1 for the drop; the rise (weight -1,
    # eta = 1, S_2(2) = 1) has x = 1, G = 1/2: LD = 1 - 1/2.
    lr = np.array([1.0, 0.0, 1.0])
    for ld in (multi_power_ld(lr, [1, 2], B=1.0, C=1.0, beta=1.0, gamma=gamma),
               multi_power_ld_naive(lr, [1, 2], B=1.0, C=1.0, beta=1.0, gamma=gamma)):  # fmt: skip
        assert ld.tolist() == [0.0, 0.5]
    value, *grads = ld_sum_and_grads(exact_pairs(lr, np.array([1, 2])), 1.0, 1.0, gamma)
    assert value.tolist() == [0.0, 0.5]
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_warmup_area_shifts_s1():
    lr = np.array([1.0, 1.0, 0.5, 0.5])
    params = {"L0": 1.0, "A": 2.0, "alpha": 1.0, "B": 1.0, "C": 1.0, "beta": 1.0, "gamma": 1.0}
    law = MultiPowerLaw(params, warmup_area=1.0)
    assert law.predict_lr(lr, [3])[0] == pytest.approx(1 + 2 / 4 - 1 / 3, rel=1e-15)


def test_change_points_skip_plateaus():
    lr = np.array([0.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.1])
    assert change_points(lr).tolist() == [1, 4, 6]


def _random_schedule(rng: np.random.Generator, total: int) -> np.ndarray:
    """Warmup, plateaus, smooth decay, a re-warm and a step drop: every kind of change."""
    t = np.arange(total)
    lr = np.minimum((t + 1) / 30, 1.0) * 1e-3
    lr[200:400] = np.linspace(1e-3, 2e-4, 200)
    lr[400:450] = 5e-4  # re-warm
    lr[450:] = 5e-4 * rng.uniform(0.2, 1.0)
    lr[600:] *= np.cos(np.linspace(0, 1.2, total - 600)) ** 2 + 0.05
    return lr


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_equals_naive_1e10(seed):
    rng = np.random.default_rng(seed)
    lr = _random_schedule(rng, 900)
    steps = np.sort(rng.choice(np.arange(1, 900), size=60, replace=False))
    params = dict(
        B=rng.uniform(100, 800),
        C=rng.uniform(0.5, 5),
        beta=rng.uniform(0.2, 1.2),
        gamma=rng.uniform(0.1, 1.0),
    )
    fast = multi_power_ld(lr, steps, **params)
    naive = multi_power_ld_naive(lr, steps, **params)
    np.testing.assert_allclose(fast, naive, rtol=1e-10, atol=1e-10 * np.abs(naive).max())


def test_fast_handles_unsorted_steps_and_small_chunks():
    rng = np.random.default_rng(3)
    lr = _random_schedule(rng, 700)
    steps = rng.permutation(np.arange(0, 700, 7))
    params = dict(B=300.0, C=2.0, beta=0.6, gamma=0.5)
    whole = multi_power_ld(lr, steps, **params)
    chunked = multi_power_ld(lr, steps, **params, max_pairs=500)
    np.testing.assert_allclose(chunked, whole, rtol=1e-13, atol=0)
    np.testing.assert_allclose(
        whole, multi_power_ld_naive(lr, steps, **params), rtol=1e-10, atol=1e-12
    )


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(st.floats(1e-5, 1e-3), min_size=2, max_size=8),
    lengths=st.lists(st.integers(1, 40), min_size=2, max_size=8),
    gamma=st.floats(0.0, 1.5),
    beta=st.floats(0.05, 2.0),
)
def test_fast_equals_naive_on_piecewise_constant(values, lengths, gamma, beta):
    n = min(len(values), len(lengths))
    lr = np.repeat(np.array(values[:n]), lengths[:n])
    steps = np.arange(len(lr))
    fast = multi_power_ld(lr, steps, 500.0, 1.5, beta, gamma)
    naive = multi_power_ld_naive(lr, steps, 500.0, 1.5, beta, gamma)
    np.testing.assert_allclose(fast, naive, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(naive).max()))


def test_only_change_points_are_paired():
    lr = np.r_[np.full(500, 1e-3), np.full(500, 1e-4)]  # one change point
    pairs = exact_pairs(lr, np.arange(0, 1000, 10))
    assert len(pairs) == 50  # one pair per step at or after the drop


def test_coarse_pairs_are_close_and_small():
    rng = np.random.default_rng(0)
    lr = _random_schedule(rng, 3000)
    steps = np.arange(50, 3000, 25)
    exact = ld_sum(exact_pairs(lr, steps), 2.0, 0.6, 0.6)
    coarse_p = coarse_pairs(lr, steps, near=32, rel=0.01)
    coarse = ld_sum(coarse_p, 2.0, 0.6, 0.6)
    assert len(coarse_p) < len(exact_pairs(lr, steps)) / 2
    np.testing.assert_allclose(coarse, exact, rtol=0, atol=1e-5 * np.abs(exact).max())


def test_coarse_pairs_in_chunks_equal_one_block():
    rng = np.random.default_rng(1)
    lr = _random_schedule(rng, 2000)
    steps = np.arange(40, 2000, 13)
    whole = coarse_pairs(lr, steps, near=16, rel=0.05)
    chunked = coarse_pairs(lr, steps, near=16, rel=0.05, max_pairs=5_000)
    np.testing.assert_array_equal(chunked.point, whole.point)
    np.testing.assert_allclose(
        ld_sum(chunked, 2.0, 0.6, 0.6), ld_sum(whole, 2.0, 0.6, 0.6), rtol=1e-15, atol=0
    )
