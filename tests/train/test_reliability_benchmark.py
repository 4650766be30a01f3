"""benchmarks/reliability.py still runs and still finds nothing (its --quick mode: one kill inside
the checkpoint writer, a truncated meta.json and an all-corrupt run on a 20-step run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_reliability_benchmark_quick_run(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    out = tmp_path / "reliability.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "reliability.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    payload = json.loads(out.read_text())
    assert payload["mode"] == "quick" and payload["kills_tried"] >= 1
    assert payload["kills_bit_exact"] == payload["kills_tried"]
    assert payload["silent_fallbacks"] == 0 and payload["orphans_left"] == 0
    cases = {case["case"]: case for case in payload["case_details"]}
    assert cases["all_checkpoints_corrupt"]["exit"] == 2  # refused, did not restart at step 0
    assert cases["meta_truncated"]["exit"] == 0 and cases["meta_truncated"]["bit_exact"]
    assert "meta.json" in cases["meta_truncated"]["message"]
    assert payload["fallback_cases_with_traceback"] == 0
