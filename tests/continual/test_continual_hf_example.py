"""examples/continual_hf.py runs end to end: tiny Llama built locally, data prepared with its
tokenizer, a rewarm+replay plan, export, reload with the checkpoint's logits, report written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]


def test_continual_hf_example(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    completed = subprocess.run(
        [sys.executable, str(REPO / "examples" / "continual_hf.py"), "--out", str(tmp_path), "--tokens", "1024"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout[completed.stdout.index("{") :])
    assert summary["max_abs_logit_diff"] <= 1e-6
    assert summary["eos_token"] == "<|eot|>"
    assert summary["tokens"] == 1024
    assert set(summary["final_eval"]) == {"english", "code"}  # the base's data is evaluated too
    assert Path(summary["report"]).is_file()
    assert (Path(summary["exported"]) / "model.safetensors").is_file()
