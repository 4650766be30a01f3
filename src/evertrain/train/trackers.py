"""Experiment trackers beside ``log.jsonl``: TensorBoard, Weights & Biases, MLflow.

Each tracker gets every record the trainer logs (``train`` and ``eval``, see
:mod:`evertrain.train.logging`) and, once at start, the run's resolved config as its
hyper-parameters. ``log.jsonl`` stays the record of truth; trackers mirror it.

- **TensorBoard** (``tensorboard: true``): ``train/*`` and ``eval/*`` against the optimizer step,
  the same scalars again as ``train_tokens/*`` and ``eval_tokens/*`` with *tokens* as the global
  step (a tokens x-axis: runs with different batch sizes line up), the config as a YAML text
  summary (``config``) and as hyper-parameters (the HParams tab), in ``out_dir/tensorboard``.
- **W&B** (``logging: {wandb: {project: ..., mode: offline}}``): a run in ``out_dir/wandb``
  (``mode: offline`` writes there only; ``wandb sync`` uploads it later), the config as
  ``wandb.config``, ``step`` and ``tokens`` as metrics to plot against.
- **MLflow** (``logging: {mlflow: {tracking_uri: file:...}}``): a run in the experiment
  ``experiment`` with the flattened config as params and the scalars as metrics by step.

W&B and MLflow are optional packages: :func:`check_installed` (called before any work) turns
a missing one into a one-line error with its install command. A resumed run continues the same
W&B / MLflow run: their ids are kept in ``out_dir/trackers.json``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from evertrain._atomic import atomic_write_json

TRACKERS_FILE = "trackers.json"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WandbSettings(_Settings):
    """``logging.wandb``: where a Weights & Biases run goes."""

    project: str = "evertrain"
    mode: Literal["online", "offline", "disabled"] = "online"
    entity: str | None = None
    name: str | None = None  #: default: the out_dir's folder name
    tags: list[str] = []


class MlflowSettings(_Settings):
    """``logging.mlflow``: where an MLflow run goes."""

    tracking_uri: str | None = None  #: default: ``file:<out_dir>/mlruns``
    experiment: str = "evertrain"
    run_name: str | None = None  #: default: the out_dir's folder name


class LoggingConfig(_Settings):
    """``logging:`` in a train config: the optional trackers (TensorBoard is ``tensorboard:``)."""

    wandb: WandbSettings | None = None
    mlflow: MlflowSettings | None = None


#: Import name and install command of each optional tracker.
_PACKAGES = {"wandb": ("wandb", "pip install wandb"), "mlflow": ("mlflow", "pip install mlflow")}


class TrackerError(ValueError):
    """A tracker that was asked for cannot run (its package is missing)."""


def check_installed(settings: LoggingConfig) -> None:
    """Raise :class:`TrackerError` (one line, the install command) for an asked-for tracker
    whose package is missing: before any work, not after the first training step."""
    for field, (module, install) in _PACKAGES.items():
        if getattr(settings, field) is not None and importlib.util.find_spec(module) is None:
            raise TrackerError(
                f"logging.{field}: the {module} package is not installed: {install} "
                f"(or remove logging.{field} from the config)"
            )


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"n_layer": 2}}`` -> ``{"model.n_layer": 2}``; lists and None as text."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat


def scalars(record: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """The record's kind (``train``/``eval``) and its numeric values by name (no step/tokens)."""
    kind = str(record.get("kind"))
    values = record.get("eval", {}) if kind == "eval" else record
    found = {
        key: float(value)
        for key, value in values.items()
        if isinstance(value, (int, float))
        and not isinstance(value, bool)
        and key not in ("step", "tokens")
    }
    return kind, found


