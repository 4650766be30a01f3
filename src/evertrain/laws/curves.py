"""Loss curves and per-step learning rates: the inputs every law works on.

A law needs, for each curve, the learning rate at *every* optimizer step (``lr[k]`` is the LR of
the update at 0-based step ``k``, the Hugging Face LambdaLR convention used by
``evertrain.schedules``) and the loss at a few logged steps. Logs usually keep only every N-th
step, so the per-step LR comes from the schedule (a spec, a ``Schedule`` or a raw array), never
from interpolating the logged ``lr`` column.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evertrain.schedules import from_spec


class LawError(ValueError):
    """Bad input for a loss-curve law; the message names the field and how to fix it."""


@dataclass
class LossCurve:
    """One logged training run: losses at ``steps`` under the per-step learning rate ``lr``.

    ``lr`` has one entry per optimizer step from step 0 up to at least ``max(steps)``.
    """

    name: str
    steps: np.ndarray
    loss: np.ndarray
    lr: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.steps = np.asarray(self.steps)
        self.loss = np.asarray(self.loss, dtype=np.float64)
        self.lr = np.asarray(self.lr, dtype=np.float64)
        validate_curve(self)


def validate_curve(curve: LossCurve) -> None:
    """Raise :class:`LawError` when ``curve`` cannot be fitted or scored."""
    name = curve.name
    if curve.steps.ndim != 1 or curve.loss.ndim != 1:
        raise LawError(f"curve {name!r}: steps and loss must be 1-D arrays")
    if len(curve.steps) != len(curve.loss):
        raise LawError(
            f"curve {name!r}: steps has {len(curve.steps)} entries but loss has {len(curve.loss)}: "
            "give one loss per logged step"
        )
    if len(curve.steps) == 0:
        raise LawError(f"curve {name!r} has no logged points: give at least one (step, loss) row")
    if not np.issubdtype(curve.steps.dtype, np.integer):
        as_float = curve.steps.astype(np.float64)
        if not np.all(np.isfinite(as_float)) or not np.all(as_float == np.round(as_float)):
            raise LawError(f"curve {name!r}: steps must be whole optimizer steps (integers)")
        curve.steps = as_float.astype(np.int64)
    curve.steps = curve.steps.astype(np.int64)
    if np.any(curve.steps < 0):
        raise LawError(f"curve {name!r}: steps must be >= 0, got {int(curve.steps.min())}")
    if np.any(np.diff(curve.steps) <= 0):
        raise LawError(
            f"curve {name!r}: steps must be strictly increasing (sort the log, drop duplicates)"
        )
    bad = ~np.isfinite(curve.loss)
    if np.any(bad):
        raise LawError(
            f"curve {name!r}: loss is NaN/inf at step {int(curve.steps[bad][0])} "
            f"({int(bad.sum())} such points): drop those rows before fitting"
        )
    if np.any(curve.loss <= 0):
        raise LawError(f"curve {name!r}: losses must be > 0 (laws fit log-loss residuals)")
    validate_lr(curve.lr, f"curve {name!r}: lr")
    if len(curve.lr) <= int(curve.steps[-1]):
        raise LawError(
            f"curve {name!r}: lr has {len(curve.lr)} per-step values but the last logged step is "
            f"{int(curve.steps[-1])}: give the LR of every step 0..{int(curve.steps[-1])}"
        )


def validate_lr(lr: np.ndarray, what: str = "lr") -> None:
    """Per-step learning rates must be a finite, non-negative 1-D array."""
    if lr.ndim != 1 or len(lr) == 0:
        raise LawError(f"{what} must be a non-empty 1-D array of per-step learning rates")
    if not np.all(np.isfinite(lr)):
        raise LawError(f"{what} has NaN/inf values: every step needs a finite learning rate")
    if np.any(lr < 0):
        raise LawError(
            f"{what} has negative values (min {lr.min():g}): learning rates must be >= 0"
        )


def has_decay(curve: LossCurve) -> bool:
    """True when the LR drops somewhere after its first peak and a loss is logged after the drop."""
    last = int(curve.steps[-1])
    lr = curve.lr[: last + 1]
    peak = int(np.argmax(lr))
    drops = np.flatnonzero(lr[peak + 1 :] < lr[peak:-1]) + peak + 1
    return len(drops) > 0 and int(drops[0]) <= last


# --------------------------------------------------------------------------------------------
# Schedules -> per-step LR arrays
# --------------------------------------------------------------------------------------------


def lr_array(schedule: Any, n_steps: int, *, tokens_per_step: float | None = None) -> np.ndarray:
    """The per-step learning rate ``lr[k]`` for ``k = 0 .. n_steps-1`` of ``schedule``.

    ``schedule`` is a raw per-step LR array (returned as is, checked to cover ``n_steps``), an
    ``evertrain.schedules.Schedule`` or anything ``evertrain.schedules.from_spec`` accepts (a spec
    dict, ``"wsd:peak=3e-4,total=24000"``, a .yaml/.json path). A schedule in token units needs
    ``tokens_per_step``: step ``k`` then uses ``s(k * tokens_per_step)``.
    """
    if n_steps <= 0:
        raise LawError(f"n_steps={n_steps} must be >= 1")
    if isinstance(schedule, np.ndarray | list | tuple):
        lr = np.asarray(schedule, dtype=np.float64)
        validate_lr(lr)
        if len(lr) < n_steps:
            raise LawError(
                f"lr array has {len(lr)} steps but {n_steps} are needed: extend it or ask for fewer steps"
            )
        return lr[:n_steps]
    sched = _as_schedule(schedule)
    progress = np.arange(n_steps, dtype=np.float64)
    if getattr(sched, "unit", "steps") == "tokens":
        if tokens_per_step is None or tokens_per_step <= 0:
            raise LawError(
                "schedule is in token units: pass tokens_per_step (tokens per optimizer step) "
                "so step k can be evaluated at k * tokens_per_step tokens"
            )
        progress = progress * float(tokens_per_step)
    lr = np.asarray(sched(progress), dtype=np.float64)
    validate_lr(lr, f"schedule {schedule_label(schedule)}")
    return lr


def _as_schedule(schedule: Any) -> Any:
    if callable(schedule) and hasattr(schedule, "to_spec"):
        return schedule
    try:
        return from_spec(schedule)
    except ValueError as exc:  # ScheduleError is a ValueError: keep its message, our type
        raise LawError(f"bad schedule {schedule_label(schedule)}: {exc}") from exc


def schedule_label(schedule: Any) -> str:
    """A short human label for a schedule-like value (for legends and tables)."""
    if isinstance(schedule, str):
        return schedule
    if isinstance(schedule, Path):
        return schedule.name
    if isinstance(schedule, dict):
        items = ",".join(f"{k}={v}" for k, v in schedule.items() if k != "name")
        return f"{schedule.get('name', '?')}:{items}" if items else str(schedule.get("name", "?"))
    if hasattr(schedule, "to_spec"):
        return schedule_label(schedule.to_spec())
    if isinstance(schedule, np.ndarray):
        return f"lr-array[{len(schedule)}]"
    return repr(schedule)


def schedule_total(schedule: Any, *, tokens_per_step: float | None = None) -> int | None:
    """The planned number of optimizer steps of a schedule-like value; None when open-ended.

    An LR array's length, or the schedule's own ``total`` as the schedule library reads it (so
    a spec string, dict, file or ``Schedule`` says the same thing), rounded up; a schedule in
    token units is converted with ``tokens_per_step`` when it is given. A bad spec raises
    LawError naming it.
    """
    if isinstance(schedule, np.ndarray | list | tuple):
        return len(schedule)
    sched = _as_schedule(schedule)
    if sched.total is None:
        return None
    total = float(sched.total)
    if getattr(sched, "unit", "steps") == "tokens" and tokens_per_step:
        total /= float(tokens_per_step)
    return int(math.ceil(total))


# --------------------------------------------------------------------------------------------
# The shared real curves (Luo et al. 2025 MPL repository), per-step LR rebuilt from the README
# --------------------------------------------------------------------------------------------

SHARED_PEAK = 3e-4
SHARED_FLOOR = 3e-5
SHARED_WARMUP = 2160
SHARED_CURVES = (
    "constant_24000",
    "constant_72000",
    "cosine_24000",
    "cosine_72000",
    "wsd_20000_24000",
    "wsdld_20000_24000",
    "wsdcon_3",
    "wsdcon_9",
    "wsdcon_18",
)
SHARED_FIT = ("cosine_24000", "constant_24000", "wsdcon_9")
SHARED_TEST = tuple(name for name in SHARED_CURVES if name not in SHARED_FIT)


def shared_curve_total(name: str) -> int:
    """Total steps of a shared curve's run (16,000 for the two-stage ``wsdcon_*`` runs)."""
    name = Path(name).stem
    if name.startswith("wsdcon_"):
        return 16000
    match = re.fullmatch(r"(constant|cosine)_(\d+)|wsd(?:ld)?_\d+_(\d+)", name)
    if match is None:
        raise LawError(f"unknown shared curve {name!r}: expected one of {', '.join(SHARED_CURVES)}")
    return int(match.group(2) or match.group(3))


