"""Run continual stages on the reference trainer: plans, recipes from one base, retrain baseline.

Every run is an ordinary ``evertrain.train`` run directory plus a ``continual.json`` recording
its recipe, the roles of its datasets (old / new), the tokens trained into its starting point
(``offset_tokens``) and its wall time; reports and branch listings read only these files.

Runs are resumable: a stage whose directory already holds a run of the *same* configuration is
resumed (or skipped when finished) instead of retrained; a directory holding a run of another
configuration is an error, never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evertrain._lock import FolderLock
from evertrain.continual import recipes as R
from evertrain.continual.plan import Plan, external_base_info, whole_steps
from evertrain.continual.runs import META_FILE, load_run, write_meta
from evertrain.schedules import Schedule, from_spec, join
from evertrain.schedules.summary import peak as schedule_peak
from evertrain.train.config import ConfigError, TrainConfig, tokens_per_step

if TYPE_CHECKING:
    from evertrain.train.loop import RunResult


class ContinualError(ValueError):
    """A continual run cannot start (bad base, clashing output directory); says how to fix it."""


@dataclass
class Setup:
    """What every run of a comparison shares: the model shape, trainer settings and eval sets.

    ``train`` holds other ``TrainConfig`` fields (``batch_size``, ``device``, ``seed``,
    ``optimizer`` ...); ``eval`` maps every dataset name to its prepared directory, so each run
    is evaluated on the validation split of every distribution.
    """

    model: dict[str, Any]
    train: dict[str, Any]
    eval: dict[str, str]
    eval_points: int = 4

    @property
    def tokens_per_step(self) -> int:
        return tokens_per_step({**self.train, "model": self.model})

    def round_tokens(self, tokens: int) -> int:
        """Round a token *position* (a checkpoint, an eval interval) to the nearest whole
        optimizer step (at least one)."""
        step = self.tokens_per_step
        return max(step, int(round(tokens / step)) * step)

    def whole_steps(self, tokens: int) -> int:
        """The tokens a run with ``budget_tokens=tokens`` trains: whole optimizer steps, rounded
        up exactly as ``TrainConfig.total_steps`` does (at least one step).

        Budgets go through this, never through :meth:`round_tokens`: a stage's schedule then
        ends exactly where the trainer stops, so it neither stops before its final decay nor
        trains steps past the end of its schedule.
        """
        return whole_steps(tokens, self.tokens_per_step)


@dataclass
class StageRun:
    """A finished stage: its name and recipe, the trainer's :class:`RunResult`, and the wall
    time of the call that trained it (kept when a finished stage is only re-read)."""

    name: str
    recipe: str
    result: RunResult
    wall_seconds: float

    @property
    def out_dir(self) -> Path:
        return Path(self.result.out_dir)

    @property
    def tokens(self) -> int:
        return int(self.result.tokens)

    @property
    def final_eval(self) -> dict[str, float]:
        return dict(self.result.final_eval)

    @property
    def last_checkpoint(self) -> Path | None:
        return self.result.last_checkpoint

    @property
    def params(self) -> int:
        return int(self.result.params)


def stage_config(
    setup: Setup,
    *,
    out_dir: str | Path,
    train_sets: dict[str, str],
    mixture: dict[str, Any],
    schedule: Schedule,
    tokens: int,
    init_from: str | Path | None = None,
    checkpoint_at_tokens: list[int] | None = None,
    keep_last: int | None = None,
) -> TrainConfig:
    """The validated ``TrainConfig`` of one stage, the one path from a continual stage to the
    trainer: evaluated ``setup.eval_points`` times, checkpointed at the end (and at
    ``checkpoint_at_tokens``, pinned). A bad field raises :class:`ConfigError` naming it."""
    eval_every = max(setup.tokens_per_step, setup.round_tokens(tokens // max(1, setup.eval_points)))
    train = {key: value for key, value in setup.train.items() if key != "eval_tokens"}
    config = {
        **train,
        "out_dir": str(out_dir),
        "model": dict(setup.model),
        "data": {
            "train": dict(train_sets),
            "mixture": {name: mixture.get(name, 0.0) for name in train_sets},
            "eval": dict(setup.eval),
            **({"eval_tokens": setup.train["eval_tokens"]} if "eval_tokens" in setup.train else {}),
        },
        "schedule": schedule,
        "budget_tokens": int(tokens),
        "eval_interval_tokens": int(eval_every),
        "checkpoint_interval_tokens": int(tokens),
        "checkpoint_at_tokens": list(checkpoint_at_tokens or []),
        "init_from": str(init_from) if init_from else None,
        **({"keep_last": int(keep_last)} if keep_last is not None else {}),
    }
    return TrainConfig.model_validate(config)


def _fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _dataset_identity(path: str) -> dict[str, Any] | None:
    """The content of a prepared dataset as its manifest records it: the tokenizer's and every
    shard's sha256 (None when the folder holds no manifest yet; the trainer reports that)."""
    manifest_path = Path(path) / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return {
        "tokenizer_sha256": manifest.get("tokenizer", {}).get("sha256"),
        "shards_sha256": {
            split: shard.get("sha256")
            for split, shard in sorted(manifest.get("shards", {}).items())
        },
    }


