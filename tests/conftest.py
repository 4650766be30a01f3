"""Fixtures shared by every area's tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def few_cpt_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPT fits from 3 local starts instead of the library's 8 (``evertrain.laws.cpt.N_STARTS``):
    for tests of bands, cross-validation and wiring on small synthetic or toy data, where the
    extra starts only cost time (every fold of a cross-validated fit pays them again). The
    default itself is what ``tests/laws/test_cpt.py``'s parameter-recovery test fits with."""
    from evertrain.laws import cpt

    monkeypatch.setattr(cpt, "N_STARTS", 3)