def shared_curve_lr(name: str, total: int | None = None) -> np.ndarray:
    """Per-step LR of a shared curve, exactly as its README gives it (float64, ``total`` steps).

    Every run warms up linearly over 2,160 steps, ``lr[i] = i * 3e-4 / 2159`` for i in 0..2159
    (so ``lr[0] = 0`` and ``lr[2159] = 3e-4``), then:

    * ``constant_T``: 3e-4;
    * ``cosine_T``: ``3e-5 + 0.5 (3e-4 - 3e-5)(1 + cos(pi (t - 2160) / (T - 2160)))``;
    * ``wsd_D_T``: 3e-4 until D, then geometric ``3e-4^((T-t)/(T-D)) 3e-5^((t-D)/(T-D))``;
    * ``wsdld_D_T``: 3e-4 until D, then linear from 3e-4 to 3e-5 at T;
    * ``wsdcon_X``: 3e-4 until step 8,000, then ``X * 1e-5`` (16,000 steps).
    """
    name = Path(name).stem
    total = shared_curve_total(name) if total is None else int(total)
    if total <= SHARED_WARMUP:
        raise LawError(f"total={total} must be longer than the {SHARED_WARMUP}-step warmup")
    t = np.arange(total, dtype=np.float64)
    lr = np.full(total, SHARED_PEAK)
    lr[:SHARED_WARMUP] = np.arange(SHARED_WARMUP) * SHARED_PEAK / (SHARED_WARMUP - 1)
    post = t >= SHARED_WARMUP
    if name.startswith("constant_"):
        pass
    elif name.startswith("cosine_"):
        phase = (t[post] - SHARED_WARMUP) / (total - SHARED_WARMUP)
        lr[post] = SHARED_FLOOR + 0.5 * (SHARED_PEAK - SHARED_FLOOR) * (1 + np.cos(np.pi * phase))
    elif name.startswith(("wsd_", "wsdld_")):
        decay_start = int(name.split("_")[1])
        decaying = t >= decay_start
        frac = (t[decaying] - decay_start) / (total - decay_start)
        if name.startswith("wsd_"):
            lr[decaying] = SHARED_PEAK ** (1 - frac) * SHARED_FLOOR**frac
        else:
            lr[decaying] = SHARED_PEAK * (1 - frac) + SHARED_FLOOR * frac
    elif name.startswith("wsdcon_"):
        lr[t >= 8000] = int(name.split("_")[1]) * 1e-5
    else:
        raise LawError(f"unknown shared curve {name!r}: expected one of {', '.join(SHARED_CURVES)}")
    return lr


