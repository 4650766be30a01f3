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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn

from evertrain.train.config import AveragingConfig


class WeightAverager:
    """The running average of one model's parameters, as :class:`AveragingConfig` says."""

    def __init__(self, config: AveragingConfig, model: nn.Module) -> None:
        self.config = config
        parameters = list(model.named_parameters())
        self.names = [name for name, _ in parameters]
        self.device = (
            torch.device("cpu") if config.device == "cpu" else parameters[0][1].device
        )
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


__all__ = ["WeightAverager", "make_averager"]
