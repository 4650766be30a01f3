"""A continual pre-training plan: an ordered list of stages, validated like every config.

Stage 0 pre-trains from scratch; every later stage continues the previous one (its final or its
pre-anneal checkpoint) on new data, with replay of every earlier stage's data and a schedule:

- ``rewarm``: linear warmup over ``warmup_fraction`` of the stage to ``peak``, then cosine,
  linear or WSD (constant, then a linear decay over the last 20 %) decay to
  ``floor_fraction * peak`` (Gupta et al., 2023; Ibrahim et al., 2024);
- ``continue``: the previous stage used an ``infinite`` schedule; stay at its constant LR and
  anneal over the last ``anneal_fraction`` only for a release (Singh et al., 2025);
- ``finetune``: constant LR at the previous stage's final LR (no re-warming);
- ``cosine`` / ``infinite``: for stage 0 (a cosine run, or an infinite one that later stages can
  ``continue``);
- any explicit ``evertrain.schedules`` spec (dict or string), progress in the stage's own units.

Example (YAML)::

    out_dir: runs/english-then-code
    peak: 3.0e-3
    model: {n_layer: 2, n_head: 4, d_model: 128, seq_len: 128}
    train: {batch_size: 16, device: cpu, eval_tokens: 32768}
    stages:
      - {name: base, datasets: {english: data/english}, tokens: 400000, schedule: infinite}
      - {name: code, datasets: {code: data/code}, tokens: 400000, schedule: continue, replay: 0.25}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evertrain import _yaml
from evertrain.continual import recipes as R
from evertrain.schedules import Schedule, ScheduleError, from_spec

# torch-free: the trainer's own budget rule and step size
from evertrain.train.budget import total_steps
from evertrain.train.config import spec_numbers, tokens_per_step
from evertrain.train.config_paths import resolve_plan_paths

NAMED_SCHEDULES = ("rewarm", "continue", "finetune", "cosine", "infinite")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]+$")


def whole_steps(tokens: int, step: int) -> int:
    """The tokens a run with ``budget_tokens=tokens`` trains: whole optimizer steps of ``step``
    tokens, by the trainer's own rule (:func:`evertrain.train.budget.total_steps`, at least one)."""
    return max(1, total_steps(tokens, step)) * step


class PlanError(ValueError):
    """The plan is invalid; the message names the field (``stages.1.replay``) and the fix."""


class Stage(BaseModel):
    """One stage of a plan: its new datasets, token budget, schedule and mixture."""

    model_config = ConfigDict(extra="forbid")

    name: str
    datasets: dict[str, str] = Field(description="new datasets of this stage: name -> prepared dir")
    tokens: int = Field(gt=0, description="tokens trained in this stage")
    schedule: str | dict[str, Any] = "rewarm"
    replay: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of each batch from earlier stages' data"
    )
    mixture: dict[str, float | str | dict[str, Any]] | None = Field(
        None, description="explicit mixture (overrides replay): dataset -> weight or schedule spec"
    )
    peak: float | None = Field(
        None, gt=0, description="peak LR of a rewarm (default: the plan's peak)"
    )
    warmup_fraction: float = Field(0.01, ge=0.0, lt=1.0)
    floor_fraction: float = Field(0.1, ge=0.0, le=1.0)
    decay_shape: Literal["cosine", "linear", "wsd"] = "cosine"
    anneal_fraction: float = Field(0.1, ge=0.0, le=1.0)
    init: str = Field("previous", description="'previous' (default), 'scratch' or a checkpoint dir")

    @field_validator("name")
    @classmethod
    def _name_is_a_directory_name(cls, value: str) -> str:
        if not _NAME_PATTERN.match(value):
            raise ValueError(f"name={value!r} must use only letters, digits and _ . + -")
        return value

    @field_validator("datasets")
    @classmethod
    def _datasets_not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("datasets is empty: give at least one {name: prepared_dir}")
        for name in value:
            if not _NAME_PATTERN.match(name):
                raise ValueError(f"dataset name {name!r} must use only letters, digits and _ . + -")
        return value