def load_shared_curve(path: str | Path, *, drop_final: bool = True) -> LossCurve:
    """Load one shared CSV with its exact per-step LR; drop logged steps ``>= total`` by default.

    The paper's protocol keeps steps < 24,000 for the 24,000-step runs (the row at the last step
    is logged after the run ended); ``drop_final`` applies the same rule to every run.
    """
    path = Path(path)
    total = shared_curve_total(path.stem)
    steps, loss, _ = read_curve_csv(path)
    keep = steps < total if drop_final else np.ones(len(steps), dtype=bool)
    lr = shared_curve_lr(path.stem, max(total, int(steps.max()) + 1))
    return LossCurve(
        path.stem, steps[keep], loss[keep], lr, meta={"path": str(path), "total": total}
    )


#: Model sizes whose curves ship inside the package (``evertrain/laws/curves_data/<size>``: the
#: MPL repository's CSVs, MIT licence, with its README and LICENSE-source beside them).
SHARED_SIZES = ("25M", "100M")
_PACKAGED_CURVES = Path(__file__).resolve().with_name("curves_data")


def shared_curves_dir(size: str) -> Path:
    """The folder of the packaged shared curves of one model size (``"25M"`` or ``"100M"``)."""
    if size not in SHARED_SIZES:
        raise LawError(
            f"unknown shared curve size {size!r}: expected one of {', '.join(SHARED_SIZES)} "
            "(or pass the path of a folder with the CSVs)"
        )
    return _PACKAGED_CURVES / size


