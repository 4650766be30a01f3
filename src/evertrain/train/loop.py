"""The training loop: :func:`run` a :class:`~evertrain.train.config.TrainConfig`.

Read top to bottom, nanoGPT style::

    for step in range(start_step, total_steps):
        lr = schedule(tokens if unit == "tokens" else step)   # progress *before* this update
        for micro_step in range(grad_accum):                  # x, y from the mixture sampler
            loss = model(x, y) / grad_accum; loss.backward()
        clip; optimizer.step()                                # or skip / stop on a non-finite loss
        log; eval every eval_interval_tokens; checkpoint every checkpoint_interval_tokens
        if SIGTERM/SIGINT came (any rank): checkpoint, raise RunPreempted  # preempt.py

State that makes a resume exact lives in the checkpoint: weights, optimizer moments, step, tokens,
sampler state and RNG states. The schedule is a pure function of progress, so it needs no state.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from evertrain._progress import progress_bar
from evertrain.data import (
    MixtureSampler,
    PreparedDataset,
    check_same_tokenizer,
    iter_eval_batches,
)
from evertrain.train import checkpoint as ckpt
from evertrain.train import console, distributed, fsdp, lifeline, preempt, recovery, storage
from evertrain.train.allocator import tune_glibc_malloc
from evertrain.train.autolrs import attach_search, resumed_search_state, search_checkpoint_state
from evertrain.train.averaging import make_averager
from evertrain.train.budget import schedule_fit_warning
from evertrain.train.budget import total_steps as budget_total_steps
from evertrain.train.config import ConfigError, TrainConfig
from evertrain.train.config_history import record_config
from evertrain.train.data_checks import check_run_data
from evertrain.train.dcp_checkpoint import load_training_state, save_dcp_checkpoint
from evertrain.train.hf_model import build_hf_model, hf_vocab_size
from evertrain.train.hf_spec import is_hf
from evertrain.train.logging import RunLogger, read_log, truncate_log
from evertrain.train.model import GPT, GPTConfig
from evertrain.train.optim import (
    build_optimizer,
    evaluation_point,
    is_schedule_free,
    saved_optimizer_name,
)
from evertrain.train.run_folder import hold_run_folder
from evertrain.train.trackers import check_installed


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf and the config says ``nonfinite: stop``."""


@dataclass
class RunResult:
    """What :func:`run` returns. ``tokens`` / ``steps`` count the whole run (resumes included)."""

    out_dir: Path
    tokens: int
    steps: int
    wall_seconds: float
    final_eval: dict[str, float]
    last_checkpoint: Path | None
    skipped_steps: int = 0
    params: int = 0
    preempted: bool = False  # True only on the result a RunPreempted carries


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device: 'cuda' requested but no CUDA device is available; use device: cpu or auto"
        )
    return torch.device(name)


def _crossed(before: int, after: int, interval: int) -> bool:
    """True when a multiple of ``interval`` lies in (before, after]."""
    return after // interval > before // interval


def _nan_hook_steps() -> set[int]:
    # Test-only: EVERTRAIN_TEST_NAN_AT_STEPS="3,5" poisons the loss of those (1-based) steps.
    text = os.environ.get("EVERTRAIN_TEST_NAN_AT_STEPS", "")
    return {int(part) for part in text.split(",") if part.strip()}


def _kill_hook(step: int) -> None:
    # Test-only: EVERTRAIN_TEST_KILL_AT=step:<n> SIGKILLs the process right after step n;
    # =sigterm:<n> sends it SIGTERM there (a preemption landing mid-run, whatever the load).
    spec = os.environ.get("EVERTRAIN_TEST_KILL_AT")
    if spec == f"step:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
    elif spec == f"sigterm:{step}":
        os.kill(os.getpid(), signal.SIGTERM)


