"""benchmarks/continual.py still runs end to end (its --toy mode, seconds): the script calls the
continual API directly, and a refactor of that API once broke it only after 7 minutes of a real
benchmark run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

REPO = Path(__file__).resolve().parents[2]


def test_continual_benchmark_toy_run_writes_every_figure(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "continual.py"), "--toy", "--skip-demo",
         "--workers", "1", "--out", str(tmp_path / "bench")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    payload = json.loads(completed.stdout[completed.stdout.index("{\n") :])
    assert set(payload["recipes"]) == {
        "retrain", "finetune", "rewarm", "rewarm+replay", "infinite+replay"
    }  # fmt: skip
    branching = payload["branching"]
    assert branching["total_tokens"]["wsd_branches"] < branching["total_tokens"]["cosine_runs"]
