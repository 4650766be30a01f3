"""The validated training configuration (pydantic v2).

Every bad field becomes a :class:`ConfigError` whose message names the field path and the fix,
e.g. ``model.n_head: 3 does not divide d_model=128; choose n_head dividing d_model``.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from evertrain import _yaml
from evertrain.schedules import Schedule, from_spec
from evertrain.train.autolrs import auto_schedule_problem, parse_auto_spec
from evertrain.train.budget import total_steps as _steps_for_budget
from evertrain.train.hf_spec import (
    GPT_TAG,
    HF_CONFIG_TAG,
    HF_TAG,
    HFFromConfig,
    HFPretrained,
    model_kind,
)
from evertrain.train.trackers import LoggingConfig


class ConfigError(ValueError):
    """An invalid training configuration; the message names the field and how to fix it."""


class _Strict(BaseModel):
    # Unknown keys are typos far more often than intent: reject them.
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class ModelConfig(_Strict):
    """GPT shape. ``vocab_size=None`` takes the vocabulary size from the prepared data."""

    n_layer: int = Field(gt=0)
    n_head: int = Field(gt=0)
    d_model: int = Field(gt=0)
    seq_len: int = Field(gt=0)
    vocab_size: int | None = Field(default=None, gt=0)
    positional: Literal["rope", "learned"] = "rope"
    tie_embeddings: bool = True
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.d_model % self.n_head:
            raise ValueError(
                f"n_head: {self.n_head} does not divide d_model={self.d_model}; choose n_head dividing d_model"
            )
        if self.positional == "rope" and (self.d_model // self.n_head) % 2:
            raise ValueError(
                f"n_head: RoPE needs an even head dimension, d_model/n_head={self.d_model // self.n_head}; "
                "choose another n_head or positional: learned"
            )
        return self


# ``model:`` is evertrain's GPT (the default) or a Hugging Face causal LM (evertrain.train.hf_spec),
# selected by key: {hf: DIR} / {hf_config: FILE}; anything else is the GPT's fields.
AnyModelConfig = Annotated[
    Annotated[ModelConfig, Tag(GPT_TAG)]
    | Annotated[HFPretrained, Tag(HF_TAG)]
    | Annotated[HFFromConfig, Tag(HF_CONFIG_TAG)],
    Discriminator(
        model_kind,
        custom_error_type="model_kind",
        custom_error_message="give either hf: DIR or hf_config: FILE, not both",
    ),
]
_MODEL_TAGS = {GPT_TAG, HF_TAG, HF_CONFIG_TAG}


class DataConfig(_Strict):
    """Prepared datasets (directories written by ``evertrain.data.prepare``).

    ``mixture`` maps each train name to a weight: a number, or an ``evertrain.schedules`` spec
    evaluated at tokens drawn so far (None = equal weights). ``eval`` maps names to prepared
    directories whose validation split is evaluated (None = the train sets' validation splits).
    """

    train: dict[str, str]
    mixture: dict[str, float | dict[str, Any] | str] | None = None
    eval: dict[str, str] | None = None
    eval_tokens: int = Field(default=65536, gt=0)

    @field_validator("train")
    @classmethod
    def _non_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one dataset is needed, e.g. train: {web: data/web}")
        return value

    @field_validator("mixture")
    @classmethod
    def _mixture_numbers(
        cls, value: dict[str, float | dict[str, Any] | str] | None
    ) -> dict[str, float | dict[str, Any] | str] | None:
        # Schedule-spec weights hold numbers, however they were written (see spec_numbers).
        if value is None:
            return None
        return {name: spec_numbers(w) if isinstance(w, dict) else w for name, w in value.items()}

    @model_validator(mode="after")
    def _mixture_names(self) -> DataConfig:
        if self.mixture is not None:
            unknown = sorted(set(self.mixture) - set(self.train))
            missing = sorted(set(self.train) - set(self.mixture))
            if unknown:
                raise ValueError(
                    f"mixture: {unknown} are not train datasets {sorted(self.train)}; use the names under data.train"
                )
            if missing:
                raise ValueError(
                    f"mixture: no weight for {missing}; give every data.train name a weight (0 to leave it out)"
                )
            for name, weight in self.mixture.items():
                if isinstance(weight, (int, float)) and weight < 0:
                    raise ValueError(
                        f"mixture.{name}: weight {weight} is negative; use a weight >= 0"
                    )
        return self


class OptimizerConfig(_Strict):
    """AdamW hyper-parameters; ``grad_clip`` is the global L2 norm limit (None or 0 = no clipping).

    ``name: schedulefree_adamw`` is schedule-free AdamW (Defazio et al. 2024, the ``schedulefree``
    package): its warmup comes from the schedule (``constant`` with ``warmup``), never from the
    package's own ``warmup_steps`` (see evertrain.train.optim).
    """

    name: Literal["adamw", "schedulefree_adamw"] = "adamw"
    weight_decay: float = Field(default=0.1, ge=0.0)
    warmup_steps: int | None = None  # schedulefree's own warmup: refused, one warmup only
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(default=1e-8, gt=0.0)
    grad_clip: float | None = Field(default=1.0, ge=0.0)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        for beta in value:
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{list(value)} has a value outside [0, 1); use e.g. [0.9, 0.95]")
        return value

    @field_validator("warmup_steps")
    @classmethod
    def _one_warmup(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError(
                "schedulefree's own warmup is not used (the schedule feeds the LR); remove it and "
                "warm up in the schedule: {name: constant, value: PEAK, warmup: TOKENS}"
            )
        return value


class AveragingConfig(_Strict):
    """Weight averaging kept beside the live weights (evertrain.train.averaging).

    ``ema``: decay per step ``0.5 ** (tokens_per_step / half_life_tokens)``; ``lawa``: uniform
    mean of the last ``k`` snapshots, one every ``interval_steps`` or ``interval_tokens``;
    ``swa``: uniform running mean of every step from ``start_step`` / ``start_tokens`` on.
    ``device: model`` keeps the average on the model's device, ``cpu`` in host memory.
    """

    kind: Literal["ema", "lawa", "swa"]
    half_life_tokens: int | None = Field(default=None, gt=0)
    k: int | None = Field(default=None, gt=0)
    interval_steps: int | None = Field(default=None, gt=0)
    interval_tokens: int | None = Field(default=None, gt=0)
    start_step: int | None = Field(default=None, ge=0)
    start_tokens: int | None = Field(default=None, ge=0)
    device: Literal["model", "cpu"] = "model"

    @model_validator(mode="after")
    def _fields_of_kind(self) -> AveragingConfig:
        needed = {
            "ema": [["half_life_tokens"]],
            "lawa": [["k"], ["interval_steps", "interval_tokens"]],
            "swa": [["start_step", "start_tokens"]],
        }[self.kind]
        used = {name for name in _AVERAGING_FIELDS if getattr(self, name) is not None}
        allowed = {name for group in needed for name in group}
        for group in needed:
            given = [name for name in group if getattr(self, name) is not None]
            if len(given) != 1:
                need = "needs it" if len(group) == 1 else "needs exactly one of them"
                raise ValueError(
                    f"{' or '.join(group)}: kind {self.kind} {need}; "
                    f"e.g. averaging: {_AVERAGING_EXAMPLE[self.kind]}"
                )
        if used - allowed:
            raise ValueError(
                f"{sorted(used - allowed)[0]}: not a field of kind {self.kind}; "
                f"e.g. averaging: {_AVERAGING_EXAMPLE[self.kind]}"
            )
        return self


_AVERAGING_FIELDS = (
    "half_life_tokens",
    "k",
    "interval_steps",
    "interval_tokens",
    "start_step",
    "start_tokens",
)
_AVERAGING_EXAMPLE = {
    "ema": "{kind: ema, half_life_tokens: 100000}",
    "lawa": "{kind: lawa, k: 5, interval_steps: 100}",
    "swa": "{kind: swa, start_tokens: 1000000}",
}


class ParallelConfig(_Strict):
    """How ranks split the work under ``torchrun`` (see evertrain.train.fsdp).

    ``strategy``: ``ddp`` (full replicas, gradients all-reduced; the default) or ``fsdp``
    (FSDP2 ``fully_shard`` per transformer block and the root: parameters, gradients and optimizer
    moments sharded across ranks; checkpoints written with ``torch.distributed.checkpoint``).
    ``activation_checkpointing``: recompute each block's activations in the backward pass.
    ``mixed_precision`` (fsdp only): ``auto`` = bfloat16 parameters with float32 gradient
    reduction on GPU and float32 on CPU; ``bfloat16`` asks for that policy (GPU only);
    ``float32`` keeps everything in float32.
    """

    strategy: Literal["ddp", "fsdp"] = "ddp"
    activation_checkpointing: bool = False
    mixed_precision: Literal["auto", "bfloat16", "float32"] = "auto"


def tokens_per_step(config: dict[str, Any]) -> int:
    """Tokens of one optimizer step of a config mapping (``batch_size * grad_accum *
    model.seq_len``, all ranks and micro-steps): the one formula, for validated configs and for
    the raw mappings continual plans and saved runs hold (a missing field counts 1; validation
    names it)."""
    model = config.get("model") or {}
    return (
        int(config.get("batch_size", 1))
        * int(config.get("grad_accum", 1))
        * int(model.get("seq_len", 1))
    )


class TrainConfig(_Strict):
    """Everything one training run needs. See docs/train.md for every field.

    Batch accounting: ``batch_size`` is the number of sequences per micro-step summed over all
    processes (split evenly across ranks under torchrun), so one optimizer step consumes
    ``batch_size * grad_accum * model.seq_len`` tokens whatever the world size.

    ``schedule`` is parsed once, here, into an :class:`evertrain.schedules.Schedule` (a spec
    mapping, an inline string or a Schedule are accepted); :meth:`to_dict` and config.yaml hold
    :attr:`schedule_spec`, which validates back into an equal schedule.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    # (the parsed schedule, the spec it was parsed from): see schedule_spec
    _schedule_source: tuple[Schedule, dict[str, Any] | str] | None = PrivateAttr(default=None)

    out_dir: str
    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    compile: bool = False
    deterministic: bool = False
    threads: int | None = Field(default=None, gt=0)
    # CPU runs on Linux/glibc: keep activation buffers in the heap between steps instead of
    # mapping/unmapping them every step (process-wide; see evertrain.train.allocator).
    cpu_malloc_tuning: bool = True
    model: AnyModelConfig
    data: DataConfig
    schedule: Schedule
    optimizer: OptimizerConfig = OptimizerConfig()
    averaging: AveragingConfig | None = None
    parallel: ParallelConfig = ParallelConfig()
    batch_size: int = Field(gt=0)
    grad_accum: int = Field(default=1, gt=0)
    budget_tokens: int = Field(gt=0)
    eval_interval_tokens: int = Field(gt=0)
    checkpoint_interval_tokens: int = Field(gt=0)
    keep_last: int = Field(default=2, ge=1)
    checkpoint_at_tokens: list[int] = []
    init_from: str | None = None
    init_optimizer: bool = True
    nonfinite: Literal["stop", "skip"] = "stop"
    log_interval: int = Field(default=1, gt=0)
    tensorboard: bool = False
    # W&B / MLflow mirrors of log.jsonl (evertrain.train.trackers); optional packages.
    logging: LoggingConfig = LoggingConfig()

    @property
    def tokens_per_step(self) -> int:
        """Tokens consumed by one optimizer step (all ranks, all micro-steps)."""
        shape = {"batch_size": self.batch_size, "grad_accum": self.grad_accum}
        return tokens_per_step({**shape, "model": {"seq_len": self.model.seq_len}})

    @property
    def total_steps(self) -> int:
        """Optimizer steps in the run: enough to reach ``budget_tokens`` (ceil division)."""
        return _steps_for_budget(self.budget_tokens, self.tokens_per_step)

    @field_validator("checkpoint_at_tokens")
    @classmethod
    def _positive_sorted(cls, value: list[int]) -> list[int]:
        for tokens in value:
            if tokens <= 0:
                raise ValueError(f"{tokens} is not positive; list token counts > 0")
        return sorted(set(value))

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule_parses(cls, value: Any) -> Schedule:
        if isinstance(value, Schedule):
            return value
        if isinstance(value, dict):
            value = spec_numbers(value)  # numbers written as text ('3e-3') are numbers
        try:
            # `name: auto` is the trainer's own LR search (train/autolrs.py), not a library family
            return parse_auto_spec(value) or from_spec(value)
        except ValueError as error:  # ScheduleError names the schedule field itself
            raise ValueError(f"{value!r} is not a valid schedule ({error})") from error

    @model_validator(mode="wrap")
    @classmethod
    def _remember_schedule_spec(cls, data: Any, handler: Any) -> TrainConfig:
        config = handler(data)
        if config._schedule_source is None:  # not yet: a TrainConfig passed in keeps its own
            written = data.get("schedule") if isinstance(data, dict) else None
            if isinstance(written, dict):
                spec: dict[str, Any] | str = spec_numbers(written)
            elif isinstance(written, str):
                spec = written
            else:  # a Schedule object: its spec (equal configs then compare equal)
                spec = config.schedule.to_spec()
            config._schedule_source = (config.schedule, spec)
        return config

    @property
    def schedule_spec(self) -> dict[str, Any] | str:
        """The schedule as config.yaml holds it: the spec it was parsed from, as written (an
        inline string stays one; numbers written as text are numbers), or ``to_spec()`` of a
        schedule given as an object. Files written before and after a resume then match."""
        source = self._schedule_source
        if source is not None and source[0] is self.schedule:
            return source[1]
        return self.schedule.to_spec()

    @field_serializer("schedule")
    def _serialize_schedule(self, schedule: Schedule) -> dict[str, Any] | str:
        return self.schedule_spec

    @model_validator(mode="after")
    def _auto_schedule_fits_the_run(self) -> TrainConfig:
        # schedule: auto (train/autolrs.py) needs room for its stages and whole state_dicts
        problem = auto_schedule_problem(self.schedule, self.total_steps, self.parallel.strategy)
        if problem is not None:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _named_checkpoints_within_budget(self) -> TrainConfig:
        horizon = self.total_steps * self.tokens_per_step
        late = [tokens for tokens in self.checkpoint_at_tokens if tokens > horizon]
        if late and self.budget_tokens >= self.tokens_per_step:
            raise ValueError(
                f"checkpoint_at_tokens: {late} lie beyond the run's last step at {horizon} tokens; "
                "list token counts <= budget_tokens"
            )
        return self

    @model_validator(mode="after")
    def _schedule_free_needs_no_decay(self) -> TrainConfig:
        if self.optimizer.name == "schedulefree_adamw":
            from evertrain.train.optim import schedule_free_decay_error  # numpy only

            error = schedule_free_decay_error(self.schedule, self.total_steps, self.tokens_per_step)
            if error:
                raise ValueError(error)
        return self

    @model_validator(mode="after")
    def _fsdp_keeps_no_average(self) -> TrainConfig:
        # Both keep a second copy of the weights beside the live ones; under FSDP each rank
        # holds only its shard of them, which the averaging and its checkpoints do not handle.
        if self.parallel.strategy == "fsdp":
            if self.averaging is not None:
                raise ValueError(
                    "averaging: not supported with parallel.strategy fsdp; use strategy ddp "
                    "or train without averaging: (then `evertrain train average` the checkpoints)"
                )
            if self.optimizer.name == "schedulefree_adamw":
                raise ValueError(
                    "optimizer: schedulefree_adamw is not supported with parallel.strategy "
                    "fsdp; use strategy ddp or optimizer.name adamw"
                )
        return self

    @model_validator(mode="after")
    def _fsdp_dtype(self) -> TrainConfig:
        # float16 needs a GradScaler whose inf check every rank agrees on; FSDP shards the
        # gradients, so each rank would see only its own shard's infs.
        if self.parallel.strategy == "fsdp" and self.dtype == "float16":
            raise ValueError(
                "parallel: strategy fsdp does not support dtype: float16; use dtype: bfloat16 "
                "(or parallel.mixed_precision) or float32"
            )
        return self

    @model_validator(mode="after")
    def _budget_holds_a_step(self) -> TrainConfig:
        if self.budget_tokens < self.tokens_per_step:
            raise ValueError(
                f"budget_tokens: {self.budget_tokens} is less than one optimizer step "
                f"(batch_size*grad_accum*seq_len = {self.tokens_per_step}); raise budget_tokens or shrink the batch"
            )
        return self

    # ------------------------------------------------------------------ constructors
    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> TrainConfig:  # type: ignore[override]
        """Validate ``obj``; raise :class:`ConfigError` (a ValueError) naming each bad field."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as error:
            raise ConfigError(_format_validation_error(error)) from None

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike[str], overrides: list[str] | None = None
    ) -> TrainConfig:
        """Load a YAML config; ``overrides`` are ``dotted.key=value`` strings (values parsed as YAML)."""
        path = Path(path)
        raw = read_yaml_mapping(path, "pass the path of a YAML config")
        # Paths in the file are read against its folder; --set paths against the shell's.
        from evertrain.train.config_paths import resolve_train_paths

        raw = resolve_train_paths(raw, path.parent)
        return cls.model_validate(apply_overrides(raw, overrides or []))

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-able dict that :meth:`model_validate` turns back into an equal config."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return _yaml.dump(self.to_dict())


def read_yaml_mapping(path: Path, missing_hint: str) -> dict[str, Any]:
    """The mapping a YAML config file holds; ConfigError naming the file when it is missing
    (``missing_hint`` says what to pass), not YAML, or not a mapping."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; {missing_hint}")
    try:
        raw = _yaml.load(path.read_text(encoding="utf-8")) or {}
    except _yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of fields, got {type(raw).__name__}"
        )
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``key.sub=value`` overrides applied (value parsed as YAML).

    Values are read by :func:`evertrain._yaml.load`, so ``--set schedule.peak=3e-3`` is a number.
    """
    result = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set batch_size=32")
        key, text = item.split("=", 1)
        parts = [part for part in key.strip().split(".") if part]
        if not parts:
            raise ConfigError(f"--set {item!r}: empty key; expected key=value")
        try:
            value = _yaml.load(text)
        except _yaml.YAMLError:
            value = text
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return result


# A number written as a string (a quoted YAML scalar, a JSON string, a dict built in Python).
_NUMBER = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?")


def spec_numbers(value: Any) -> Any:
    """``value`` (a schedule spec, possibly nested) with numeric strings turned into numbers.

    Every schedule parameter that looks like a number is one (the schedule constructors convert
    them anyway), so converting once at load keeps the saved config, checkpoints and messages
    in numbers: ``peak=-0.003``, not ``peak='-3e-3'``.
    """
    if isinstance(value, dict):
        return {key: spec_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [spec_numbers(item) for item in value]
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        text = value.strip().replace("_", "")
        try:
            return int(text)
        except ValueError:
            return float(text)
    return value


def _format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = item["loc"]
        # The model union's tag (model.gpt.n_head) is no field the user wrote: model.n_head.
        if len(loc) > 1 and loc[0] == "model" and loc[1] in _MODEL_TAGS:
            loc = (loc[0], *loc[2:])
        location = ".".join(str(part) for part in loc)
        message = item["msg"]
        # pydantic prefixes custom messages with "Value error, "; the field path says enough.
        message = message.removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "required field is missing; add it to the config"
        elif item["type"] == "extra_forbidden":
            message = "unknown field; check the spelling against docs/train.md"
        # Our model validators put the field name first ("n_head: ..."): merge it into the path.
        head, sep, rest = message.partition(": ")
        if sep and head.isidentifier() and item["type"] == "value_error":
            location = f"{location}.{head}" if location else head
            message = rest
        lines.append(f"{location}: {message}" if location else message)
    return "invalid training config:\n  " + "\n  ".join(lines)
