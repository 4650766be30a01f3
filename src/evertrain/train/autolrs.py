"""AutoLRS-style learning-rate search while training: ``schedule: {name: auto, ...}``.

After an optional linear warmup the run is split into stages of ``stage_steps`` optimizer steps
(or ``stages`` equal stages). At the start of every stage (after Jin et al., ICLR 2021, "AutoLRS:
Automatic Learning-Rate Schedule by Bayesian Optimization on the Fly")::

    snapshot = weights, optimizer moments, grad-scaler, sampler position, RNG states (in memory)
    for each candidate LR (a log-grid over [lr_min, lr_max], refined around the best):
        restore snapshot; train `horizon` steps at that constant LR; record the losses
        forecast the loss at the stage's end: fit a + b*exp(-c*t) to those losses
    restore snapshot; train the whole stage at the LR with the lowest forecast

The main path therefore re-trains the stage from the snapshot (as in the paper): its first
``horizon`` losses equal the chosen candidate's, bit for bit. Candidate steps are search cost:
they are counted (``search_tokens`` in the ``autolrs`` log record) but are no part of the run's
``step``/``tokens``, which only the main path advances.

What differs from the paper: candidates come from a deterministic log-grid (``rounds`` > 1 refines
it around the best LR so far) instead of Gaussian-process Bayesian optimisation; the forecast is
fitted to the candidate's *training* losses (the paper forecasts the validation loss); every stage
has the one length the spec sets.

The realised schedule (warmup, then one constant LR per stage) is a ``piecewise_linear`` spec that
the trainer itself evaluates, written to ``realised_schedule.yaml`` after each stage: training
with it replays the tuned run's losses exactly, without search. Checkpoints carry the chosen LRs
(``state["autolrs"]``); search happens only between main-path steps, so no checkpoint is ever
taken inside a candidate trial and a resume re-runs an interrupted stage search identically.

This module imports torch only inside the functions that train (``train.config`` imports the
spec side, and ``evertrain --help`` must start without torch).
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evertrain import _yaml
from evertrain._atomic import atomic_write_text
from evertrain.schedules import Schedule, ScheduleError, from_spec
from evertrain.schedules.registry import canonical_name, load_spec_file, parse_inline

AUTO_NAME = "auto"
FORECASTS = ("exponential", "last_mean")
REALISED_FILE = "realised_schedule.yaml"


class AutoSchedule(Schedule):
    """The ``auto`` spec: a placeholder the trainer replaces by the LRs its search chooses.

    Parameters (steps are optimizer steps; see docs/train.md "Automatic schedule search"):
        lr_min, lr_max: the log-uniform LR search range (``0 < lr_min < lr_max``).
        stage_steps / stages: the stage length in steps, or the number of equal stages after the
            warmup (exactly one of the two).
        candidates: LRs tried per round (>= 2), a log-grid over the range.
        rounds: 1 = one grid over [lr_min, lr_max]; each further round tries ``candidates`` LRs on
            a grid over the best LR's cell (half the last grid spacing either side), so the
            spacing shrinks ``candidates - 1`` times a round.
        horizon: steps each candidate trains (the paper's tau'); the forecast is at the stage end.
        forecast: ``exponential`` (fit ``a + b*exp(-c*t)``) or ``last_mean`` (mean of the last
            ``last_k`` losses); the exponential fit falls back to ``last_mean`` when it fails.
        warmup, warmup_lr: linear warmup steps before the first stage, to ``warmup_lr`` (default
            the geometric middle of the range).

    Evaluating it raises: its LR exists only once the run has chosen it.
    """

    name = AUTO_NAME

    def __init__(
        self,
        *,
        lr_min: float,
        lr_max: float,
        horizon: int,
        stage_steps: int | None = None,
        stages: int | None = None,
        candidates: int = 4,
        rounds: int = 1,
        forecast: str = "exponential",
        last_k: int = 3,
        warmup: int = 0,
        warmup_lr: float | None = None,
        unit: str = "steps",
    ) -> None:
        s = self.name
        lr_min, lr_max = _positive(s, "lr_min", lr_min), _positive(s, "lr_max", lr_max)
        if lr_max <= lr_min:
            raise ScheduleError(f"{s}: lr_max={lr_max:g} must be above lr_min={lr_min:g}")
        if (stage_steps is None) == (stages is None):
            raise ScheduleError(
                f"{s}: give exactly one of stage_steps (steps per stage) or stages (how many)"
            )
        horizon = _count(s, "horizon", horizon, 1)
        if stage_steps is not None:
            stage_steps = _count(s, "stage_steps", stage_steps, 1)
            if horizon > stage_steps:
                raise ScheduleError(
                    f"{s}: horizon={horizon} is longer than stage_steps={stage_steps}; "
                    "a candidate trains part of a stage: lower horizon"
                )
        if stages is not None:
            stages = _count(s, "stages", stages, 1)
        candidates = _count(s, "candidates", candidates, 2)
        rounds = _count(s, "rounds", rounds, 1)
        if forecast not in FORECASTS:
            raise ScheduleError(f"{s}: forecast={forecast!r} must be one of {', '.join(FORECASTS)}")
        last_k = _count(s, "last_k", last_k, 1)
        warmup = _count(s, "warmup", warmup, 0)
        if warmup_lr is None:
            warmup_lr = math.sqrt(lr_min * lr_max)
        warmup_lr = _positive(s, "warmup_lr", warmup_lr)
        if unit != "steps":
            raise ScheduleError(
                f"{s}: unit={unit!r} is not supported; stage_steps, horizon and warmup count "
                "optimizer steps (unit: steps)"
            )
        self.unit, self.total = "steps", None
        self.lr_min, self.lr_max, self.horizon = lr_min, lr_max, horizon
        self.stage_steps, self.stages = stage_steps, stages
        self.candidates, self.rounds, self.forecast = candidates, rounds, forecast
        self.last_k, self.warmup, self.warmup_lr = last_k, warmup, warmup_lr
        spec: dict[str, Any] = {"lr_min": lr_min, "lr_max": lr_max, "horizon": horizon}
        spec.update({"stage_steps": stage_steps} if stages is None else {"stages": stages})
        spec.update(candidates=candidates, rounds=rounds, forecast=forecast, last_k=last_k)
        spec.update(warmup=warmup, warmup_lr=warmup_lr, unit="steps")
        self._spec = spec

    def _unavailable(self) -> ScheduleError:
        return ScheduleError(
            "auto: the LR of an auto schedule is chosen while the run trains, so it has no value "
            f"before; use the run's {REALISED_FILE} (a piecewise_linear spec) where a fixed "
            "schedule is needed"
        )

    def _scalar(self, t: float) -> float:
        raise self._unavailable()

    def _vector(self, t: np.ndarray) -> np.ndarray:
        raise self._unavailable()

    def with_total(self, total: float) -> Schedule:
        raise ScheduleError(
            "auto: an auto schedule has no total to change; it always spans the run's budget "
            f"(for a fixed schedule use the run's {REALISED_FILE})"
        )


def _positive(s: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScheduleError(f"{s}: {field}={value!r} must be a number")
    if not math.isfinite(value) or value <= 0:
        raise ScheduleError(f"{s}: {field}={value!r} must be a positive finite number")
    return float(value)


def _count(s: str, field: str, value: Any, least: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ScheduleError(f"{s}: {field}={value!r} must be a whole number >= {least}")
    return value


def parse_auto_spec(value: Any) -> AutoSchedule | None:
    """The :class:`AutoSchedule` that ``value`` (a spec dict, inline string or spec file) names,
    or ``None`` when it names another schedule (left to :func:`evertrain.schedules.from_spec`).

    ``auto`` is not in the schedules registry: it needs the trainer, and the ``schedules`` room
    imports no other room. Raises :class:`ScheduleError` for a bad ``auto`` spec.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.lower().endswith((".yaml", ".yml", ".json")):
            value = load_spec_file(text)
        elif text.split(":", 1)[0].strip().lower() == AUTO_NAME:
            value = parse_inline(text)
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    if canonical_name(value["name"]) != AUTO_NAME:
        return None
    params = {key: item for key, item in value.items() if key != "name"}
    known = [name for name in inspect.signature(AutoSchedule.__init__).parameters if name != "self"]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ScheduleError(
            f"auto: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(known)}"
        )
    return AutoSchedule(**params)