def _model_identity(model: dict[str, Any]) -> dict[str, Any] | None:
    """The content of a Hugging Face model directory a run starts from (``model.hf``): the sha256
    of its JSON files (config, tokenizer, index) and the size and modification time of each weight
    file (hashing gigabytes of weights on every re-run would cost more than the check is worth;
    weights saved again count as another base). ``None`` for other models, so their recorded
    inputs are unchanged."""
    directory = model.get("hf") if isinstance(model, dict) else None
    if not directory or not Path(directory).is_dir():
        return None
    from evertrain._hashing import file_sha256

    files = sorted(p for p in Path(directory).iterdir() if p.is_file())
    return {
        "json_sha256": {p.name: file_sha256(p) for p in files if p.suffix == ".json"},
        "weights": {  # [bytes, modification time in ns]
            p.name: [p.stat().st_size, p.stat().st_mtime_ns]
            for p in files
            if p.suffix in (".safetensors", ".bin")
        },
    }


def stage_inputs(config: TrainConfig | dict[str, Any]) -> dict[str, Any]:
    """Everything a finished run's result depends on: its whole validated config (model,
    schedule, mixture, budget, trainer settings) and the content of its data (the prepared
    datasets' tokenizer and shard checksums), so a re-run re-uses it only for the same inputs,
    not the same paths."""
    config = _canonical(_validated(config))
    data = config.get("data", {})
    inputs = {
        "config": config,
        "data": {
            role: {
                name: _dataset_identity(path)
                for name, path in sorted((data.get(role) or {}).items())
            }
            for role in ("train", "eval")
        },
    }
    model = _model_identity(config.get("model") or {})
    if model is not None:  # a Hugging Face directory: its content, not only its path
        inputs["model"] = model
    return _jsonable(inputs)


def differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """The leaves that differ between two nested dicts, as (dotted key, old, new)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[tuple[str, Any, Any]] = []
        for key in [*old, *(k for k in new if k not in old)]:
            found += differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return found
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def short(value: Any) -> str:
    """A value for a one-line message: checksums cut to 12 hex digits, long values cut."""
    if value is None:
        return "(none)"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_differences(old: Any, new: Any, limit: int = 4) -> str:
    """``key: old -> new; ...`` for at most ``limit`` differences (and how many more)."""
    found = differences(old, new)
    parts = [f"{key}: {short(a)} -> {short(b)}" for key, a, b in found[:limit]]
    if len(found) > limit:
        parts.append(f"and {len(found) - limit} more")
    return "; ".join(parts)


def _validated(config: TrainConfig | dict[str, Any]) -> TrainConfig:
    return config if isinstance(config, TrainConfig) else TrainConfig.model_validate(config)


def _canonical(config: TrainConfig) -> dict[str, Any]:
    """The config as a dict with the schedule as its full spec (``to_spec``), so one schedule
    compares equal however it was written (``cosine:peak=...`` or a mapping, defaults or not)."""
    return {**config.to_dict(), "schedule": config.schedule.to_spec()}


def _recorded_inputs(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The inputs a run's ``continual.json`` recorded, its config validated again: a config
    recorded by an earlier version (fewer fields, schedules as written) then compares equal to
    the same config today. ``None`` when nothing comparable was recorded."""
    recorded = meta.get("inputs")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("config"), dict):
        return None
    try:
        config = _canonical(TrainConfig.model_validate(recorded["config"]))
    except ConfigError:
        return recorded  # an unreadable old config: compared as written, so it differs
    return _jsonable({**recorded, "config": config})