def load_shared_curves(
    source: str | Path, names: Sequence[str] = SHARED_CURVES
) -> dict[str, LossCurve]:
    """``{name: LossCurve}`` for the shared CSVs of one model size.

    ``source`` is a size name (``"25M"``, ``"100M"``: the copy packaged with evertrain, found
    wherever it is installed) or the path of a folder holding the CSVs. A folder that happens
    to be called ``25M`` in the working directory is read when given as a ``Path`` or as
    ``"./25M"``; the bare string is the size.
    """
    if isinstance(source, str) and source in SHARED_SIZES:
        directory = shared_curves_dir(source)
    else:
        directory = Path(source)
    if not directory.is_dir():
        raise LawError(
            f"loss-curve folder {directory} does not exist: pass a size "
            f"({', '.join(SHARED_SIZES)}) for the packaged curves, or a folder with the CSVs"
        )
    return {name: load_shared_curve(directory / f"{name}.csv") for name in names}


# --------------------------------------------------------------------------------------------
# CSV input
# --------------------------------------------------------------------------------------------


def read_curve_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read ``step,loss`` or ``step,lr,loss`` columns (header required) -> (steps, loss, lr|None)."""
    path = Path(path)
    if not path.is_file():
        raise LawError(f"curve file {path} does not exist")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise LawError(
            f"{path}: empty file; expected a header with columns step,loss (and optionally lr)"
        )
    header = [h.strip().lower() for h in rows[0]]
    if "step" not in header or "loss" not in header:
        raise LawError(
            f"{path}: header {rows[0]} must name the columns 'step' and 'loss' (and optionally 'lr')"
        )
    body = [r for r in rows[1:] if r and any(c.strip() for c in r)]
    try:
        table = np.array(
            [[float(c) if c.strip() else math.nan for c in r] for r in body], dtype=np.float64
        )
    except ValueError as exc:
        raise LawError(f"{path}: non-numeric value ({exc}); every cell must be a number") from exc
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] != len(header):
        raise LawError(f"{path}: every row needs {len(header)} columns ({','.join(header)})")
    steps = table[:, header.index("step")]
    loss = table[:, header.index("loss")]
    lr = table[:, header.index("lr")] if "lr" in header else None
    if not np.all(np.isfinite(steps)) or not np.all(steps == np.round(steps)):
        raise LawError(f"{path}: the step column must hold whole numbers")
    return steps.astype(np.int64), loss, lr


def _matches_shared(name: str, steps: np.ndarray, logged_lr: np.ndarray, n_steps: int) -> bool:
    """True when a CSV named like a shared curve logs exactly that curve's LR."""
    lr = shared_curve_lr(name, max(shared_curve_total(name), n_steps))
    return bool(np.allclose(lr[steps], logged_lr, rtol=1e-9, atol=0))


def load_curve(
    path: str | Path,
    schedule: Any = None,
    *,
    name: str | None = None,
    tokens_per_step: float | None = None,
) -> LossCurve:
    """Load a CSV curve; take its per-step LR from ``schedule``, else from its ``lr`` column.

    Without a schedule the ``lr`` column must hold every step 0..max(step) (a dense log); a
    sparse log (e.g. every 128 steps) needs the schedule it was trained with.
    """
    path = Path(path)
    steps, loss, lr_col = read_curve_csv(path)
    n_steps = int(steps.max()) + 1
    if schedule is not None:
        lr = lr_array(schedule, n_steps, tokens_per_step=tokens_per_step)
    elif (
        path.stem in SHARED_CURVES
        and lr_col is not None
        and _matches_shared(path.stem, steps, lr_col, n_steps)
    ):
        # a shared curve (sparse log): its README gives the exact per-step schedule
        lr = shared_curve_lr(path.stem, max(shared_curve_total(path.stem), n_steps))
    elif lr_col is not None:
        if len(steps) != n_steps or not np.array_equal(steps, np.arange(n_steps)):
            raise LawError(
                f"{path}: the lr column is logged at {len(steps)} of {n_steps} steps; a law needs the LR "
                "of every step: pass the run's schedule spec (--schedule) with this curve"
            )
        lr = lr_col
    else:
        raise LawError(f"{path}: no lr column and no schedule: pass the schedule spec the run used")
    return LossCurve(name or path.stem, steps, loss, lr, meta={"path": str(path)})