class ExternalBase(BaseModel):
    """What is known of a base model this plan did not train (``model: {hf: DIR}``): it has no
    recorded LR history, so the plan states it (each field optional; see :func:`external_base_info`)."""

    model_config = ConfigDict(extra="forbid")

    peak_lr: float | None = Field(
        None, gt=0, description="the base's peak LR: what a stage-0 rewarm re-warms to"
    )
    final_lr: float | None = Field(
        None, gt=0, description="the base's last LR: what a stage-0 finetune continues at"
    )
    datasets: dict[str, str] = Field(
        default_factory=dict,
        description="data like the base's own pre-training data: the old data stage 0 replays",
    )


class Plan(BaseModel):
    """An ordered list of stages sharing a model, an output folder and trainer settings.

    ``train`` holds any other ``evertrain.train.TrainConfig`` fields (``batch_size``, ``device``,
    ``eval_tokens``, ``seed``, ``optimizer`` ...) applied to every stage. With
    ``model: {hf: DIR, seq_len: N}`` stage 0 continues that Hugging Face model's weights (an
    external base, described by ``base``) instead of training from scratch.
    """

    model_config = ConfigDict(extra="forbid")

    out_dir: str
    peak: float = Field(3e-3, gt=0, description="peak LR of stage 0 and of re-warms")
    model: dict[str, Any] = Field(default_factory=dict)
    base: ExternalBase | None = None
    train: dict[str, Any] = Field(default_factory=dict)
    #: validation points per stage; >= 10 shows a re-warm's spike and recovery (each costs
    #: ``train.eval_tokens`` per dataset, 65,536 by default, so the default stays 4)
    evals_per_stage: int = Field(4, ge=1, description="evaluations per stage (on every dataset)")
    stages: list[Stage] = Field(min_length=1)

    @property
    def external_base(self) -> bool:
        """True when stage 0 continues a model this plan did not train (``model: {hf: DIR}``)."""
        return isinstance(self.model, dict) and "hf" in self.model

    @model_validator(mode="after")
    def _stages_are_consistent(self) -> Plan:
        seen_stages: set[str] = set()
        seen_datasets: dict[str, str] = {}
        if self.base is not None and not self.external_base:
            raise ValueError(
                "base: describes an external base model, which needs model: {hf: DIR, seq_len: N}; "
                "remove base or set model.hf"
            )
        for dataset in self.base.datasets if self.base else {}:
            if not _NAME_PATTERN.match(dataset):
                raise ValueError(
                    f"base.datasets: name {dataset!r} must use only letters, digits and _ . + -"
                )
            seen_datasets[dataset] = "base"
        for index, stage in enumerate(self.stages):
            where = f"stages.{index}"
            if stage.name in seen_stages:
                raise ValueError(
                    f"{where}.name={stage.name!r} is used twice: stage names must be unique"
                )
            seen_stages.add(stage.name)
            for dataset in stage.datasets:
                if dataset in seen_datasets:
                    raise ValueError(
                        f"{where}.datasets: {dataset!r} already belongs to stage {seen_datasets[dataset]!r}: "
                        "rename it (each dataset is new in exactly one stage)"
                    )
            old = list(seen_datasets)
            for dataset in stage.datasets:
                seen_datasets[dataset] = stage.name
            if index == 0:
                if stage.replay > 0 and not old:
                    raise ValueError(
                        f"{where}.replay={stage.replay}: stage 0 has nothing to replay; set 0"
                        + (
                            " or list the base's data under base.datasets"
                            if self.external_base
                            else ""
                        )
                    )
                if stage.init == "previous":
                    stage.init = "scratch"  # or, with model.hf, the model directory's weights
                continues = () if self.external_base else ("continue", "finetune")
                if isinstance(stage.schedule, str) and stage.schedule in continues:
                    raise ValueError(
                        f"{where}.schedule={stage.schedule!r} needs a previous stage: use 'cosine' or 'infinite'"
                    )
                if stage.schedule == "continue":  # an external base never ran our infinite schedule
                    raise ValueError(
                        f"{where}.schedule='continue' needs a base trained on an 'infinite' schedule "
                        "by this plan; an external base has none: use 'rewarm' or 'finetune'"
                    )
            if stage.mixture is not None:
                unknown = set(stage.mixture) - set(seen_datasets)
                if unknown:
                    raise ValueError(
                        f"{where}.mixture names {sorted(unknown)}, not datasets of this or an earlier stage "
                        f"(known: {sorted(seen_datasets)})"
                    )
                if stage.replay:
                    raise ValueError(f"{where}: set either replay or mixture, not both")
            if stage.replay > 0 and not old:
                raise ValueError(f"{where}.replay={stage.replay} but no earlier dataset exists")
            if isinstance(stage.schedule, dict) or stage.schedule not in NAMED_SCHEDULES:
                # An explicit spec is checked with the plan, not when its stage comes to train.
                try:
                    _explicit_schedule(stage.schedule, f"{where}.schedule")
                except PlanError as error:
                    raise ValueError(str(error)) from None
            if stage.schedule == "continue" and index > 0:
                previous = self.stages[index - 1].schedule
                if previous not in ("infinite", "continue"):
                    raise ValueError(
                        f"{where}.schedule='continue' needs the previous stage on an 'infinite' (or "
                        f"'continue') schedule, not {previous!r}: use 'rewarm' or change stage {index - 1}"
                    )
        return self

    @property
    def datasets(self) -> dict[str, str]:
        """Every dataset of the plan, in stage order."""
        merged: dict[str, str] = dict(self.base.datasets) if self.base else {}
        for stage in self.stages:
            merged.update(stage.datasets)
        return merged

    def old_datasets(self, index: int) -> list[str]:
        """Names of the datasets of stages before ``index`` (an external base's first)."""
        base = list(self.base.datasets) if self.base else []
        return base + [name for stage in self.stages[:index] for name in stage.datasets]

    def stage_mixture(self, index: int) -> dict[str, Any]:
        """The mixture of stage ``index``: explicit, or ``replay`` split over earlier data."""
        stage = self.stages[index]
        if stage.mixture is not None:
            return dict(stage.mixture)
        try:
            return R.replay_mixture(self.old_datasets(index), list(stage.datasets), stage.replay)
        except R.RecipeError as error:
            raise PlanError(f"stages.{index}: {error}") from None

    @property
    def tokens_per_step(self) -> int:
        """Tokens of one optimizer step of every stage (``batch_size * grad_accum * seq_len``)."""
        return tokens_per_step({**self.train, "model": self.model})

    def stage_tokens(self, index: int) -> int:
        """The tokens stage ``index`` trains: its ``tokens`` rounded up to whole optimizer steps,
        as the trainer rounds ``budget_tokens``; its named schedule ends exactly there."""
        return whole_steps(self.stages[index].tokens, self.tokens_per_step)

    def stage_schedule(self, index: int, previous: R.BaseModelInfo | None = None) -> Schedule:
        """The schedule of stage ``index`` (token units from the stage's first token).

        A named schedule spans :meth:`stage_tokens` (the tokens the trainer runs), so a plan
        never trains past its schedule's end nor stops before it. ``previous`` describes the LR
        state of stage ``index - 1`` (needed by ``finetune`` and ``continue``).
        """
        stage = self.stages[index]
        schedule = stage.schedule
        tokens = self.stage_tokens(index)
        try:
            if isinstance(schedule, dict) or schedule not in NAMED_SCHEDULES:
                return _explicit_schedule(schedule, f"stages.{index}.schedule")
            peak = stage.peak or self.peak
            if schedule == "rewarm" and index == 0 and previous is not None:
                peak = stage.peak or previous.peak  # an external base's (external_base_info)
            if schedule in ("rewarm", "cosine"):
                return R.rewarm_schedule(
                    peak=peak,
                    tokens=tokens,
                    warmup_fraction=stage.warmup_fraction,
                    floor_fraction=stage.floor_fraction,
                    decay_shape=stage.decay_shape,
                )
            if schedule == "infinite":
                return R.infinite_schedule(
                    peak=peak,
                    tokens=tokens,
                    anneal_fraction=stage.anneal_fraction,
                    floor_fraction=stage.floor_fraction,
                )
            if previous is None:
                raise PlanError(
                    f"stages.{index}.schedule={schedule!r} needs the previous stage's LR state"
                )
            if schedule == "finetune":
                return R.token_schedule("constant", value=previous.final_lr)
            # continue
            return R.constant_then_anneal_schedule(
                constant_lr=previous.constant_lr,
                tokens=tokens,
                anneal_fraction=stage.anneal_fraction,
                floor=previous.floor,
            )
        except R.RecipeError as error:
            raise PlanError(f"stages.{index}: {error}") from None

    def release_floor(self, index: int, previous: R.BaseModelInfo | None = None) -> float | None:
        """The LR a release of stage ``index`` anneals to, when the stage knows it without
        reaching it: an ``infinite`` stage's ``floor_fraction * peak`` (also with
        ``anneal_fraction=0``, where the schedule stays constant to the end), a ``continue``
        stage's inherited floor. ``None``: the schedule's value at the stage's end."""
        stage = self.stages[index]
        if stage.schedule == "infinite":
            return R.infinite_floor(stage.peak or self.peak, stage.floor_fraction)
        if stage.schedule == "continue" and previous is not None:
            return previous.floor
        return None

    def init_checkpoint_kind(self, index: int) -> str:
        """``scratch``, ``final`` or ``pre-anneal`` (``continue`` picks up before the anneal)."""
        stage = self.stages[index]
        if stage.init == "scratch" or index == 0:
            return "scratch"
        if stage.init != "previous":
            return "path"
        return "pre-anneal" if stage.schedule == "continue" else "final"


