"""single_threaded_blas: one BLAS thread inside the block, the previous counts restored after."""

from __future__ import annotations

import numpy as np

from evertrain.laws._threads import _controls, single_threaded_blas


def test_single_threaded_blas_sets_and_restores():
    np.ones((4, 4)) @ np.ones((4, 4))  # make sure numpy's BLAS is loaded
    controls = _controls()
    assert controls, "numpy's bundled OpenBLAS was not found"
    before = [get() for get, _ in controls]
    with single_threaded_blas():
        assert all(get() == 1 for get, _ in controls)
    assert [get() for get, _ in controls] == before