def run_stage(
    config: TrainConfig | dict[str, Any],
    *,
    name: str,
    recipe: str,
    old: list[str],
    new: list[str],
    offset_tokens: int = 0,
    progress: bool = True,
    extra_meta: dict[str, Any] | None = None,
) -> StageRun:
    """Train (or resume, or re-read if finished) one run and record its ``continual.json``.

    A folder that already holds a run is re-used only when that run had the same inputs
    (:func:`stage_inputs`); otherwise a :class:`ContinualError` names what differs.
    """
    from evertrain.train.loop import run  # torch: only when a stage trains

    cfg = _validated(config)
    out_dir = Path(cfg.out_dir)
    inputs = stage_inputs(cfg)
    fingerprint = _fingerprint(inputs)
    meta_path = out_dir / META_FILE
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        recorded = _recorded_inputs(meta)
        if meta.get("fingerprint") != fingerprint and recorded != inputs:
            changed = describe_differences(recorded, inputs) if recorded is not None else ""
            raise ContinualError(
                f"{out_dir} holds a run of another configuration"
                + (f" ({changed})" if changed else "")
                + ": choose a new output directory or delete that run to retrain it"
            )
    elif (out_dir / "log.jsonl").exists() or (out_dir / "checkpoints").exists():
        raise ContinualError(
            f"{out_dir} already holds a run not started by evertrain.continual: choose another directory"
        )
    write_meta(
        out_dir,
        name=name,
        recipe=recipe,
        old=list(old),
        new=list(new),
        offset_tokens=int(offset_tokens),
        fingerprint=fingerprint,
        inputs=inputs,
        **(extra_meta or {}),
    )
    already_finished = bool(json.loads(meta_path.read_text()).get("finished"))
    previous_wall = float(json.loads(meta_path.read_text()).get("wall_seconds", 0.0))
    started = time.perf_counter()
    result = run(cfg, resume=True, progress=progress)
    # A finished run is only re-read: keep the wall time of the call that trained it.
    wall = previous_wall if already_finished else time.perf_counter() - started
    write_meta(
        out_dir,
        wall_seconds=wall,
        tokens=int(result.tokens),
        params=int(result.params),
        finished=True,
    )
    return StageRun(name=name, recipe=recipe, result=result, wall_seconds=wall)


def lr_state(
    schedule: Schedule | dict[str, Any] | str,
    tokens: int,
    tokens_per_step: int,
    pre_anneal: int | None = None,
) -> R.BaseModelInfo:
    """What later stages need to know about a run trained on ``schedule`` for ``tokens``,
    read from the schedule itself (in its own unit: tokens, or steps of ``tokens_per_step``).

    ``peak`` is the highest LR on ``[0, tokens]`` (:func:`evertrain.schedules.summary.peak`,
    from the schedule's phases), ``final_lr`` the LR of the last optimizer step
    (s(tokens − tokens_per_step), the LambdaLR convention), ``floor`` the schedule's value at
    ``tokens``, ``constant_lr`` its value at the pre-anneal point (the last step's LR when there
    is none).
    """
    s = from_spec(schedule)
    per_token = 1.0 if s.unit == "tokens" else 1.0 / tokens_per_step

    def at(position: int) -> float:
        return float(s(position * per_token))

    final_lr = at(max(0, tokens - tokens_per_step))
    return R.BaseModelInfo(
        peak=schedule_peak(s, tokens * per_token),
        final_lr=final_lr,
        constant_lr=at(pre_anneal) if pre_anneal is not None else final_lr,
        floor=at(tokens),
        tokens=int(tokens),
    )


