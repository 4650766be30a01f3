"""Train a tiny GPT with its metrics and config logged to a local MLflow store.

    pip install mlflow        # or mlflow-skinny: the tracking client is enough
    python examples/mlflow_local.py [OUT_DIR]
    mlflow ui --backend-store-uri file:OUT_DIR/mlruns     # to look at it (needs mlflow)

The config's ``logging:`` section in YAML:

    logging:
      mlflow: {tracking_uri: file:mlruns, experiment: evertrain-examples}

Without ``tracking_uri`` the store is ``OUT_DIR/run/mlruns``; a ``http://`` URI logs to a server.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from evertrain.data import prepare
from evertrain.train import TrainConfig, run


def main(out: Path) -> dict[str, list[float]]:
    data = prepare(
        ["stdlib-english"], out / "data", vocab_size=512, max_bytes=200_000, progress=False
    )
    store = f"file:{(out / 'mlruns').resolve()}"
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
            "logging": {"mlflow": {"tracking_uri": store, "experiment": "evertrain-examples"}},
        }
    )
    run(cfg, progress=False)

    from mlflow.tracking import MlflowClient  # read back what was logged

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("evertrain-examples")
    (logged,) = client.search_runs([experiment.experiment_id])
    history = {
        key: [m.value for m in client.get_metric_history(logged.info.run_id, key)]
        for key in ("train/loss", "eval/english")
    }
    print(
        f"MLflow run {logged.info.run_id} in {store}: params {len(logged.data.params)}, "
        f"train/loss over {len(history['train/loss'])} steps, eval/english {history['eval/english']}"
    )
    return history


if __name__ == "__main__":
    main(
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(tempfile.mkdtemp(prefix="evertrain-mlflow-"))
    )
