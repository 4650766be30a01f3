"""Train a tiny GPT with its metrics mirrored to Weights & Biases in offline mode.

    pip install wandb
    python examples/wandb_offline.py [OUT_DIR]

Offline, nothing leaves the machine: the run is written to ``OUT_DIR/run/wandb/offline-run-*``
and ``wandb sync OUT_DIR/run/wandb/offline-run-*`` uploads it later. The config in YAML is the
same ``logging:`` section:

    logging:
      wandb: {project: evertrain-examples, mode: offline}
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from evertrain.data import prepare
from evertrain.train import TrainConfig, run


def main(out: Path) -> Path:
    data = prepare(
        ["stdlib-english"], out / "data", vocab_size=512, max_bytes=200_000, progress=False
    )
    cfg = TrainConfig.model_validate(
        {
            "out_dir": str(out / "run"),
            "device": "cpu",
            "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 32},
            "data": {"train": {"english": str(data.path)}, "eval_tokens": 1024},
            "schedule": {
                "name": "cosine",
                "peak": 3e-3,
                "total": 6 * 256,
                "warmup": 256,
                "unit": "tokens",
            },
            "batch_size": 8,
            "budget_tokens": 6 * 256,
            "eval_interval_tokens": 3 * 256,
            "checkpoint_interval_tokens": 6 * 256,
            "logging": {"wandb": {"project": "evertrain-examples", "mode": "offline"}},
        }
    )
    result = run(cfg, progress=False)
    runs = sorted((out / "run" / "wandb").glob("offline-run-*"))
    print(f"trained {result.steps} steps; eval {result.final_eval}")
    print(f"W&B offline run: {runs[-1]}  (upload with: wandb sync {runs[-1]})")
    return runs[-1]


if __name__ == "__main__":
    main(
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(tempfile.mkdtemp(prefix="evertrain-wandb-"))
    )