# ---------------------------------------------------------------------------- forecasting
def fit_exponential(losses: list[float]) -> tuple[float, float, float] | None:
    """Least-squares ``(a, b, c)`` of ``loss(t) = a + b*exp(-c*t)`` at ``t = 1..len(losses)``.

    Variable projection: for a fixed ``c`` the model is linear in ``(a, b)``, so the squared
    error is a smooth function of ``c`` alone, minimised on a log-grid and then by golden-section
    search between the grid neighbours. Deterministic and without scipy. ``None`` when it cannot
    be fitted (fewer than 3 finite points, or a flat series).
    """
    y = np.asarray(losses, dtype=np.float64)
    if y.size < 3 or not np.all(np.isfinite(y)):
        return None
    t = np.arange(1, y.size + 1, dtype=np.float64)

    def solve(c: float) -> tuple[float, float, float]:
        design = np.stack([np.ones_like(t), np.exp(-c * t)], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
        return float(np.sum((design @ np.array([a, b]) - y) ** 2)), float(a), float(b)

    log_cs = np.linspace(math.log(1e-3 / y.size), math.log(10.0), 121)
    errors = [solve(math.exp(log_c))[0] for log_c in log_cs]
    best = int(np.argmin(errors))
    low, high = log_cs[max(best - 1, 0)], log_cs[min(best + 1, len(log_cs) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(60):  # golden section on log c
        left, right = high - ratio * (high - low), low + ratio * (high - low)
        if solve(math.exp(left))[0] <= solve(math.exp(right))[0]:
            high = right
        else:
            low = left
    c = math.exp((low + high) / 2)
    _, a, b = solve(c)
    if not all(math.isfinite(v) for v in (a, b, c)):
        return None
    return a, b, c


def forecast_loss(
    losses: list[float], at: int, *, model: str = "exponential", last_k: int = 3
) -> tuple[float, str]:
    """The loss forecast at step ``at`` of a run whose first losses are ``losses``, and the model
    used (``exponential`` or ``last_mean``). A non-finite loss forecasts ``inf`` (diverged)."""
    if not losses or not all(math.isfinite(v) for v in losses):
        return math.inf, "diverged"
    if model == "exponential":
        fitted = fit_exponential(losses)
        if fitted is not None:
            a, b, c = fitted
            value = a + b * math.exp(-c * at)
            # A cross-entropy is >= 0; a negative or non-finite extrapolation is a failed fit.
            if math.isfinite(value) and value >= 0:
                return value, "exponential"
    tail = losses[-last_k:]
    return float(sum(tail) / len(tail)), "last_mean"


def candidate_grid(
    lr_min: float, lr_max: float, count: int, best: float | None = None, spacing: float = 0.0
) -> tuple[list[float], float]:
    """``count`` log-spaced LRs and their log-spacing: over ``[lr_min, lr_max]`` for the first
    round, else over the cell ``best * exp(+-spacing / 2)`` clipped to the range (a refinement:
    the neighbours one ``spacing`` away were tried and forecast worse)."""
    low, high = math.log(lr_min), math.log(lr_max)
    if best is not None:
        half = spacing / 2
        low, high = max(low, math.log(best) - half), min(high, math.log(best) + half)
    grid = [float(lr) for lr in np.exp(np.linspace(low, high, count))]
    # exp(log(x)) need not be x: keep the range's own ends exact (1e-4, not 1.0000000000000009e-4)
    grid[0] = lr_min if low == math.log(lr_min) else grid[0]
    grid[-1] = lr_max if high == math.log(lr_max) else grid[-1]
    return grid, (high - low) / (count - 1)


# ---------------------------------------------------------------------------- the search
@dataclass
class _Snapshot:
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scaler: dict[str, Any]
    sampler: dict[str, Any]
    rng: dict[str, Any]


def _finite_or_none(values: list[float]) -> list[float | None]:
    return [value if math.isfinite(value) else None for value in values]


class Search:
    """One run's search: the stages' chosen LRs, the realised schedule, the search cost.

    Created by :func:`attach_search`; the loop calls :meth:`before_step` before every main-path
    step and stores :meth:`state_dict` in each checkpoint.
    """

    def __init__(self, trainer: Any, spec: AutoSchedule, total_steps: int, state: Any) -> None:
        self.trainer, self.spec, self.total_steps = trainer, spec, total_steps
        state = state or {}
        self.chosen: list[dict[str, Any]] = [dict(stage) for stage in state.get("stages", [])]
        self.search_tokens = int(state.get("search_tokens", 0))
        if "stage_steps" in state:  # the layout a resume keeps, even with another budget
            self.stage_steps = int(state["stage_steps"])
        elif spec.stage_steps is not None:
            self.stage_steps = spec.stage_steps
        else:
            self.stage_steps = -(-(total_steps - spec.warmup) // spec.stages)
        self.trainer.schedule = self.realised()

    # -- the schedule the trainer follows
    def realised_spec(self) -> dict[str, Any]:
        """Warmup, then one constant LR per chosen stage, as a ``piecewise_linear`` spec."""
        spec = self.spec
        points: list[list[float]] = []
        if spec.warmup:
            points += [[0, spec.warmup_lr / spec.warmup], [spec.warmup - 1, spec.warmup_lr]]
        for stage in self.chosen:  # repeated times make the jumps between stages
            points += [[stage["start"], stage["lr"]], [stage["end"], stage["lr"]]]
        if not points:  # nothing chosen yet and no warmup: never evaluated before the search
            points = [[0, spec.warmup_lr]]
        return {"name": "piecewise_linear", "points": points, "unit": "steps"}

    def realised(self) -> Schedule:
        return from_spec(self.realised_spec())

    def state_dict(self) -> dict[str, Any]:
        return {
            "stages": [dict(stage) for stage in self.chosen],
            "stage_steps": self.stage_steps,
            "search_tokens": self.search_tokens,
        }

    def _next_stage(self) -> tuple[int, int] | None:
        """(start, end) of the stage still to choose, or None when every step has an LR."""
        start = self.chosen[-1]["end"] if self.chosen else self.spec.warmup
        if start >= self.total_steps:
            return None
        return start, min(start + self.stage_steps, self.total_steps)

    # -- the hook
    def before_step(self, model: Any, logger: Any) -> None:
        """At a stage's first step: search its LR, then let the loop train it from the snapshot."""
        stage = self._next_stage()
        if stage is None or self.trainer.step != stage[0]:
            return
        start, end = stage
        from evertrain.train import distributed

        # Every rank forecasts from the same all-reduced losses; rank 0's choice is made binding
        # anyway, since ranks on different LRs would drift apart without any error.
        record = distributed.broadcast_object(self._search(model, start, end), self.trainer.info)
        self.chosen.append({"start": start, "end": end, "lr": record["chosen"]})
        self.trainer.schedule = self.realised()
        logger.log(record)
        self.write_realised()

    def write_realised(self) -> None:
        trainer = self.trainer
        if not trainer.info.is_main:
            return
        header = (
            "# The LR schedule an auto (AutoLRS-style) search chose for this run: train with it\n"
            "# (schedule: this file) to replay the run without search.\n"
        )
        body = _yaml.dump({"schedule": self.realised_spec()}, default_flow_style=None)
        atomic_write_text(Path(trainer.out_dir) / REALISED_FILE, header + body)

    def _search(self, model: Any, start: int, end: int) -> dict[str, Any]:
        spec, trainer = self.spec, self.trainer
        length = end - start
        horizon = min(spec.horizon, length)
        snapshot = self._snapshot()
        tried: dict[float, dict[str, Any]] = {}
        best: float | None = None
        spacing = 0.0
        for _ in range(spec.rounds):
            grid, new_spacing = candidate_grid(
                spec.lr_min, spec.lr_max, spec.candidates, best, spacing
            )
            for lr in grid:
                if any(math.isclose(lr, done, rel_tol=1e-9) for done in tried):
                    continue  # the best LR itself (odd counts): trained already
                self._load(snapshot)
                losses = self._train_candidate(model, lr, horizon)
                forecast, used = forecast_loss(
                    losses, length, model=spec.forecast, last_k=spec.last_k
                )
                tried[lr] = {
                    "lr": lr,
                    "forecast": forecast if math.isfinite(forecast) else None,
                    "forecast_model": used,
                    "losses": _finite_or_none(losses),
                    "_forecast": forecast,
                    "_steps": len(losses),
                }
            best = min(tried.values(), key=lambda c: (c["_forecast"], c["lr"]))["lr"]
            spacing = new_spacing
        self._load(snapshot)  # the stage itself trains from the snapshot, as in the paper
        if not math.isfinite(tried[best]["_forecast"]):
            from evertrain.train.config import ConfigError

            raise ConfigError(
                f"schedule: every candidate LR of the auto stage at step {start} diverged "
                f"(tried {', '.join(f'{lr:.3g}' for lr in tried)}); lower lr_min/lr_max"
            )
        steps = sum(c["_steps"] for c in tried.values())
        stage_tokens = steps * trainer.cfg.tokens_per_step
        self.search_tokens += stage_tokens
        return {
            "kind": "autolrs",
            "step": trainer.step,
            "tokens": trainer.tokens,
            "stage": len(self.chosen),
            "start": start,
            "end": end,
            "horizon": horizon,
            "candidates": [
                {k: v for k, v in c.items() if not k.startswith("_")} for c in tried.values()
            ],
            "chosen": best,
            "search_steps": steps,
            "search_tokens": stage_tokens,
            "search_tokens_total": self.search_tokens,
        }

    # -- state, in memory
    def _snapshot(self) -> _Snapshot:
        from evertrain.train.loop import _rng_state

        trainer = self.trainer
        return _Snapshot(
            model=copy.deepcopy(trainer.model.state_dict()),
            optimizer=copy.deepcopy(trainer.optimizer.state_dict()),
            scaler=copy.deepcopy(trainer.scaler.state_dict()),
            sampler=copy.deepcopy(trainer.sampler.state_dict()),
            rng=copy.deepcopy(_rng_state()),
        )

    def _load(self, snapshot: _Snapshot) -> None:
        from evertrain.train.loop import _set_rng_state

        trainer = self.trainer
        trainer.model.load_state_dict(snapshot.model)
        trainer.optimizer.load_state_dict(copy.deepcopy(snapshot.optimizer))
        trainer.scaler.load_state_dict(copy.deepcopy(snapshot.scaler))
        trainer.sampler.load_state_dict(copy.deepcopy(snapshot.sampler))
        _set_rng_state(copy.deepcopy(snapshot.rng))
        trainer.optimizer.zero_grad(set_to_none=True)

    def _train_candidate(self, model: Any, lr: float, steps: int) -> list[float]:
        """Train ``steps`` steps at constant ``lr``; stop at the first non-finite loss."""
        losses = []
        for _ in range(steps):
            loss = candidate_step(self.trainer, model, lr)
            losses.append(loss)
            if not math.isfinite(loss):
                break
        return losses


def candidate_step(trainer: Any, model: Any, lr: float) -> float:
    """One optimizer step at ``lr``, as the main loop takes it (grad accumulation, loss scaling,
    clipping, a non-finite loss skips the update); returns the step's mean loss."""
    import torch

    from evertrain.train import distributed, fsdp

    cfg = trainer.cfg
    for group in trainer.optimizer.param_groups:
        group["lr"] = lr
    loss_sum = torch.zeros((), device=trainer.device)
    for micro_step in range(cfg.grad_accum):
        x, y = trainer.sampler.next_batch()
        x = torch.from_numpy(x).to(trainer.device, non_blocking=True)
        y = torch.from_numpy(y).to(trainer.device, non_blocking=True)
        with fsdp.gradient_sync(model, skip=micro_step < cfg.grad_accum - 1):
            with trainer.autocast():
                loss = model(x, y)[1]  # not the logits: as in the loop, they would live on
            loss = loss / cfg.grad_accum
            trainer.scaler.scale(loss).backward()
        loss_sum += loss.detach()
    loss_mean = distributed.all_reduce_mean(loss_sum, trainer.info)
    trainer.scaler.unscale_(trainer.optimizer)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    fsdp.clip_grad_norm(params, cfg.optimizer.grad_clip or math.inf)
    loss_value = float(loss_mean)
    if math.isfinite(loss_value):
        trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    trainer.optimizer.zero_grad(set_to_none=True)
    return loss_value


def _drop_unchosen_records(out_dir: Path, chosen: int) -> None:
    """Remove ``autolrs`` records of stages the checkpoint has not chosen (a run stopped after a
    stage's search but before the next checkpoint logged it; the resume searches it again)."""
    from evertrain.train.logging import read_log

    path = out_dir / "log.jsonl"
    records = read_log(path)
    kept = [r for r in records if r.get("kind") != "autolrs" or int(r.get("stage", 0)) < chosen]
    if len(kept) != len(records):
        import json

        atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))


def auto_schedule_problem(schedule: Schedule, total_steps: int, strategy: str) -> str | None:
    """Why an ``auto`` ``schedule`` cannot train a run of ``total_steps`` steps under the
    parallel ``strategy`` (one line naming the field and the fix), or ``None`` when it can (or the
    schedule is not ``auto``). TrainConfig checks it at validation, before any work."""
    if not isinstance(schedule, AutoSchedule):
        return None
    if strategy == "fsdp":
        return (
            "schedule: an auto schedule snapshots whole state_dicts in memory, which sharded "
            "FSDP parameters do not have; use parallel.strategy: ddp (or none) with auto"
        )
    if schedule.warmup >= total_steps:
        return (
            f"schedule: auto warmup={schedule.warmup} leaves no step to search in a run of "
            f"{total_steps} steps; lower warmup or raise budget_tokens"
        )
    if schedule.stages is not None:
        stage = -(-(total_steps - schedule.warmup) // schedule.stages)
        if schedule.horizon > stage:
            return (
                f"schedule: auto horizon={schedule.horizon} is longer than a stage ({stage} "
                f"steps: {total_steps - schedule.warmup} after warmup / stages={schedule.stages}); "
                "lower horizon or stages"
            )
    return None


def attach_search(trainer: Any, total_steps: int) -> Search | None:
    """The run's :class:`Search` when its schedule is ``auto`` (else ``None``); sets the
    trainer's schedule to the realised one. Call before the run's logger opens ``log.jsonl``."""
    spec = trainer.schedule
    if not isinstance(spec, AutoSchedule):
        return None
    problem = auto_schedule_problem(spec, total_steps, trainer.cfg.parallel.strategy)
    if problem is not None:  # the config checked it for the budget; a resume may change it
        from evertrain.train.config import ConfigError

        raise ConfigError(problem)
    search = Search(trainer, spec, total_steps, getattr(trainer, "autolrs_state", None))
    if trainer.info.is_main:
        _drop_unchosen_records(Path(trainer.out_dir), len(search.chosen))
        if search.chosen:
            search.write_realised()
    return search


def resumed_search_state(schedule: Schedule, state: dict[str, Any]) -> dict[str, Any] | None:
    """The search state a resume continues from (``state`` is the checkpoint's training state),
    checked before the resume records anything: a run trained on another schedule cannot
    continue on an auto one (its steps so far have no place in a stage layout, and the realised
    schedule could not replay them)."""
    search_state = state.get("autolrs")
    if isinstance(schedule, AutoSchedule) and search_state is None and int(state["step"]) > 0:
        from evertrain.train.config import ConfigError

        raise ConfigError(
            f"schedule: this run trained {int(state['step'])} steps on another schedule, so it "
            "cannot resume on an auto one; start a new run with init_from (a fork) to search "
            "from its checkpoint"
        )
    return search_state


def search_checkpoint_state(trainer: Any) -> dict[str, Any] | None:
    """What a checkpoint stores of the run's search (``None`` for a fixed schedule)."""
    search = getattr(trainer, "search", None)
    return search.state_dict() if search is not None else None


__all__ = [
    "AutoSchedule",
    "Search",
    "attach_search",
    "auto_schedule_problem",
    "candidate_grid",
    "fit_exponential",
    "forecast_loss",
    "parse_auto_spec",
    "resumed_search_state",
    "search_checkpoint_state",
]
