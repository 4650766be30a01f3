"""glibc malloc tuning: freed activation-sized blocks are reused instead of re-faulted."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from .conftest import make_config

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="the tuning applies to Linux/glibc only",
)

# A fresh interpreter each time: malloc state is process-wide. Allocate, touch and free a few
# 8 MiB buffers per "step", as a training step does with activations, and count page faults.
_STEPS = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from evertrain.train.allocator import tune_glibc_malloc
    assert tune_glibc_malloc()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    buffers = [np.ones(1 << 20) for _ in range(4)]  # 4 x 8 MiB, every page touched
    del buffers
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _STEPS, mode], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


def test_tuned_malloc_reuses_freed_buffers_instead_of_faulting_them_in_again() -> None:
    default, tuned = _faults("default"), _faults("tuned")
    # 40 steps x 32 MiB = 327,680 pages if every step faults its buffers in anew.
    assert tuned < default / 4, (default, tuned)


def test_tuning_is_applied_once_and_reported() -> None:
    from evertrain.train.allocator import tune_glibc_malloc

    assert tune_glibc_malloc() is True
    assert tune_glibc_malloc() is True  # idempotent


@pytest.mark.parametrize("enabled", [True, False])
def test_cpu_run_applies_the_tuning_unless_opted_out(
    enabled: bool, tiny_data: dict[str, str], tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evertrain.train.loop as loop
    from evertrain.train import run

    calls: list[bool] = []
    monkeypatch.setattr(loop, "tune_glibc_malloc", lambda: calls.append(True) or True)
    cfg = make_config(tmp_path / "run", tiny_data, cpu_malloc_tuning=enabled, budget_tokens=512)
    result = run(cfg, progress=False)
    assert result.steps == 2
    assert calls == ([True] if enabled else [])