def external_base_info(plan: Plan) -> tuple[R.BaseModelInfo | None, list[str]]:
    """The LR state stage 0 continues from when the plan's base is external (``model.hf``), and
    the warnings to show (at most one line per missing field a stage-0 schedule needs).

    An external base has no recorded LR history, so ``base.peak_lr`` / ``base.final_lr`` state
    it. Missing, the recipe's documented default is used: a ``rewarm`` re-warms to the plan's
    ``peak`` (default 3e-3), a ``finetune`` continues at ``floor_fraction * peak`` (the LR a
    rewarm would end at); each default is announced unless the plan states the value it comes
    from (``stages.0.peak`` or ``peak`` for a re-warm). ``(None, [])`` for a plan that trains its
    own base.
    """
    if not plan.external_base:
        return None, []
    base = plan.base or ExternalBase()
    stage = plan.stages[0]
    peak_written = stage.peak is not None or "peak" in plan.model_fields_set
    peak = base.peak_lr or stage.peak or plan.peak
    warnings: list[str] = []
    if stage.schedule == "rewarm" and base.peak_lr is None and not peak_written:
        warnings.append(
            f"base.peak_lr is not set: the external base {plan.model['hf']} has no recorded LR "
            f"history, so stage {stage.name!r} re-warms to the plan's default peak {plan.peak:g}; "
            "set base.peak_lr to the base's peak LR (or peak / stages.0.peak)"
        )
    final = base.final_lr
    if final is None:
        final = R.infinite_floor(peak, stage.floor_fraction)
        if stage.schedule == "finetune":
            warnings.append(
                f"base.final_lr is not set: the external base {plan.model['hf']} has no recorded "
                f"LR history, so stage {stage.name!r} fine-tunes at floor_fraction * peak = {final:g}; "
                "set base.final_lr to the base's last LR"
            )
    info = R.BaseModelInfo(peak=peak, final_lr=final, constant_lr=final, floor=final, tokens=0)
    return info, warnings


