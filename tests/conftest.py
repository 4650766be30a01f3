"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# CI clones the repo with shared/ beside it; the loss curves live in ../shared/loss-curves.
LOSS_CURVES = REPO_ROOT.parent / "shared" / "loss-curves"


@pytest.fixture(scope="session")
def loss_curves_dir() -> Path:
    """Directory with the real 25M/100M loss curves (see its README); skip if absent."""
    if not (LOSS_CURVES / "25M" / "cosine_24000.csv").exists():
        pytest.skip(f"shared loss curves not found at {LOSS_CURVES}")
    return LOSS_CURVES