def _read_ids(out_dir: Path) -> dict[str, str]:
    try:
        ids = json.loads((out_dir / TRACKERS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return ids if isinstance(ids, dict) else {}


def _remember_id(out_dir: Path, tracker: str, run_id: str) -> None:
    ids = _read_ids(out_dir)
    if ids.get(tracker) != run_id:
        atomic_write_json(out_dir / TRACKERS_FILE, {**ids, tracker: run_id})


class TensorBoardTracker:
    """Scalars by step and by tokens, the config as text and as hyper-parameters."""

    def __init__(self, out_dir: Path, config: dict[str, Any] | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))
        if config is not None:
            self._write_config(config)

    def _write_config(self, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        from evertrain import _yaml

        self.writer.add_text("config", "```yaml\n" + _yaml.dump(config) + "\n```", 0)
        names = list(
            (config.get("data") or {}).get("eval") or (config.get("data") or {}).get("train") or {}
        )
        metrics = {"train/loss": 0.0, **{f"eval/{name}": 0.0 for name in names}}
        # The three hparams summaries go into this run's own event file (add_hparams would
        # open a second run folder); the metrics named are the scalars this writer logs.
        for summary in hparams(flatten(config), metrics):
            self.writer.file_writer.add_summary(summary)

    def log(self, record: dict[str, Any]) -> None:
        kind, values = scalars(record)
        step, tokens = int(record["step"]), int(record.get("tokens", 0))
        for key, value in values.items():
            self.writer.add_scalar(f"{kind}/{key}", value, step)
            self.writer.add_scalar(f"{kind}_tokens/{key}", value, tokens)

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A W&B run (online or offline) in ``out_dir/wandb``; a resume continues it."""

    def __init__(
        self, settings: WandbSettings, out_dir: Path, config: dict[str, Any] | None
    ) -> None:
        import wandb

        # Our own id (8 lowercase hex characters, valid for W&B), kept for a resume.
        run_id = _read_ids(out_dir).get("wandb") or secrets.token_hex(4)
        self.run = wandb.init(
            project=settings.project,
            entity=settings.entity,
            name=settings.name or out_dir.name,
            mode=settings.mode,
            tags=settings.tags or None,
            dir=str(out_dir),
            id=run_id,
            resume="allow",
            config=config,
        )
        _remember_id(out_dir, "wandb", run_id)
        for axis in ("step", "tokens"):
            self.run.define_metric(axis)
        for kind in ("train", "eval"):
            self.run.define_metric(f"{kind}/*", step_metric="step")

    def log(self, record: dict[str, Any]) -> None:
        kind, values = scalars(record)
        row = {f"{kind}/{key}": value for key, value in values.items()}
        self.run.log({**row, "step": int(record["step"]), "tokens": int(record.get("tokens", 0))})

    def close(self) -> None:
        self.run.finish()


def _mlflow_key(name: str) -> str:
    """MLflow keys allow letters, digits, ``_ - . / `` and spaces: a dataset named ``web+code``
    logs as ``eval/web_code`` instead of failing the run at its first record."""
    return re.sub(r"[^\w\-. /]", "_", name)


class MlflowTracker:
    """An MLflow run: the flattened config as params, the scalars as metrics by step."""

    def __init__(
        self, settings: MlflowSettings, out_dir: Path, config: dict[str, Any] | None
    ) -> None:
        uri = settings.tracking_uri or f"file:{(out_dir / 'mlruns').resolve()}"
        if uri.startswith("file:"):
            # MLflow 3 keeps the file store only behind this switch; `file:` was asked for.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self._metric = Metric
        self.client = MlflowClient(tracking_uri=uri)
        run_id = _read_ids(out_dir).get("mlflow")
        if run_id is None:
            experiment = self.client.get_experiment_by_name(settings.experiment)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self.client.create_experiment(settings.experiment)
            )
            run = self.client.create_run(experiment_id, run_name=settings.run_name or out_dir.name)
            run_id = run.info.run_id
            flat = flatten(config or {})
            params = [Param(_mlflow_key(k), str(v)[:6000]) for k, v in flat.items()]
            for start in range(0, len(params), 100):  # MLflow takes 100 params per batch
                self.client.log_batch(run_id, params=params[start : start + 100])
        self.run_id = run_id
        _remember_id(out_dir, "mlflow", run_id)

    def log(self, record: dict[str, Any]) -> None:
        kind, values = scalars(record)
        step, now = int(record["step"]), int(time.time() * 1000)
        metrics = [
            self._metric(_mlflow_key(f"{kind}/{key}"), value, now, step)
            for key, value in values.items()
        ]
        metrics.append(self._metric("tokens", float(record.get("tokens", 0)), now, step))
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def open_trackers(
    out_dir: Path,
    *,
    tensorboard: bool,
    settings: LoggingConfig | None,
    config: dict[str, Any] | None,
) -> list[Any]:
    """The trackers a run asked for, each with ``log(record)`` and ``close()``.

    TensorBoard is skipped when the tensorboard package is missing (it was always optional);
    W&B and MLflow were checked by :func:`check_installed`."""
    trackers: list[Any] = []
    if tensorboard:
        try:
            trackers.append(TensorBoardTracker(out_dir, config))
        except ImportError:  # tensorboard not installed: JSONL only
            pass
    if settings is not None and settings.wandb is not None:
        trackers.append(WandbTracker(settings.wandb, out_dir, config))
    if settings is not None and settings.mlflow is not None:
        trackers.append(MlflowTracker(settings.mlflow, out_dir, config))
    return trackers