def pre_anneal_checkpoint(run_dir: str | Path) -> Path | None:
    """The named checkpoint a base run recorded for its pre-anneal point (``continual.json``)."""
    run = load_run(run_dir)
    name = run.meta.get("pre_anneal_checkpoint")
    if not name:
        return None
    path = Path(run_dir) / "checkpoints" / str(name)
    return path if path.is_dir() else None


def train_base(
    setup: Setup,
    *,
    out_dir: str | Path,
    datasets: dict[str, str],
    tokens: int,
    peak: float,
    anneal_fraction: float = 0.1,
    hold_fraction: float = 0.0,
    progress: bool = True,
) -> StageRun:
    """Pre-train a base on ``datasets`` with an infinite schedule (warmup → cooldown → constant
    → release anneal), pinning a checkpoint at the start of the anneal so that both annealed
    (``rewarm``/``finetune``) and constant-LR (``infinite+replay``) continuations can start from it."""
    tokens = setup.whole_steps(tokens)
    schedule, pre_anneal = base_schedule(setup, tokens, peak, anneal_fraction, hold_fraction)
    config = stage_config(
        setup,
        out_dir=out_dir,
        train_sets=datasets,
        mixture={name: 1.0 for name in datasets},
        schedule=schedule,
        tokens=tokens,
        checkpoint_at_tokens=[pre_anneal] if pre_anneal < tokens else [],
    )
    return run_stage(
        config,
        name="base",
        recipe="base",
        old=[],
        new=list(datasets),
        progress=progress,
        extra_meta={
            "pre_anneal_tokens": pre_anneal,
            "pre_anneal_checkpoint": f"tokens_{pre_anneal}",
        },
    )


def base_schedule(
    setup: Setup,
    tokens: int,
    peak: float,
    anneal_fraction: float = 0.1,
    hold_fraction: float = 0.0,
) -> tuple[Schedule, int]:
    """The infinite schedule :func:`train_base` trains a base of ``tokens`` on, and the token
    count of its pinned pre-anneal checkpoint (a whole step; the anneal starts exactly there).

    ``hold_fraction`` > 0 ends the anneal that share of ``tokens`` early and holds its floor
    LR to the end (a ``join`` of the infinite schedule and a constant): a base whose last
    tokens train at the final LR, so that how flat its loss is no longer mixes in the
    anneal's own gain. ``anneal_fraction`` stays a share of all ``tokens``.
    """
    tokens = setup.whole_steps(tokens)
    if not 0.0 <= hold_fraction < 1.0 - anneal_fraction:
        raise ContinualError(
            f"hold_fraction={hold_fraction!r} must be in [0, 1 - anneal_fraction = "
            f"{1.0 - anneal_fraction:g}): the hold follows the anneal"
        )
    anneal_end = setup.round_tokens(tokens * (1.0 - hold_fraction)) if hold_fraction else tokens
    # the anneal as long as without a hold, moved earlier by the hold (whole steps both)
    pre_anneal = setup.round_tokens(R.pre_anneal_tokens(tokens, anneal_fraction))
    pre_anneal -= tokens - anneal_end
    schedule = R.infinite_schedule(
        peak=peak, tokens=anneal_end, anneal_fraction=1 - pre_anneal / anneal_end
    )
    if anneal_end < tokens:
        floor = float(schedule(anneal_end))
        schedule = join(
            [schedule, {"name": "constant", "value": floor, "unit": "tokens"}], [anneal_end]
        )
    return schedule, pre_anneal


