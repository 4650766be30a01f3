"""Continual pre-training recipes by name, with the published defaults and their sources.

A recipe answers one question: *a model pre-trained on D0 exists; D1 arrives; how do we train
the next stage?*  Each recipe returns a :class:`StageRecipe`: the LR schedule of the stage (a
library :class:`~evertrain.schedules.Schedule` in token units, progress counted from the start
of the stage),
the data mixture (weight per dataset), the stage's token budget and where the weights come from.

=================  ===========================================================================
recipe             what the stage does (defaults)
=================  ===========================================================================
``retrain``        from scratch on D0 ∪ D1 with the base's total + the stage's tokens, mixture
                   proportional to the tokens each stage would have seen; linear warmup 1 %,
                   cosine to 10 % of peak. The baseline every other recipe is judged against.
``finetune``       from the base's final checkpoint, constant LR = the base's final LR, no
                   re-warming and no replay (the "naive" continuation of Ibrahim et al., 2024).
``rewarm``         from the base's final checkpoint, linear warmup over 1 % of the stage back
                   to the base's peak, cosine decay to 10 % of peak (Gupta et al., 2023;
                   Ibrahim et al., 2024, §5: re-warm + re-decay).
``rewarm+replay``  ``rewarm`` plus 25 % replay of D0 (Ibrahim et al., 2024 use 5 % for a weak
                   shift and 25 % for a strong one such as English → code / German).
``infinite+replay`` the base was trained with an *infinite* schedule (warmup → cooldown →
                   constant, anneal only for a release); the stage starts from the base's
                   pre-anneal checkpoint, keeps the constant LR with 25 % replay and anneals
                   linearly over its last 10 % to the floor for a release (Singh et al., 2025;
                   Ibrahim et al., 2024, §7).
=================  ===========================================================================

References
----------
- Ibrahim, Thérien, Gupta et al. (2024). *Simple and Scalable Strategies to Continually
  Pre-train Large Language Models.* TMLR. arXiv:2403.08763.
- Gupta, Thérien, Ibrahim et al. (2023). *Continual Pre-Training of Large Language Models: How
  to (re)warm your model?* arXiv:2308.04014.
- Singh, Thérien, Gupta et al. (2025). *Beyond Cosine Decay: On the effectiveness of Infinite
  Learning Rate Schedule for Continual Pre-training.* arXiv:2503.02844.
- Wen, Li, Liu et al. (2024). *Understanding Warmup-Stable-Decay Learning Rates: A River Valley
  Loss Landscape Perspective* (WSD-S). arXiv:2410.05192.
- Hägele, Bakouch, Kosson et al. (2024). *Scaling Laws and Compute-Optimal Training Beyond Fixed
  Training Durations* (WSD with short decays). arXiv:2405.18392.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from evertrain.schedules import Schedule, ScheduleError, get

RECIPES = ("retrain", "finetune", "rewarm", "rewarm+replay", "infinite+replay")

#: Published defaults; every key can be overridden per recipe (``build_recipe(..., replay=0.05)``).
DEFAULTS: dict[str, dict[str, Any]] = {
    "retrain": {
        "peak": None,
        "warmup_fraction": 0.01,
        "floor_fraction": 0.1,
        "decay_shape": "cosine",
    },
    "finetune": {"lr": None},
    "rewarm": {
        "peak": None,
        "warmup_fraction": 0.01,
        "floor_fraction": 0.1,
        "decay_shape": "cosine",
    },
    "rewarm+replay": {
        "peak": None,
        "warmup_fraction": 0.01,
        "floor_fraction": 0.1,
        "decay_shape": "cosine",
        "replay": 0.25,
    },
    "infinite+replay": {
        "constant_lr": None,
        "anneal_fraction": 0.1,
        "floor": None,
        "anneal_shape": "linear",
        "replay": 0.25,
    },
}

CITATIONS: dict[str, str] = {
    "retrain": "Ibrahim et al. 2024 (arXiv:2403.08763), the union baseline",
    "finetune": "Ibrahim et al. 2024 (arXiv:2403.08763), constant-LR continuation without re-warming",
    "rewarm": "Gupta et al. 2023 (arXiv:2308.04014); Ibrahim et al. 2024 (arXiv:2403.08763)",
    "rewarm+replay": "Ibrahim et al. 2024 (arXiv:2403.08763): 5% replay for weak, 25% for strong shifts",
    "infinite+replay": "Singh et al. 2025 (arXiv:2503.02844); Ibrahim et al. 2024 §7 (arXiv:2403.08763)",
}

DECAY_SHAPES = ("cosine", "linear", "wsd")
#: Length of the final decay when a re-warm uses ``decay_shape="wsd"`` (Hägele et al., 2024).
WSD_DECAY_FRACTION = 0.2
ANNEAL_SHAPES = ("linear", "cosine", "1-sqrt", "exponential")


class RecipeError(ValueError):
    """A recipe name or parameter is invalid; the message names the field and the fix."""


@dataclass(frozen=True)
class BaseModelInfo:
    """What a recipe needs to know about the pre-trained base model.

    ``peak``: the base's peak LR; ``final_lr``: the LR of its last step (what ``finetune``
    continues at); ``constant_lr``: the LR of its constant phase (infinite / WSD base; what
    ``infinite+replay`` continues at); ``floor``: the LR a release anneals to; ``tokens``: the
    tokens the base was trained on (``retrain`` trains ``tokens + stage_tokens``).
    """

    peak: float
    final_lr: float
    constant_lr: float
    floor: float
    tokens: int

    def __post_init__(self) -> None:
        for name in ("peak", "final_lr", "constant_lr", "floor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise RecipeError(f"base {name}={value!r} must be a finite number >= 0")
        if self.peak <= 0:
            raise RecipeError(f"base peak={self.peak!r} must be > 0: pass the base run's peak LR")
        if self.tokens < 0:
            raise RecipeError(f"base tokens={self.tokens!r} must be >= 0")


@dataclass(frozen=True)
class StageRecipe:
    """One stage produced by a recipe.

    ``schedule`` is an :class:`evertrain.schedules.Schedule` in token units, progress counted
    from the first token of this stage; ``mixture`` maps dataset names to weights summing to 1; ``init``
    says where the weights come from: ``"scratch"``, ``"final"`` (the base's last checkpoint) or
    ``"pre-anneal"`` (the base's named checkpoint at the end of its constant phase).
    """

    recipe: str
    schedule: Schedule
    mixture: dict[str, float]
    tokens: int
    init: Literal["scratch", "final", "pre-anneal"]
    params: dict[str, Any] = field(default_factory=dict)
    citation: str = ""


def replay_mixture(old: list[str], new: list[str], replay: float) -> dict[str, float]:
    """Mixture with ``replay`` of the batch from ``old`` datasets (split evenly) and the rest
    from ``new`` (split evenly).

    >>> replay_mixture(["d0"], ["d1"], 0.25)
    {'d0': 0.25, 'd1': 0.75}
    """
    if not new:
        raise RecipeError(
            "new datasets are empty: a continual stage needs at least one new dataset"
        )
    if not (0.0 <= replay < 1.0):
        raise RecipeError(
            f"replay={replay!r} must be in [0, 1): it is the share of old data per batch"
        )
    if replay > 0 and not old:
        raise RecipeError(
            f"replay={replay} but there is no old dataset to replay: set replay=0 or pass old data"
        )
    overlap = set(old) & set(new)
    if overlap:
        raise RecipeError(
            f"datasets {sorted(overlap)} are both old and new: give each dataset one role"
        )
    mixture: dict[str, float] = {}
    if replay > 0:
        for name in old:
            mixture[name] = replay / len(old)
    for name in new:
        mixture[name] = (1.0 - replay) / len(new)
    return mixture


def token_schedule(name: str, **params: Any) -> Schedule:
    """The library schedule ``name`` (``evertrain.schedules.get``) in token units; its error
    becomes a :class:`RecipeError`."""
    try:
        return get(name, unit="tokens", **params)
    except ScheduleError as error:
        raise RecipeError(str(error)) from None


def rewarm_schedule(
    *,
    peak: float,
    tokens: int,
    warmup_fraction: float,
    floor_fraction: float,
    decay_shape: str = "cosine",
) -> Schedule:
    """Linear warmup from 0 to ``peak`` over ``warmup_fraction * tokens``, then ``decay_shape``
    decay to ``floor_fraction * peak`` at ``tokens``: the library's ``cosine`` / ``linear``
    schedule, or ``wsd`` (constant ``peak`` after the warmup, linear decay over the last 20 %).
    """
    if decay_shape not in DECAY_SHAPES:
        raise RecipeError(f"decay_shape={decay_shape!r} is not one of {DECAY_SHAPES}")
    _check_fraction("warmup_fraction", warmup_fraction, upper=1.0, upper_open=True)
    _check_fraction("floor_fraction", floor_fraction, upper=1.0)
    _check_positive("peak", peak)
    shape = {
        "peak": float(peak),
        "floor": _clean(peak * floor_fraction),
        "total": int(tokens),
        "warmup": int(round(warmup_fraction * tokens)),
    }
    if decay_shape == "wsd":
        if warmup_fraction + WSD_DECAY_FRACTION > 1:
            raise RecipeError(
                f"warmup_fraction={warmup_fraction} leaves no room for the WSD decay: use < 0.8"
            )
        return token_schedule(
            "wsd", **shape, decay_fraction=WSD_DECAY_FRACTION, decay_shape="linear"
        )
    return token_schedule(decay_shape, **shape)


def constant_then_anneal_schedule(
    *,
    constant_lr: float,
    tokens: int,
    anneal_fraction: float,
    floor: float,
    anneal_shape: str = "linear",
) -> Schedule:
    """Constant ``constant_lr`` and, over the last ``anneal_fraction`` of the stage, an anneal to
    ``floor``: the library's ``wsd`` without warmup (the continuation of an infinite schedule),
    or ``constant`` when ``anneal_fraction=0``."""
    if anneal_shape not in ANNEAL_SHAPES:
        raise RecipeError(f"anneal_shape={anneal_shape!r} is not one of {ANNEAL_SHAPES}")
    _check_fraction("anneal_fraction", anneal_fraction, upper=1.0)
    _check_positive("constant_lr", constant_lr)
    if floor > constant_lr:
        raise RecipeError(
            f"floor={floor} is above constant_lr={constant_lr}: set floor <= constant_lr"
        )
    if anneal_fraction == 0:
        return token_schedule("constant", value=float(constant_lr))
    return token_schedule(
        "wsd",
        peak=float(constant_lr),
        floor=float(floor),
        total=int(tokens),
        warmup=0,
        decay_fraction=float(anneal_fraction),
        decay_shape=anneal_shape,
    )


def infinite_schedule(
    *,
    peak: float,
    tokens: int,
    warmup_fraction: float = 0.02,
    cooldown_fraction: float = 0.2,
    constant_fraction_of_peak: float = 0.5,
    anneal_fraction: float = 0.1,
    floor_fraction: float = 0.1,
) -> Schedule:
    """The library's ``infinite`` schedule for a base run (Singh et al., 2025): linear warmup
    to ``peak``, linear cooldown to ``constant = constant_fraction_of_peak * peak``, constant,
    and a linear anneal to ``floor_fraction * peak`` that starts at
    ``pre_anneal_tokens(tokens, anneal_fraction)`` (where a continual stage picks up).

    ``anneal_fraction=0`` keeps the constant LR to the end (no anneal); ``cooldown_fraction=0``
    warms up to ``peak`` and steps down to the constant LR there.
    """
    for name, value in (
        ("warmup_fraction", warmup_fraction),
        ("cooldown_fraction", cooldown_fraction),
        ("anneal_fraction", anneal_fraction),
        ("constant_fraction_of_peak", constant_fraction_of_peak),
        ("floor_fraction", floor_fraction),
    ):
        _check_fraction(name, value, upper=1.0)
    if warmup_fraction + cooldown_fraction + anneal_fraction > 1.0:
        raise RecipeError(
            f"warmup_fraction + cooldown_fraction + anneal_fraction = "
            f"{warmup_fraction + cooldown_fraction + anneal_fraction:g} > 1: shorten one phase"
        )
    if floor_fraction > constant_fraction_of_peak:
        raise RecipeError(
            "floor_fraction is above constant_fraction_of_peak: the anneal must go down"
        )
    _check_positive("peak", peak)
    anneal = int(tokens) - pre_anneal_tokens(tokens, anneal_fraction)
    return token_schedule(
        "infinite",
        peak=float(peak),
        constant=_clean(constant_fraction_of_peak * peak),
        warmup=warmup_fraction * tokens,
        cooldown=cooldown_fraction * tokens,
        cooldown_shape="linear",
        total=int(tokens),
        anneal=anneal,
        anneal_shape="linear",
        floor=infinite_floor(peak, floor_fraction),
    )


def infinite_floor(peak: float, floor_fraction: float) -> float:
    """The floor an infinite schedule's release anneal reaches (whether or not it anneals)."""
    return _clean(floor_fraction * peak)


def pre_anneal_tokens(tokens: int, anneal_fraction: float) -> int:
    """Token count at which an infinite schedule of ``tokens`` starts its release anneal."""
    return int(round(tokens * (1.0 - anneal_fraction)))


def build_recipe(
    name: str,
    *,
    base: BaseModelInfo,
    stage_tokens: int,
    old: list[str],
    new: list[str],
    **overrides: Any,
) -> StageRecipe:
    """The stage a recipe trains after a base model on ``old`` exists and ``new`` arrives.

    ``overrides`` replace the published defaults in :data:`DEFAULTS` (unknown keys are an
    error naming the allowed ones). ``stage_tokens`` is the new stage's budget; ``retrain``
    trains ``base.tokens + stage_tokens`` from scratch.
    """
    if name not in DEFAULTS:
        raise RecipeError(f"recipe={name!r} is unknown: choose one of {', '.join(RECIPES)}")
    unknown = set(overrides) - set(DEFAULTS[name])
    if unknown:
        raise RecipeError(
            f"recipe {name!r} has no parameter {sorted(unknown)}: allowed are {sorted(DEFAULTS[name])}"
        )
    if not isinstance(stage_tokens, int) or stage_tokens <= 0:
        raise RecipeError(f"stage_tokens={stage_tokens!r} must be a positive integer")
    params = {**DEFAULTS[name], **overrides}
    citation = CITATIONS[name]

    if name == "retrain":
        total = base.tokens + stage_tokens
        if base.tokens <= 0:
            raise RecipeError(
                "base tokens=0: retrain needs the base's token budget to match compute"
            )
        peak, schedule = _warmup_and_decay(params, base, total)
        # The union D0 ∪ D1 in the proportions the continual pipeline sees them.
        mixture = {n: base.tokens / total / len(old) for n in old}
        mixture.update({n: stage_tokens / total / len(new) for n in new})
        return StageRecipe(
            name, schedule, mixture, total, "scratch", {**params, "peak": peak}, citation
        )

    replay = float(params.get("replay", 0.0))
    mixture = replay_mixture(old, new, replay)
    if name == "finetune":
        lr = params["lr"] if params["lr"] is not None else base.final_lr
        _check_positive("lr", lr)
        schedule = token_schedule("constant", value=float(lr))
        return StageRecipe(
            name, schedule, mixture, stage_tokens, "final", {**params, "lr": lr}, citation
        )
    if name in ("rewarm", "rewarm+replay"):
        peak, schedule = _warmup_and_decay(params, base, stage_tokens)
        return StageRecipe(
            name, schedule, mixture, stage_tokens, "final", {**params, "peak": peak}, citation
        )
    # infinite+replay
    constant_lr = params["constant_lr"] if params["constant_lr"] is not None else base.constant_lr
    floor = params["floor"] if params["floor"] is not None else base.floor
    schedule = constant_then_anneal_schedule(
        constant_lr=constant_lr,
        tokens=stage_tokens,
        anneal_fraction=params["anneal_fraction"],
        floor=floor,
        anneal_shape=params["anneal_shape"],
    )
    resolved = {**params, "constant_lr": constant_lr, "floor": floor}
    return StageRecipe(name, schedule, mixture, stage_tokens, "pre-anneal", resolved, citation)


def _warmup_and_decay(
    params: dict[str, Any], base: BaseModelInfo, tokens: int
) -> tuple[float, Schedule]:
    """The peak (given, or the base's) and the warmup-then-decay schedule of ``retrain`` and
    ``rewarm``."""
    peak = params["peak"] if params["peak"] is not None else base.peak
    schedule = rewarm_schedule(
        peak=peak,
        tokens=tokens,
        warmup_fraction=params["warmup_fraction"],
        floor_fraction=params["floor_fraction"],
        decay_shape=params["decay_shape"],
    )
    return peak, schedule


def _clean(value: float) -> float:
    """``3e-3 * 0.1`` is 0.00030000000000000003: round products to 12 significant digits so
    specs read (and compare) the way they were meant."""
    return float(f"{value:.12g}")


def _check_fraction(name: str, value: float, *, upper: float, upper_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
    ok = ok and (value < upper if upper_open else value <= upper)
    if not ok:
        bracket = ")" if upper_open else "]"
        raise RecipeError(f"{name}={value!r} must be in [0, {upper:g}{bracket}")


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise RecipeError(f"{name}={value!r} must be a finite number > 0")
