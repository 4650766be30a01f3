"""evertrain's trainer and Hugging Face ``Trainer`` give the same losses on the same tiny Llama.

Same weights (one save_pretrained directory), same batches (the HF side is fed the rows
evertrain's sampler draws), same AdamW settings and parameter grouping (passed to the Trainer
explicitly: its own grouping decays embeddings, evertrain's does not), same schedule (through
``ScheduleLR``), same clipping (global norm 1.0); fp32, deterministic. The harness is
``benchmarks/hf.py`` (its ``parity_max_abs_loss_diff`` is this number on another tiny Llama).
Tolerance reached here: exactly 0 on CPU (the same kernels in the same order); asserted <= 1e-5.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # transformers.Trainer needs it

from evertrain.data import prepare  # noqa: E402

from ..hf_models import documents, tiny_model_dir, write_jsonl  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STEPS = 20


def bench() -> object:
    spec = importlib.util.spec_from_file_location("bench_hf", REPO / "benchmarks" / "hf.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_same_losses_as_hf_trainer_for_20_steps(tmp_path: Path) -> None:
    harness = bench()
    model = tiny_model_dir(tmp_path / "llama", "llama")
    prepare(
        [write_jsonl(tmp_path / "d.jsonl", documents(80))],
        tmp_path / "data",
        tokenizer=model,
        progress=False,
    )
    config = harness.run_config(
        model, tmp_path / "data", tmp_path / "ours", steps=STEPS, batch=4, seq_len=32
    )
    ours = harness.evertrain_side(config)["losses"]
    theirs = harness.hf_trainer_side(config, tmp_path / "hf")["losses"]
    assert len(ours) == len(theirs) == STEPS
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) <= 1e-5
    assert len(set(ours)) == STEPS  # the model trains: every step's loss is another number
    # The comparison can fail: a Trainer on another schedule gives other losses.
    other = {**config, "schedule": {**config["schedule"], "peak": 3e-3}}
    assert (
        max(
            abs(a - b)
            for a, b in zip(
                ours, harness.hf_trainer_side(other, tmp_path / "hf2")["losses"], strict=True
            )
        )
        > 1e-4
    )