def planned_base_info(
    setup: Setup,
    tokens: int,
    peak: float,
    anneal_fraction: float = 0.1,
    hold_fraction: float = 0.0,
) -> R.BaseModelInfo:
    """What :func:`base_info` will read from a finished :func:`train_base` run, known before it
    trains: so ``retrain`` and ``infinite+replay`` (which needs only the pre-anneal checkpoint)
    can start while the base is still training."""
    schedule, pre_anneal = base_schedule(setup, tokens, peak, anneal_fraction, hold_fraction)
    tokens = setup.whole_steps(tokens)
    return lr_state(
        schedule, tokens, setup.tokens_per_step, pre_anneal if pre_anneal < tokens else None
    )


def resolve_base(base: str | Path) -> tuple[Path, Path | None]:
    """``base`` is a run directory or one of its checkpoints (``RUN/checkpoints/NAME``, holding
    ``meta.json``): return (run directory, checkpoint or None for "its last one")."""
    path = Path(base)
    if (path / "meta.json").is_file() and path.parent.name == "checkpoints":
        return path.parent.parent, path
    return path, None


def base_info(base_dir: str | Path) -> tuple[R.BaseModelInfo, dict[str, Any]]:
    """Read a finished base run (or a checkpoint of one): its LR state at that point (from its
    schedule) and its config."""
    base_dir, checkpoint = resolve_base(base_dir)
    base = load_run(base_dir)
    if not base.config:
        raise ContinualError(
            f"{base_dir} has no config.yaml: pass the directory of a finished training run"
        )
    config = base.config
    tokens = base.tokens
    if checkpoint is not None:
        tokens = int(json.loads((checkpoint / "meta.json").read_text()).get("tokens", 0))
    if tokens <= 0:
        raise ContinualError(f"{base_dir} has trained no tokens yet: finish the base run first")
    try:
        schedule = from_spec(config.get("schedule"))
    except ValueError as error:
        raise ContinualError(f"{base_dir}: its config's schedule is unreadable ({error})") from None
    info = lr_state(schedule, tokens, tokens_per_step(config), base.meta.get("pre_anneal_tokens"))
    return info, config


def is_external_base(path: str | Path) -> bool:
    """True when ``path`` is a Hugging Face model directory (``config.json``, no evertrain run)."""
    path = Path(path)
    return (
        (path / "config.json").is_file()
        and not (path / "config.yaml").is_file()
        and not (path / "checkpoints").is_dir()
    )


#: The peak LR assumed for an external base whose peak is not given (the plan's default ``peak``).
EXTERNAL_DEFAULT_PEAK = 3e-3
#: Recipes that start from an external base's weights as they are (its final state).
EXTERNAL_RECIPES = ("rewarm", "rewarm+replay", "finetune")


def external_base_lr(
    recipes: list[str], *, peak_lr: float | None, final_lr: float | None, hint: str = "--base-"
) -> tuple[R.BaseModelInfo, list[str]]:
    """The LR state of an external base for ``continual compare``: the given peak / final LR, or
    the documented defaults (peak :data:`EXTERNAL_DEFAULT_PEAK`; final LR 10 % of the peak, where
    a rewarm's cosine ends), with one warning line per default a chosen recipe uses."""
    unsupported = [r for r in recipes if r not in EXTERNAL_RECIPES]
    if unsupported:  # before any recipe trains
        raise ContinualError(
            f"recipes {unsupported} need a base trained by evertrain (retrain: its token budget; "
            "infinite+replay: its pre-anneal checkpoint); an external Hugging Face base supports "
            f"{', '.join(EXTERNAL_RECIPES)}"
        )
    lines = []
    peak = peak_lr or EXTERNAL_DEFAULT_PEAK
    if peak_lr is None and any(r.startswith("rewarm") for r in recipes):
        lines.append(
            f"{hint}peak-lr is not set: an external base has no recorded LR history, so rewarm "
            f"re-warms to the default peak {peak:g}; pass {hint}peak-lr with the base's peak LR"
        )
    final = final_lr or R.infinite_floor(peak, R.DEFAULTS["rewarm"]["floor_fraction"])
    if final_lr is None and "finetune" in recipes:
        lines.append(
            f"{hint}final-lr is not set: an external base has no recorded LR history, so finetune "
            f"continues at 10% of the peak, {final:g}; pass {hint}final-lr with the base's last LR"
        )
    return R.BaseModelInfo(
        peak=peak, final_lr=final, constant_lr=final, floor=final, tokens=0
    ), lines