def load_plan(source: str | Path | dict[str, Any]) -> Plan:
    """Validate a plan from a dict or a YAML/JSON file; errors become :class:`PlanError`
    naming the field, e.g. ``stages.1.replay: Input should be less than 1``."""
    if isinstance(source, dict):
        raw = source
    else:
        path = Path(source)
        if not path.is_file():
            raise PlanError(f"plan file {path} does not exist: pass the path of a YAML plan")
        try:
            raw = _yaml.load(path.read_text())
        except _yaml.YAMLError as error:
            raise PlanError(f"plan file {path} is not valid YAML: {error}") from None
        if not isinstance(raw, dict):
            raise PlanError(f"plan file {path} must hold a mapping with out_dir, model, stages")
        raw = resolve_plan_paths(raw, path.parent)  # paths in a plan: from the plan's folder
    try:
        return Plan.model_validate(raw)
    except ValidationError as error:
        raise PlanError(_format_validation_error(error)) from None


def _explicit_schedule(spec: str | dict[str, Any], where: str) -> Schedule:
    """A stage's own schedule spec, parsed (numbers written as text read as numbers)."""
    try:
        return from_spec(spec_numbers(spec) if isinstance(spec, dict) else spec)
    except ScheduleError as error:
        raise PlanError(f"{where}: {spec!r} is not a valid schedule ({error})") from None


def _format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        # Plan-wide checks name their field themselves ("stages.1.schedule: ...").
        lines.append(f"{location}: {message}" if location else message)
    return "invalid plan: " + "; ".join(lines)
