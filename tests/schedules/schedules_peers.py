"""Helpers for the parity tests: drive a peer scheduler with a dummy optimizer, record LRs."""

from __future__ import annotations

import numpy as np

RTOL = 1e-12


def dummy_optimizer(lr: float):
    import torch

    parameter = torch.nn.Parameter(torch.zeros(1))
    return torch.optim.SGD([parameter], lr=lr)


def torch_lrs(scheduler, optimizer, steps: int) -> np.ndarray:
    """LR used by the update at steps 0..steps-1 (read before each ``scheduler.step()``)."""
    lrs = []
    for _ in range(steps):
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        scheduler.step()
    return np.asarray(lrs)


def assert_close(ours: np.ndarray, theirs: np.ndarray, rtol: float = RTOL) -> None:
    """Relative 1e-12 at every point (an absolute 1e-300 only so that exact zeros compare)."""
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-300)
