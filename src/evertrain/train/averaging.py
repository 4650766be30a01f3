"""Weight averaging beside the live weights: EMA, LAWA and SWA (config ``averaging:``).

An average of the weights along the trajectory gives much of what an LR decay gives without any
decay steps, so a constant-LR run has a good model at every point:

- ``ema``: exponential moving average, ``avg ← d·avg + (1 − d)·w`` after every step with
  ``d = 0.5 ** (tokens_per_step / half_life_tokens)``: a weight's influence halves every
  ``half_life_tokens`` tokens, whatever the batch size. It starts from the weights the run
  starts from (the initial weights, or a fork's parent weights).
- ``lawa``: latest weight averaging (Sanyal et al. 2023, arXiv:2306.03241): the uniform mean of
  the last ``k`` snapshots, one taken every ``interval_steps`` steps or ``interval_tokens`` tokens.
- ``swa``: stochastic weight averaging over a window (Izmailov et al. 2018; as used for LLMs by
  Hägele et al. 2024, arXiv:2405.18392): the uniform running mean of the weights after every
  step from ``start_step`` / ``start_tokens`` to the end.

Only the parameters are averaged (tied weights once, as ``named_parameters`` lists them). The
average lives on the model's device (``device: model``, the default) or in host memory
(``device: cpu``: no accelerator memory, a device-to-host copy per update). Under DDP rank 0 alone
keeps it (only rank 0 evaluates and saves). The trainer evaluates it at every eval (the
``eval_avg`` key of the eval record), saves it in each checkpoint (``average.safetensors``, the
averaged weights ready to load, and its exact state in ``state.pt``, so a resume is bit-exact),
and ``load_checkpoint(path, model, weights="average")`` loads it as a model.

:func:`average_checkpoints` (``evertrain train average CKPT... -o OUT``) averages saved
checkpoints, uniformly or with weights, into a new checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load as safetensors_load

from evertrain._paths import check_output_dir
from evertrain.train.checkpoint import CheckpointError, load_checkpoint
from evertrain.train.config import AveragingConfig


class WeightAverager:
    """The running average of one model's parameters, as :class:`AveragingConfig` says."""

    def __init__(self, config: AveragingConfig, model: nn.Module) -> None:
        self.config = config
        parameters = list(model.named_parameters())
        self.names = [name for name, _ in parameters]
        self.device = torch.device("cpu") if config.device == "cpu" else parameters[0][1].device
        self.average: list[torch.Tensor] | None = None  # ema, swa
        self.count = 0  # updates folded into the average (swa: the mean's denominator)
        self.snapshots: list[list[torch.Tensor]] = []  # lawa, oldest first
        self.snapshot_steps: list[int] = []
        self.last_tokens: int | None = None
        self.last_step: int | None = None

    # ------------------------------------------------------------------ updates
    def _copy(self, model: nn.Module) -> list[torch.Tensor]:
        return [p.detach().to(self.device, copy=True) for p in model.parameters()]

    @torch.no_grad()
    def start(self, model: nn.Module, step: int, tokens: int) -> None:
        """Begin at the run's starting weights (EMA's first value) and progress."""
        self.last_step, self.last_tokens = step, tokens
        if self.config.kind == "ema":
            self.average = self._copy(model)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, tokens: int) -> None:
        """Fold the weights after optimizer step ``step`` (at ``tokens``) into the average."""
        config = self.config
        tokens_before = self.last_tokens if self.last_tokens is not None else 0
        step_before = self.last_step if self.last_step is not None else 0
        self.last_step, self.last_tokens = step, tokens
        if config.kind == "ema":
            assert self.average is not None, "start() first"
            decay = 0.5 ** ((tokens - tokens_before) / config.half_life_tokens)
            for avg, param in zip(self.average, model.parameters(), strict=True):
                avg.lerp_(param.detach().to(self.device), 1.0 - decay)
            self.count += 1
        elif config.kind == "swa":
            started = (
                step >= config.start_step
                if config.start_step is not None
                else tokens >= config.start_tokens
            )
            if not started:
                return
            self.count += 1
            if self.average is None:
                self.average = self._copy(model)
            else:  # running mean: avg + (w − avg)/n
                for avg, param in zip(self.average, model.parameters(), strict=True):
                    avg.lerp_(param.detach().to(self.device), 1.0 / self.count)
        else:  # lawa: a snapshot whenever a multiple of the interval is crossed
            if config.interval_steps is not None:
                due = step // config.interval_steps > step_before // config.interval_steps
            else:
                due = tokens // config.interval_tokens > tokens_before // config.interval_tokens
            if not due:
                return
            self.snapshots.append(self._copy(model))
            self.snapshot_steps.append(step)
            del self.snapshots[: -config.k], self.snapshot_steps[: -config.k]
            self.count += 1

    # ------------------------------------------------------------------ the average
    @torch.no_grad()
    def weights(self) -> dict[str, torch.Tensor] | None:
        """The averaged parameters by name (None before the first snapshot / the SWA start)."""
        if self.config.kind == "lawa":
            if not self.snapshots:
                return None
            columns = zip(*self.snapshots, strict=True)
            mean = [torch.stack(column).sum(0) / len(self.snapshots) for column in columns]
            return dict(zip(self.names, mean, strict=True))
        if self.average is None:
            return None
        return dict(zip(self.names, self.average, strict=True))

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[bool]:
        """Put the averaged weights into ``model`` while the block runs (yields False, and
        changes nothing, when there is no average yet); the live weights come back exactly."""
        average = self.weights()
        if average is None:
            yield False
            return
        parameters = list(model.parameters())
        live = [p.detach().clone() for p in parameters]
        try:
            with torch.no_grad():
                for param, value in zip(parameters, average.values(), strict=True):
                    param.copy_(value)
            yield True
        finally:
            with torch.no_grad():
                for param, value in zip(parameters, live, strict=True):
                    param.copy_(value)

    def saved_weights(self) -> dict[str, torch.Tensor] | None:
        """The averaged weights as ``average.safetensors`` holds them (CPU, contiguous)."""
        average = self.weights()
        if average is None:
            return None
        return {name: tensor.detach().to("cpu").contiguous() for name, tensor in average.items()}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs to continue the average bit for bit (CPU tensors)."""

        def cpu(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
            return [t.detach().to("cpu", copy=True) for t in tensors]

        return {
            "config": self.config.model_dump(mode="json"),
            "names": list(self.names),
            "average": cpu(self.average) if self.average is not None else None,
            "count": self.count,
            "snapshots": [cpu(snapshot) for snapshot in self.snapshots],
            "snapshot_steps": list(self.snapshot_steps),
            "last_step": self.last_step,
            "last_tokens": self.last_tokens,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def here(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
            return [t.to(self.device, copy=True) for t in tensors]

        self.average = here(state["average"]) if state["average"] is not None else None
        self.count = int(state["count"])
        self.snapshots = [here(snapshot) for snapshot in state["snapshots"]]
        self.snapshot_steps = [int(s) for s in state["snapshot_steps"]]
        self.last_step, self.last_tokens = state["last_step"], state["last_tokens"]


def make_averager(
    config: AveragingConfig | None,
    model: nn.Module,
    saved: dict[str, Any] | None,
    *,
    step: int,
    tokens: int,
) -> WeightAverager | None:
    """The run's averager: restored from a checkpoint's ``saved`` state when it was made by the
    same averaging config, else started afresh at the current weights: a resume that changes or
    adds ``averaging:`` starts a new average (the config-history warning names the change).
    None without ``averaging:``."""
    if config is None:
        return None
    averager = WeightAverager(config, model)
    wanted = config.model_dump(mode="json")
    if saved is not None and saved.get("config") == wanted:
        averager.load_state_dict(saved)
        return averager
    averager.start(model, step, tokens)
    return averager


# ---------------------------------------------------------------------- `evertrain train average`
def parse_weights(text: str | None, count: int) -> list[float] | None:
    """``--weights 0.5,0.3,0.2`` -> floats (None: uniform); one per checkpoint, >= 0, sum 1.

    Weights that do not sum to 1 are refused rather than normalised: a typo would otherwise
    change every weight silently."""
    if text is None:
        return None
    try:
        weights = [float(part) for part in text.split(",")]
    except ValueError:
        raise CheckpointError(
            f"--weights {text!r}: not a comma-separated list of numbers; e.g. --weights 0.5,0.3,0.2"
        ) from None
    return check_weights(weights, count)


def check_weights(weights: list[float], count: int) -> list[float]:
    """The one weights rule of :func:`average_checkpoints` (see :func:`parse_weights`)."""
    listed = ",".join(f"{w:g}" for w in weights)
    if len(weights) != count:
        raise CheckpointError(
            f"--weights {listed}: {len(weights)} weights for {count} checkpoints; give one per checkpoint"
        )
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise CheckpointError(f"--weights {listed}: weights must be finite and >= 0")
    if abs(sum(weights) - 1.0) > 1e-6:
        raise CheckpointError(
            f"--weights {listed}: they sum to {sum(weights):g}; give weights summing to 1"
        )
    return weights


def average_checkpoints(
    checkpoints: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    weights: list[float] | None = None,
    *,
    source_weights: str = "model",
) -> Path:
    """Average saved checkpoints' weights (uniform, or ``weights`` summing to 1) into the new
    checkpoint folder ``out``, written atomically and checksummed like any checkpoint.

    Every input is verified first and must hold the same model (``model_config`` and every
    tensor's shape); ``out`` must not exist. The mean is taken in float64 and stored in the
    sources' dtype. ``source_weights="average"`` averages each source's ``average.safetensors``
    instead (one source: export a run's average as a checkpoint of its own). The result holds
    weights, config and progress of the newest source (``step``, ``tokens``), no optimizer state
    (fork it with ``init_optimizer: false``); ``meta.json`` records ``averaged.sources`` (path,
    step, tokens, sha256 of the weights) and ``averaged.weights``. Raises
    :class:`CheckpointError` with a one-line message for every bad input, before writing.
    """
    from evertrain.train.checkpoint import AVERAGE, WEIGHTS, save_checkpoint
    from evertrain.train.model import GPT, GPTConfig

    if not checkpoints:
        raise CheckpointError("no checkpoints to average; pass one or more checkpoint folders")
    out = Path(os.fspath(out))
    if out.exists():
        raise CheckpointError(f"-o {out}: already exists; choose a new folder for the average")
    check_output_dir(out, "-o", error=CheckpointError)
    weights = check_weights(list(weights), len(checkpoints)) if weights is not None else None
    filename = AVERAGE if source_weights == "average" else WEIGHTS
    sources = []
    for checkpoint in checkpoints:
        path = Path(os.fspath(checkpoint))
        if not path.is_dir():
            raise CheckpointError(f"checkpoint {path} does not exist; pass checkpoint folders")
        state = load_checkpoint(path)  # verifies every checksum
        if filename not in state["meta"]["sha256"]:
            raise CheckpointError(
                f"{path}: holds no {filename} (its run had no averaging:); drop --from-average"
            )
        sources.append((path, state))
    first_path, first = sources[0]
    for path, state in sources[1:]:
        if state.get("model_config") != first.get("model_config"):
            theirs, ours = state.get("model_config") or {}, first.get("model_config") or {}
            field = next((k for k in sorted({*theirs, *ours}) if theirs.get(k) != ours.get(k)), "?")
            raise CheckpointError(
                f"{path}: another architecture than {first_path} (model {field}: "
                f"{theirs.get(field)} vs {ours.get(field)}); average checkpoints of one model"
            )
    tensors = [safetensors_load((path / filename).read_bytes()) for path, _ in sources]
    for (path, _), loaded in zip(sources[1:], tensors[1:], strict=True):
        shapes = {k: tuple(v.shape) for k, v in loaded.items()}
        expected = {k: tuple(v.shape) for k, v in tensors[0].items()}
        if shapes != expected:
            differing = sorted(set(shapes) ^ set(expected)) or [
                k for k in expected if shapes[k] != expected[k]
            ]
            raise CheckpointError(
                f"{path}: tensors differ from {first_path} ({differing[0]}); "
                "average checkpoints of one model"
            )
    factors = weights if weights is not None else [1.0 / len(sources)] * len(sources)
    averaged = {}
    for name, reference in tensors[0].items():
        total = torch.zeros(reference.shape, dtype=torch.float64)
        for factor, loaded in zip(factors, tensors, strict=True):
            total += factor * loaded[name].to(torch.float64)
        averaged[name] = total.to(reference.dtype)
    newest_path, newest = max(sources, key=lambda item: int(item[1]["meta"].get("step", 0)))
    model = GPT(GPTConfig(**newest["model_config"]))
    model.load_state_dict(averaged, strict=False)  # the tied projection follows the embedding
    record = {
        "sources": [
            {
                "path": str(path.resolve()),
                "step": state["meta"].get("step"),
                "tokens": state["meta"].get("tokens"),
                "sha256": state["meta"]["sha256"][filename],
                "weights": source_weights,
            }
            for path, state in sources
        ],
        "weights": factors,
    }
    state = {
        "config": newest.get("config"),
        "model_config": newest["model_config"],
        "step": int(newest["meta"].get("step", 0)),
        "tokens": int(newest["meta"].get("tokens", 0)),
        "averaged": record,
    }
    meta = {
        "step": state["step"],
        "tokens": state["tokens"],
        "eval": {},
        "pinned": True,
        "averaged": record,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(out.parent, out.name, model=model, state=state, meta=meta)


__all__ = [
    "WeightAverager",
    "average_checkpoints",
    "check_weights",
    "make_averager",
    "parse_weights",
]