def _rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _load_datasets(cfg: TrainConfig) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Open the train and eval prepared datasets; return (train, eval, vocab_size)."""

    def open_dataset(field_path: str, directory: str) -> Any:
        try:
            return PreparedDataset(directory)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"{field_path}: cannot open prepared dataset {directory!r} ({error}); "
                "run `evertrain data prepare` first"
            ) from None

    train = {name: open_dataset(f"data.train.{name}", d) for name, d in cfg.data.train.items()}
    if cfg.data.eval is None:
        evals = dict(train)
    else:
        evals = {name: open_dataset(f"data.eval.{name}", d) for name, d in cfg.data.eval.items()}
    # Token ids mean nothing across tokenizers: refuse before the vocabulary check, over every
    # dataset the run reads (the sampler checks its own mixture; eval sets are read here only).
    try:
        check_same_tokenizer(
            {
                **{f"data.train.{n}": ds for n, ds in train.items()},
                **{f"data.eval.{n}": ds for n, ds in evals.items()},
            }
        )
    except ValueError as error:
        raise ConfigError(f"data: {error}") from None
    data_vocab = max(int(ds.vocab_size) for ds in [*train.values(), *evals.values()])
    vocab_size = getattr(cfg.model, "vocab_size", None) or data_vocab  # HF models: their own
    if vocab_size < data_vocab:
        raise ConfigError(
            f"model.vocab_size: {vocab_size} is smaller than the data's vocabulary ({data_vocab}); "
            "raise it or leave it null to take it from the data"
        )
    for name, ds in evals.items():
        if len(ds.val_tokens) < cfg.model.seq_len + 1:
            raise ConfigError(
                f"data.eval.{name}: validation split has {len(ds.val_tokens)} tokens, fewer than "
                f"seq_len+1={cfg.model.seq_len + 1}; prepare more data or raise the validation share "
                "(evertrain data prepare --val-fraction, prepare(val_fraction=...))"
            )
    return train, evals, vocab_size


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    datasets: dict[str, Any],
    *,
    seq_len: int,
    batch_size: int,
    eval_tokens: int,
    device: torch.device | str = "cpu",
    autocast: Any = contextlib.nullcontext,
) -> dict[str, float]:
    """Mean next-token loss (nats) on the first ``eval_tokens`` of each validation split.

    ``iter_eval_batches`` walks the split deterministically, so every evaluation sees the same
    tokens and the numbers are comparable across the run (and across runs).
    """
    was_training = model.training
    model.eval()
    results = {}
    for name, dataset in datasets.items():
        loss_sum, token_count = 0.0, 0
        for x, y in iter_eval_batches(
            dataset.val_tokens, seq_len, batch_size, max_tokens=eval_tokens
        ):
            with autocast():
                # only the loss: logits bound to a name would live through the next forward
                loss = model(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))[1]
            loss_sum += float(loss) * y.size
            token_count += y.size
        results[name] = loss_sum / max(token_count, 1)
    model.train(was_training)
    return results


def run(
    cfg: TrainConfig | dict[str, Any],
    resume: bool = False,
    progress: bool = True,
    *,
    start_over_if_corrupt: bool = False,
    stop_at_tokens: int | None = None,
) -> RunResult:
    """Train ``cfg`` to ``budget_tokens``; with ``resume=True`` continue from the newest valid checkpoint.

    Works unchanged under ``torchrun`` (DDP: gloo on CPU, NCCL on GPU; rank 0 writes files).
    Raises :class:`ConfigError` for bad input (an unwritable ``out_dir`` included, checked before
    any work), :class:`evertrain._lock.FolderLockedError` when another live process trains in
    ``out_dir`` (rank 0 holds the folder's lock for the whole run), and
    :class:`NonFiniteLossError` when the loss goes non-finite under ``nonfinite: stop`` (the last
    good checkpoint is kept). On SIGTERM/SIGINT it finishes the current step, saves a checkpoint
    and raises :class:`~evertrain.train.preempt.RunPreempted` (every rank after the same step).
    A resume whose every checkpoint is corrupt raises
    :class:`~evertrain.train.recovery.AllCheckpointsCorrupt` unless ``start_over_if_corrupt``;
    a full disk or read-only folder raises :class:`~evertrain.train.storage.StorageError`.
    ``stop_at_tokens`` pauses the run at the first step that reaches it (eval and checkpoint
    there, as at the end), for a caller that trains a run in legs (evertrain.tune) without
    changing its budget or schedule; ``run(cfg, resume=True)`` continues it.
    """
    if not isinstance(cfg, TrainConfig):
        cfg = TrainConfig.model_validate(cfg)
    check_installed(cfg.logging)  # an asked-for W&B / MLflow package, before any work
    device = resolve_device(cfg.device)
    info = distributed.setup(device.type)
    if info.enabled:  # a rank: stop with the launcher (lifeline.py), never train unsupervised
        lifeline.stop_with_parent()
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    previous_threads = torch.get_num_threads()
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cpu" and cfg.cpu_malloc_tuning:
        tune_glibc_malloc()
    trainer: _Trainer | None = None
    try:
        # SIGTERM/SIGINT: finish the step and save (preempt.py); handlers restored on return.
        with hold_run_folder(cfg.out_dir, info), preempt.PreemptionGuard() as preemption:
            trainer = _Trainer(cfg, info, device, progress)
            result = trainer.train(resume, preemption, start_over_if_corrupt, stop_at_tokens)
    except OSError as error:  # a full disk / read-only folder: one line, not a traceback
        if trainer is None or not storage.is_storage_error(error, Path(cfg.out_dir)):
            raise
        model = getattr(trainer, "model", None)  # sizes the first checkpoint, once built
        raise storage.run_storage_error(error, Path(cfg.out_dir), model) from None
    except preempt.RunPreempted:
        distributed.teardown(info)  # every rank stopped after the same step
        raise
    else:
        # Only where every rank got here: after an error a rank may still wait in a collective,
        # and destroying the group under it can hang; the process exits instead.
        distributed.teardown(info)
        return result
    finally:
        torch.use_deterministic_algorithms(previous_determinism)
        torch.set_num_threads(previous_threads)


class _Trainer:
    def __init__(
        self, cfg: TrainConfig, info: distributed.DistInfo, device: torch.device, progress: bool
    ) -> None:
        self.cfg, self.info, self.device, self.progress = cfg, info, device, progress
        self.out_dir = Path(cfg.out_dir)
        self.checkpoints_dir = self.out_dir / "checkpoints"
        if cfg.batch_size % info.world_size:
            raise ConfigError(
                f"batch_size: {cfg.batch_size} is not divisible by the world size {info.world_size}; "
                "batch_size counts sequences over all ranks"
            )
        self.rank_batch = cfg.batch_size // info.world_size

    # ------------------------------------------------------------------ setup
    def _build(self) -> None:
        cfg = self.cfg
        self.schedule = cfg.schedule  # parsed once, by TrainConfig
        self.unit = self.schedule.unit
        # One rule with continual plans (evertrain.train.budget): warn when the schedule ends
        # after the run (no final decay) or before its last step (steps at the floor LR).
        mismatch = schedule_fit_warning(
            self.schedule,
            budget_tokens=cfg.budget_tokens,
            tokens_per_step=cfg.tokens_per_step,
            total_override_hint=isinstance(cfg.schedule_spec, dict),  # --set needs a mapping
        )
        if self.info.is_main and mismatch:
            warnings.warn(mismatch, UserWarning, stacklevel=4)
        self.train_sets, self.eval_sets, vocab_size = _load_datasets(cfg)
        if is_hf(cfg.model):  # the model's embedding size, read from its config (no weights yet)
            vocab_size = hf_vocab_size(cfg.model)
        # Checksums and token ids vs vocabulary, before any work (rank 0 hashes, all refuse).
        check_run_data(self.train_sets, self.eval_sets, vocab_size, self.info)
        mixture = cfg.data.mixture or {name: 1.0 for name in cfg.data.train}
        try:
            self.sampler = MixtureSampler(
                self.train_sets,
                weights=mixture,
                seq_len=cfg.model.seq_len,
                batch_size=self.rank_batch,
                seed=cfg.seed,
                rank=self.info.rank,
                world_size=self.info.world_size,
            )
        except ValueError as error:  # DataError names the dataset / weight at fault
            raise ConfigError(f"data: {error}") from None
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        if is_hf(cfg.model):  # a Hugging Face causal LM (train/hf_model.py)
            self.model = build_hf_model(cfg.model, self.device)
            self.model_config = self.model.record()
        else:
            self.model_config = GPTConfig(
                vocab_size=vocab_size,
                n_layer=cfg.model.n_layer,
                n_head=cfg.model.n_head,
                d_model=cfg.model.d_model,
                seq_len=cfg.model.seq_len,
                positional=cfg.model.positional,
                tie_embeddings=cfg.model.tie_embeddings,
                dropout=cfg.model.dropout,
            )
            self.model = GPT(self.model_config).to(self.device)
        # FSDP shards in place, before the optimizer sees the parameters (fsdp.py).
        fsdp.prepare_model(self.model, cfg.parallel, self.info.world_size, self.device)
        self.optimizer = build_optimizer(
            self.model,
            weight_decay=cfg.optimizer.weight_decay,
            betas=tuple(cfg.optimizer.betas),
            eps=cfg.optimizer.eps,
            device_type=self.device.type,
            name=cfg.optimizer.name,
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.dtype == "float16")
        if cfg.dtype == "float32":
            self.autocast = contextlib.nullcontext
        else:
            dtype = torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float16
            self.autocast = lambda: torch.autocast(self.device.type, dtype=dtype)

    def _restore(self, resume: bool, start_over_if_corrupt: bool = False) -> None:
        """Set step/tokens/weights from a checkpoint of this run (resume) or a parent (init_from)."""
        cfg, info = self.cfg, self.info
        self.step, self.tokens, self.skipped, self.parent = 0, 0, 0, None
        self.saved_average: dict[str, Any] | None = None  # averaging state of a resume
        source: str | None = None
        refusal: str | None = None
        if info.is_main:
            # First of all: a full disk may have left a partial checkpoint holding the space the
            # writes below need (we hold the folder's lock, so no live writer owns it).
            storage.remove_partial_writes(self.checkpoints_dir)
            existing = recovery.checkpoint_folders(self.checkpoints_dir)
            log_path = self.out_dir / "log.jsonl"
            if not resume and (existing or (log_path.exists() and log_path.stat().st_size > 0)):
                source = "error"
            elif resume:
                source, refusal = recovery.resume_source(
                    self.checkpoints_dir, start_over_if_corrupt
                )
        source, refusal = distributed.broadcast_object((source, refusal), info)
        if refusal is not None:
            raise recovery.AllCheckpointsCorrupt(refusal)
        if source == "error":
            raise ConfigError(
                f"out_dir: {self.out_dir} already holds a run; pass resume=True (--resume) to continue it "
                "or choose a new out_dir"
            )
        if source is not None:
            state = load_training_state(source, self.model, self.optimizer)
            self._check_optimizer_kind(state, f"resume from {source}", "resume with the old one")
            self.scaler.load_state_dict(state["scaler"])
            self.sampler.load_state_dict(state["sampler"])
            _set_rng_state(state["rng"])
            self.autolrs_state = resumed_search_state(self.schedule, state)
            self.step, self.tokens = int(state["step"]), int(state["tokens"])
            self.skipped, self.parent = int(state.get("skipped", 0)), state.get("parent")
            self.saved_average = state.get("averaging")
            self.resumed_from = Path(source)
        else:
            self.resumed_from = None
            if cfg.init_from:
                self._fork(cfg.init_from)
        if info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            # config.yaml stays the start config; a changed config is appended to
            # config_history.jsonl with the step it takes effect at, one warning per field.
            for change in record_config(
                self.out_dir, cfg.to_dict(), step=self.step, tokens=self.tokens, fresh=not resume
            ):
                warnings.warn(f"resumed with a changed config: {change}", UserWarning, stacklevel=4)
            # Cut the log back to the checkpoint: the resumed run rewrites what came after it.
            truncate_log(self.out_dir / "log.jsonl", self.step)
            if self.checkpoints_dir.is_dir():  # finish a prune a crash interrupted
                ckpt.prune_checkpoints(self.checkpoints_dir, cfg.keep_last)
            ckpt.write_manifest(self.out_dir, self.parent)

    def _fork(self, init_from: str) -> None:
        try:
            path = ckpt.resolve_checkpoint(init_from)
            state = load_training_state(path, self.model, None)
            if self.cfg.init_optimizer:  # checked first: a state of another kind loads silently
                if "optimizer" not in state:  # e.g. `evertrain train average` output
                    raise ConfigError(
                        f"init_from: {path} holds no optimizer state (an averaged model); "
                        "set init_optimizer: false"
                    )
                self._check_optimizer_kind(state, f"init_from: {path}", "set init_optimizer: false")
                state = load_training_state(path, self.model, self.optimizer)
        except ckpt.CheckpointError as error:
            raise ConfigError(f"init_from: {error}") from None
        meta = state["meta"]
        self.parent = {
            "checkpoint": str(path.resolve()),
            "run": str(path.resolve().parent.parent),
            "step": meta.get("step"),
            "tokens": meta.get("tokens"),
        }

    # ------------------------------------------------------------------ pieces of a step
    def _save(self, name: str, pinned: bool, eval_losses: dict[str, float]) -> Path | None:
        path = None
        sharded = self.cfg.parallel.strategy == "fsdp"  # every rank writes its shards
        if self.info.is_main or sharded:
            state = {
                "scaler": self.scaler.state_dict(),
                "sampler": self.sampler.state_dict(),
                "rng": _rng_state(),
                "autolrs": search_checkpoint_state(self),  # an auto schedule's chosen LRs
                "step": self.step,
                "tokens": self.tokens,
                "skipped": self.skipped,
                "parent": self.parent,
                # The schedule's spec is in the config; checkpoints of earlier versions also
                # carry a "schedule" key, which nothing reads (they load all the same).
                "config": self.cfg.to_dict(),
                "model_config": self.model_config.__dict__,
            }
            meta = {"step": self.step, "tokens": self.tokens, "eval": eval_losses, "pinned": pinned}
            average = None
            if self.averager is not None:
                state["averaging"] = self.averager.state_dict()
                average = self.averager.saved_weights()
                meta["eval_avg"] = dict(self.average_eval) if eval_losses else {}
            try:
                if sharded:
                    # FSDP: the optimizer moments are in the DCP shards, not in state.pt
                    path = save_dcp_checkpoint(
                        self.checkpoints_dir, name, model=self.model, optimizer=self.optimizer,
                        state={**state, "optimizer": None}, meta=meta, info=self.info,
                    )  # fmt: skip
                else:
                    with evaluation_point(self.optimizer):  # schedule-free: save the averaged x
                        path = ckpt.save_checkpoint(
                            self.checkpoints_dir,
                            name,
                            model=self.model,
                            state={**state, "optimizer": self.optimizer.state_dict()},
                            meta=meta,
                            average=average,
                        )
            except OSError as error:  # e.g. disk full: free what the partial write took
                storage.remove_partial_writes(self.checkpoints_dir, pid=os.getpid())
                if error.filename is None:  # a write() names no file: name the checkpoint
                    error.filename = str(self.checkpoints_dir / name)
                raise
        if self.info.is_main:
            ckpt.prune_checkpoints(self.checkpoints_dir, self.cfg.keep_last)
            ckpt.write_manifest(self.out_dir, self.parent)
        distributed.barrier(self.info)
        return path

    def _check_optimizer_kind(self, state: dict[str, Any], where: str, fix: str) -> None:
        # AdamW moments and schedule-free state do not convert into each other.
        saved, wanted = saved_optimizer_name(state), self.cfg.optimizer.name
        if saved != wanted:
            raise ConfigError(
                f"{where}: its optimizer state is {saved}'s, this run's optimizer.name is "
                f"{wanted}; {fix}"
            )

    def optimizer_train_mode(self) -> None:
        """Schedule-free: a restored state is in eval mode (checkpoints hold x); go back to y."""
        if is_schedule_free(self.optimizer):
            self.optimizer.train()

    def _save_preempted(
        self,
        signum: int,
        saved_this_step: bool,
        last_checkpoint: Path | None,
        logger: RunLogger,
        bar: Any,
    ) -> Path | None:
        """Checkpoint the step just finished (unless the periodic save already did) and log it.

        No eval: a preempted job has seconds left (SLURM KillWait, Kubernetes grace period).
        """
        name = signal.Signals(signum).name
        if self.info.is_main:
            notice = (
                f"{name}: stopping after step {self.step}, saving a checkpoint "
                f"(a second signal, {preempt.DUPLICATE_WINDOW_S:g} s or more later, quits without it)"
            )
            if bar is not None:
                bar.write(notice, file=sys.stderr)
            else:
                print(notice, file=sys.stderr, flush=True)
        if not saved_this_step:
            saved = self._save(f"step_{self.step:08d}", pinned=False, eval_losses={})
            last_checkpoint = saved or last_checkpoint
        # In log.jsonl too: under torchrun the launcher's own exit status is 1, not 75, so a
        # requeue script can read the reason here.
        logger.log(
            {
                "kind": "preempted",
                "step": self.step,
                "tokens": self.tokens,
                "signal": name,
                "checkpoint": str(last_checkpoint) if last_checkpoint else None,
            }
        )
        return last_checkpoint

    def _evaluate(self) -> dict[str, float]:
        """Eval losses of the live weights; those of the average go to ``self.average_eval``."""
        losses: dict[str, float] = {}
        self.average_eval = {}
        if self.info.is_main or fsdp.is_sharded(self.model):  # FSDP: every rank's shards needed
            with evaluation_point(self.optimizer):  # schedule-free: evaluate the averaged x
                losses = self._eval_losses()
            if self.averager is not None:  # rank 0 only (averaging is refused with FSDP)
                with self.averager.swapped_in(self.model) as present:
                    self.average_eval = self._eval_losses() if present else {}
        return distributed.broadcast_object(losses, self.info)

    def _eval_losses(self) -> dict[str, float]:
        return evaluate(
            self.model,
            self.eval_sets,
            seq_len=self.cfg.model.seq_len,
            batch_size=self.cfg.batch_size,
            eval_tokens=self.cfg.data.eval_tokens,
            device=self.device,
            autocast=self.autocast,
        )

    # ------------------------------------------------------------------ the loop
    def train(
        self,
        resume: bool,
        preemption: preempt.PreemptionGuard,
        start_over_if_corrupt: bool = False,
        stop_at_tokens: int | None = None,
    ) -> RunResult:
        cfg, info = self.cfg, self.info
        self._build()
        self._restore(resume, start_over_if_corrupt)
        self.optimizer_train_mode()
        self.averager = None  # rank 0 alone averages: only rank 0 evaluates and saves
        self.average_eval: dict[str, float] = {}
        if info.is_main:
            self.averager = make_averager(
                cfg.averaging,
                self.model,
                self.saved_average,
                step=self.step,
                tokens=self.tokens,
            )
        started = time.perf_counter()
        tokens_per_step = cfg.tokens_per_step
        # The budget is in tokens: a resume with another batch size trains the remaining tokens
        # in steps of the new size (cfg.total_steps counts from token 0 at the new size only).
        # Unchanged batch size: the same number as cfg.total_steps.
        total_steps = self.step + budget_total_steps(
            max(0, cfg.budget_tokens - self.tokens), tokens_per_step
        )
        if stop_at_tokens is not None:  # a pause: the last step of this leg, not of the run
            leg = budget_total_steps(max(0, stop_at_tokens - self.tokens), tokens_per_step)
            total_steps = min(total_steps, self.step + leg)
        model: torch.nn.Module = self.model
        if cfg.compile:
            model = torch.compile(model)
        if info.enabled and not fsdp.is_sharded(self.model):
            model = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        # schedule: auto (autolrs.py) searches each stage's LR; before the log is opened
        self.search = attach_search(self, total_steps)
        logger = RunLogger(
            self.out_dir, tensorboard=cfg.tensorboard, enabled=info.is_main, config=cfg
        )
        nan_steps = _nan_hook_steps()
        clip = cfg.optimizer.grad_clip or math.inf
        params = [p for p in self.model.parameters() if p.requires_grad]
        final_eval: dict[str, float] = {}
        last_checkpoint = self.resumed_from
        stopped_by = 0  # number of the signal that stopped the run early, 0 if none
        if self.step >= total_steps:
            # Already finished (e.g. resumed after the final checkpoint): report the recorded eval.
            recorded = None
            if info.is_main:
                evals = [r for r in read_log(self.out_dir / "log.jsonl") if r.get("kind") == "eval"]
                recorded = evals[-1]["eval"] if evals else None
            recorded = distributed.broadcast_object(recorded, info)
            final_eval = recorded if recorded is not None else self._evaluate()
        bar = None
        if self.progress and info.is_main:  # a bar at a terminal, plain lines in a log file
            start = console.start_message(
                cfg,
                params=self.model.num_params(),
                total_steps=total_steps,
                step=self.step,
                tokens=self.tokens,
                resume=resume,
                resumed_from=self.resumed_from,
                parent=self.parent,
            )
            print(start, flush=True)
            bar = progress_bar(
                total_steps, initial=self.step, unit="step", desc="train", dynamic_ncols=True
            )
        try:
            while self.step < total_steps:
                if self.search is not None:  # at a stage's start: try its candidate LRs first
                    self.search.before_step(model, logger)
                step_start = time.perf_counter()
                tokens_before = self.tokens
                progress_value = self.tokens if self.unit == "tokens" else self.step
                lr = float(self.schedule(progress_value))
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                loss_sum = torch.zeros((), device=self.device)
                for micro_step in range(cfg.grad_accum):
                    x, y = self.sampler.next_batch()
                    x = torch.from_numpy(x).to(self.device, non_blocking=True)
                    y = torch.from_numpy(y).to(self.device, non_blocking=True)
                    # DDP: all-reduce gradients only on the last micro-step.
                    sync = fsdp.gradient_sync(model, skip=micro_step < cfg.grad_accum - 1)
                    with sync:
                        with self.autocast():
                            # Only the loss is kept: a name bound to the logits (batch x seq x
                            # vocab) would hold them through backward and the next forward.
                            loss = model(x, y)[1]
                        if self.step + 1 in nan_steps:
                            loss = loss * float("nan")
                        loss = loss / cfg.grad_accum
                        self.scaler.scale(loss).backward()
                    loss_sum += loss.detach()
                loss_mean = distributed.all_reduce_mean(loss_sum, info)
                self.scaler.unscale_(self.optimizer)
                grad_norm_tensor = fsdp.clip_grad_norm(params, clip)  # DTensor-aware
                # One host sync per step (as a hand-written loop's loss.item()): on a GPU every
                # extra sync leaves the device idle while the host queues the next kernels.
                synced = [loss_mean.float(), grad_norm_tensor.float()]
                if info.enabled:  # DDP: agree on a stop request; rides on the same sync
                    requested = torch.full((), float(preemption.requested), device=self.device)
                    synced.append(distributed.all_reduce_max(requested, info))
                loss_value, grad_norm, *stop_vote = torch.stack(synced).tolist()
                finite = math.isfinite(loss_value)
                if finite:
                    self.scaler.step(self.optimizer)
                else:
                    grad_norm = math.nan
                self.scaler.update()  # also after a skip: unscale_ must be followed by update()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                self.tokens += tokens_per_step
                if self.averager is not None:
                    self.averager.update(self.model, self.step, self.tokens)
                if not finite:
                    if cfg.nonfinite == "stop":
                        logger.log(
                            {
                                "kind": "nonfinite",
                                "step": self.step,
                                "tokens": self.tokens,
                                "lr": lr,
                                "loss": loss_value,
                            }
                        )
                        where = (
                            f"last good checkpoint: {last_checkpoint}"
                            if last_checkpoint
                            else "no checkpoint was written yet"
                        )
                        raise NonFiniteLossError(
                            f"non-finite loss ({loss_value}) at step {self.step} (tokens {self.tokens}); "
                            f"stopped, {where}. Lower the peak LR, keep grad_clip on, or set nonfinite: skip"
                        )
                    self.skipped += 1
                elapsed = time.perf_counter() - step_start
                last = self.step == total_steps
                if self.step % cfg.log_interval == 0 or last or not finite:
                    logger.log(
                        {
                            "kind": "train",
                            "step": self.step,
                            "tokens": self.tokens,
                            "lr": lr,
                            "loss": loss_value,
                            "grad_norm": grad_norm,
                            "tokens_per_s": tokens_per_step / elapsed if elapsed > 0 else None,
                            "tokens_per_source": dict(self.sampler.tokens_per_source),
                            "skipped": self.skipped,
                        }
                    )
                if bar is not None:  # the postfix first: a plain progress line shows this step's
                    bar.set_postfix(
                        loss=f"{loss_value:.4f}",
                        lr=f"{lr:.2e}",
                        tok_s=f"{tokens_per_step / elapsed:,.0f}",
                        refresh=False,
                    )
                    bar.update(1)
                named = [t for t in cfg.checkpoint_at_tokens if tokens_before < t <= self.tokens]
                save_due = (
                    last
                    or named
                    or _crossed(tokens_before, self.tokens, cfg.checkpoint_interval_tokens)
                )
                if save_due or _crossed(tokens_before, self.tokens, cfg.eval_interval_tokens):
                    final_eval = self._evaluate()
                    logger.log(
                        {
                            "kind": "eval",
                            "step": self.step,
                            "tokens": self.tokens,
                            "eval": final_eval,
                            # the average's losses: a key of their own, so readers of "eval"
                            # see the live weights only
                            **({"eval_avg": self.average_eval} if self.average_eval else {}),
                        }
                    )
                    if bar is not None:
                        bar.write(console.eval_message(self.step, self.tokens, final_eval))
                if save_due:
                    name = f"tokens_{named[0]}" if named else f"step_{self.step:08d}"
                    last_checkpoint = (
                        self._save(name, pinned=bool(named), eval_losses=final_eval)
                        or last_checkpoint
                    )
                _kill_hook(self.step)
                # A signal stops the run here, after a whole step; one rank's vote stops all.
                stop = int(stop_vote[0]) if info.enabled else preemption.requested
                if stop and not last:
                    last_checkpoint = self._save_preempted(
                        stop, bool(save_due), last_checkpoint, logger, bar
                    )
                    stopped_by = stop
                    break
        finally:
            logger.close()
            if bar is not None:
                bar.close()
            # Drop the DDP wrapper now, not with this frame: a RunPreempted's traceback keeps the
            # frame, and a DDP reducer freed after the process group is destroyed frees the group
            # with the GIL held, which can deadlock (distributed.teardown).
            model = None
        if last_checkpoint is None and info.is_main:
            found = ckpt.latest_valid_checkpoint(self.checkpoints_dir)
            last_checkpoint = found[0] if found else None
        # Only rank 0 saves, so only it knows the last checkpoint: every rank returns its path.
        last_checkpoint = distributed.broadcast_object(last_checkpoint, info)
        result = RunResult(
            out_dir=self.out_dir,
            tokens=self.tokens,
            steps=self.step,
            wall_seconds=time.perf_counter() - started,
            final_eval=final_eval,
            last_checkpoint=last_checkpoint,
            skipped_steps=self.skipped,
            params=self.model.num_params(),
            preempted=bool(stopped_by),
        )
        if stopped_by:
            name = signal.Signals(stopped_by).name
            raise preempt.RunPreempted(
                f"preempted by {name} at step {self.step} of {total_steps} "
                f"(tokens {self.tokens:,}); saved checkpoint {last_checkpoint}; "
                "continue with --resume (run(cfg, resume=True))",
                result,
                name,
            )
        return result


def history(out_dir: str | Path, kind: str = "train") -> list[dict[str, Any]]:
    """The ``kind`` records of a run's ``log.jsonl`` (handy in notebooks and tests)."""
    return [
        record for record in read_log(Path(out_dir) / "log.jsonl") if record.get("kind") == kind
    ]


__all__ = ["RunResult", "NonFiniteLossError", "evaluate", "history", "run", "resolve_device"]
