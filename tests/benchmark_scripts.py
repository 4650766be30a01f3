"""Run a benchmark script of ``benchmarks/`` at its ``--toy`` size, as the tests of each do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_toy(script: str, out: Path, *extra: str, timeout: int = 900) -> Any:
    """``python benchmarks/<script> --toy --out OUT/runs --results OUT/none.json EXTRA...`` with
    this checkout's sources and one thread; asserts it exits 0 and that ``--toy`` wrote no results
    file, and returns the last JSON object it printed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, str(REPO / "benchmarks" / script), "--toy",
               "--out", str(out / "runs"), "--results", str(out / "none.json"), *extra]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert not (out / "none.json").exists()  # --toy prints, never writes a results file
    text = completed.stdout
    start = text.rindex("\n{\n") + 1 if "\n{\n" in text else text.index("{\n")
    return json.loads(text[start:])
