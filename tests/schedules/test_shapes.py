"""Phase shapes: endpoints, monotonicity, and rising = falling mirrored in time."""

from __future__ import annotations

import numpy as np
import pytest

from evertrain.schedules.shapes import (
    DECAY_SHAPES,
    falling_weight,
    falling_weight_np,
    rising_weight,
    rising_weight_np,
)

SHAPES = [shape for shape in DECAY_SHAPES if shape != "exponential"]  # geometric: no weight


@pytest.mark.parametrize("shape", SHAPES)
def test_weights_hit_their_endpoints_are_monotone_and_mirror(shape):
    power = 3.0
    x = np.linspace(0.0, 1.0, 1001)
    u = 1.0 - x
    falling = falling_weight_np(shape, x, u, power)
    rising = rising_weight_np(shape, x, u, power)
    assert falling[0] == pytest.approx(1.0, abs=1e-15) and falling[-1] == pytest.approx(
        0.0, abs=1e-15
    )
    assert rising[0] == pytest.approx(0.0, abs=1e-15) and rising[-1] == pytest.approx(
        1.0, abs=1e-15
    )
    assert np.all(np.diff(falling) <= 1e-15) and np.all(np.diff(rising) >= -1e-15)
    np.testing.assert_allclose(rising, falling[::-1], atol=1e-14)  # p(x) = w(1 - x)
    for i in (0, 137, 500, 1000):
        assert falling_weight(shape, x[i], u[i], power) == pytest.approx(falling[i], abs=1e-15)
        assert rising_weight(shape, x[i], u[i], power) == pytest.approx(rising[i], abs=1e-15)