def run_recipe(
    recipe_name: str,
    setup: Setup,
    *,
    base_dir: str | Path,
    old: dict[str, str],
    new: dict[str, str],
    stage_tokens: int,
    out_dir: str | Path,
    progress: bool = True,
    base: R.BaseModelInfo | None = None,
    **overrides: Any,
) -> StageRun:
    """Run one recipe from the base run in ``base_dir`` (``retrain`` starts from scratch).

    ``base`` describes the base's LR state and tokens; by default it is read from ``base_dir``
    (pass it to start ``retrain`` while the base is still training).
    """
    info = base if base is not None else base_info(base_dir)[0]
    stage_tokens = setup.whole_steps(stage_tokens)
    try:
        recipe = R.build_recipe(
            recipe_name,
            base=info,
            stage_tokens=stage_tokens,
            old=list(old),
            new=list(new),
            **overrides,
        )
    except R.RecipeError as error:
        raise ContinualError(str(error)) from None
    train_sets = {**old, **new}
    init_from: Path | None = None
    offset = 0
    base_dir, base_checkpoint = resolve_base(base_dir)
    if is_external_base(base_dir):
        # A Hugging Face directory: its weights come with the model (setup.model = {hf: DIR}).
        if recipe.init != "final":
            raise ContinualError(
                f"recipe {recipe_name!r} needs a base trained by evertrain ({recipe.init} start); "
                f"{base_dir} is an external Hugging Face model: use rewarm, rewarm+replay or finetune"
            )
    elif recipe.init == "final":
        init_from = base_checkpoint or newest_checkpoint(base_dir)
        offset = info.tokens
    elif recipe.init == "pre-anneal":
        init_from = pre_anneal_checkpoint(base_dir)
        if init_from is None:
            raise ContinualError(
                f"recipe {recipe_name!r} continues a base trained with an infinite schedule from its pre-anneal "
                f"checkpoint, and {base_dir} has none: train the base with evertrain.continual.train_base"
            )
        offset = int(load_run(base_dir).meta["pre_anneal_tokens"])
    # Datasets with weight 0 stay out of the sampler (no replay -> only the new data is read).
    train_sets = {k: v for k, v in train_sets.items() if recipe.mixture.get(k, 0.0) > 0}
    config = stage_config(
        setup,
        out_dir=out_dir,
        train_sets=train_sets,
        mixture=recipe.mixture,
        schedule=recipe.schedule,
        tokens=recipe.tokens,
        init_from=init_from,
    )
    return run_stage(
        config,
        name=recipe_name,
        recipe=recipe_name,
        old=list(old),
        new=list(new),
        offset_tokens=offset,
        progress=progress,
        extra_meta={"recipe_params": _jsonable(recipe.params), "citation": recipe.citation},
    )


def newest_checkpoint(run_dir: str | Path) -> Path:
    """The newest valid checkpoint of a finished run (absolute), by the trainer's own rule
    (:func:`evertrain.train.checkpoint.resolve_checkpoint`); a ContinualError if it has none."""
    from evertrain.train.checkpoint import CheckpointError, resolve_checkpoint  # torch

    try:
        return resolve_checkpoint(run_dir).resolve()
    except CheckpointError:
        raise ContinualError(f"{run_dir} has no checkpoint: finish that run first") from None


def run_plan(plan: Plan, *, progress: bool = True) -> list[StageRun]:
    """Run every stage of ``plan`` in order under ``plan.out_dir/<stage name>/``.

    The output folder is locked for the whole plan (one writer), and a finished stage is
    re-used only for the same inputs (:func:`run_stage`).
    """
    with FolderLock(plan.out_dir, what="continual output folder"):
        return _run_plan_stages(plan, progress=progress)


def _pre_anneal_start(previous: StageRun, offset: int) -> tuple[Path, int]:
    """Where a ``continue`` stage starts: the previous stage's pre-anneal checkpoint and the
    tokens trained into it; a previous stage that never annealed (``anneal_fraction=0``) is at
    its constant LR at its end, so its last checkpoint."""
    meta = load_run(previous.out_dir).meta
    if "pre_anneal_tokens" not in meta and previous.last_checkpoint is not None:
        return previous.last_checkpoint, offset
    checkpoint = pre_anneal_checkpoint(previous.out_dir)
    if checkpoint is None:
        raise ContinualError(
            f"{previous.out_dir} has no pre-anneal checkpoint to continue from: retrain that stage"
        )
    return checkpoint, offset - previous.tokens + int(meta["pre_anneal_tokens"])


def plan_setup(plan: Plan) -> Setup:
    """What every stage of ``plan`` shares: its model, trainer settings, every dataset as an
    eval set, and ``plan.evals_per_stage`` evaluations per stage."""
    return Setup(
        model=plan.model, train=plan.train, eval=plan.datasets, eval_points=plan.evals_per_stage
    )


def _run_plan_stages(plan: Plan, *, progress: bool) -> list[StageRun]:
    setup = plan_setup(plan)
    results: list[StageRun] = []
    # An external base (model.hf): the LR state the plan states for it, or the defaults, said.
    previous_info, defaults_used = external_base_info(plan)
    for line in defaults_used:
        warnings.warn(line, UserWarning, stacklevel=3)
    offset = 0
    for index, stage in enumerate(plan.stages):
        tokens = plan.stage_tokens(index)
        schedule = plan.stage_schedule(index, previous_info)
        kind = plan.init_checkpoint_kind(index)
        init_from: Path | str | None = None
        start_offset = 0
        if kind == "final":
            init_from, start_offset = results[-1].last_checkpoint, offset
        elif kind == "pre-anneal":
            init_from, start_offset = _pre_anneal_start(results[-1], offset)
        elif kind == "path":
            init_from = stage.init
        pre_anneal = None
        if (
            isinstance(stage.schedule, str)
            and stage.schedule in ("infinite", "continue")
            and stage.anneal_fraction > 0
        ):
            pre_anneal = setup.round_tokens(R.pre_anneal_tokens(tokens, stage.anneal_fraction))
            pre_anneal = pre_anneal if pre_anneal < tokens else None
        datasets = {**{n: plan.datasets[n] for n in plan.old_datasets(index)}, **stage.datasets}
        mixture = plan.stage_mixture(index)
        datasets = {k: v for k, v in datasets.items() if k in mixture}
        config = stage_config(
            setup,
            out_dir=Path(plan.out_dir) / stage.name,
            train_sets=datasets,
            mixture=mixture,
            schedule=schedule,
            tokens=tokens,
            init_from=init_from,
            checkpoint_at_tokens=[pre_anneal] if pre_anneal else [],
        )
        extra = {"stage_index": index}
        if pre_anneal:
            extra.update(pre_anneal_tokens=pre_anneal, pre_anneal_checkpoint=f"tokens_{pre_anneal}")
        result = run_stage(
            config,
            name=stage.name,
            recipe=stage.schedule if isinstance(stage.schedule, str) else "explicit",
            old=plan.old_datasets(index),
            new=list(stage.datasets),
            offset_tokens=start_offset,
            progress=progress,
            extra_meta=extra,
        )
        results.append(result)
        offset = start_offset + result.tokens
        state = lr_state(schedule, result.tokens, setup.tokens_per_step, pre_anneal)
        floor = plan.release_floor(index, previous_info)
        # A stage that did not anneal (anneal_fraction=0) still has the floor a release reaches.
        previous_info = state if floor is None else replace(state, floor=floor)
    return results


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
