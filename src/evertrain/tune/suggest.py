"""Laws in the loop for a budget-free run: which decay to branch off for each budget.

A budget-free (WSD-style) run trains one *main* run at constant LR and forks a short *decay
branch* from it for each budget it releases (:mod:`evertrain.continual.branches`). Which decay
is best for a budget (how long, which shape) is usually guessed. Here the multi-power law
(Luo et al. 2025; :class:`evertrain.laws.MultiPowerLaw`) is fitted on the main run plus one (or
more) short decay branches forked from it, and then predicts, for every budget and every
candidate decay (length fraction x shape: linear / cosine / 1-sqrt / exponential), the loss at
the budget's last step, with a bootstrap prediction interval (:mod:`evertrain.laws.intervals`).
The best candidate per budget becomes a branch spec: the decay schedule (a ``wsd`` spec with
``decay = total``, in tokens, from the main run's constant LR to the floor) and its fork point.

This module composes laws, schedules and continual through their public APIs; torch is only
imported by :func:`launch` (it trains).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evertrain._atomic import atomic_write_json
from evertrain.continual.runs import Run, RunError, load_run
from evertrain.laws import LawError, LossCurve, MultiPowerLaw, lr_array
from evertrain.laws.logs import load_log_curve
from evertrain.schedules import ScheduleError, from_spec, get

#: decay shapes a candidate may take (the names of ``evertrain.schedules``' decay shapes)
SHAPES = ("linear", "cosine", "1-sqrt", "exponential")
DEFAULT_SHAPES = SHAPES
DEFAULT_LENGTHS = (0.1, 0.2, 0.3)
DEFAULT_LEVEL = 0.9
DEFAULT_BOOTSTRAP = 100


class SuggestError(ValueError):
    """Bad input for ``schedule suggest``; the message names the run, flag or field and the fix."""


@dataclass
class MainRun:
    """The constant-LR main run: its folder, schedule, LR and step size."""

    run: Run
    schedule: dict[str, Any]
    peak: float
    tokens_per_step: int
    warmup_tokens: float

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def steps(self) -> int:
        return int(max((int(r["step"]) for r in self.run.train_records), default=0))

    def lr(self, n_steps: int) -> np.ndarray:
        """The main run's per-step LR for updates ``0 .. n_steps - 1`` (constant past its log)."""
        return lr_array(self.schedule, n_steps, tokens_per_step=self.tokens_per_step)


@dataclass
class Candidate:
    """One decay for one budget and its predicted final loss with the band at ``level``."""

    shape: str
    length: float  # the decay's share of the budget, as asked (--lengths)
    fork_tokens: int
    decay_tokens: int
    predicted: float
    lower: float
    upper: float

    @property
    def label(self) -> str:
        share = self.decay_tokens / (self.fork_tokens + self.decay_tokens)
        return f"{self.shape} {self.decay_tokens:,} tok ({share:.0%})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "length": self.length,
            "fork_tokens": self.fork_tokens,
            "decay_tokens": self.decay_tokens,
            "predicted": self.predicted,
            "lower": self.lower,
            "upper": self.upper,
        }


@dataclass
class BudgetSuggestion:
    """The candidates of one budget, best (lowest predicted final loss) first."""

    budget_tokens: int
    candidates: list[Candidate]
    peak: float
    floor: float

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    @property
    def runner_up(self) -> Candidate | None:
        return self.candidates[1] if len(self.candidates) > 1 else None

    def schedule(self, candidate: Candidate | None = None) -> dict[str, Any]:
        """The branch's schedule spec (token units, progress from the fork): ``wsd`` with no
        stable phase, from the main run's LR to the floor over the decay's tokens."""
        return decay_spec(candidate or self.best, self.peak, self.floor)

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget_tokens": self.budget_tokens,
            "best": self.best.to_dict(),
            "runner_up": self.runner_up.to_dict() if self.runner_up else None,
            "schedule": self.schedule(),
            "candidates": [c.to_dict() for c in self.candidates],
        }


@dataclass
class Suggestion:
    """What ``schedule suggest`` found: the fitted law and one :class:`BudgetSuggestion` per budget."""

    main: MainRun
    branches: list[Path]
    law: MultiPowerLaw
    level: float
    budgets: list[BudgetSuggestion] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "main_run": str(self.main.path.resolve()),
            "fitted_branches": [str(p.resolve()) for p in self.branches],
            "tokens_per_step": self.main.tokens_per_step,
            "peak": self.main.peak,
            "law": {"name": self.law.name, "params": self.law.params},
            "level": self.level,
            "budgets": [b.to_dict() for b in self.budgets],
        }


# --------------------------------------------------------------------------------------------
# Reading the runs
# --------------------------------------------------------------------------------------------


def _load(path: str | Path, what: str) -> Run:
    try:
        run = load_run(path)
    except RunError as error:
        raise SuggestError(f"{what}: {error}") from None
    if not run.train_records:
        raise SuggestError(f"{what} {path}: log.jsonl has no train records; train it first")
    return run


def _spec(run: Run) -> dict[str, Any]:
    schedule = run.config.get("schedule")
    if schedule is None:
        raise SuggestError(f"{run.path}: no schedule in its config.yaml; is it an evertrain run?")
    try:
        return from_spec(schedule).to_spec()
    except ScheduleError as error:
        raise SuggestError(f"{run.path}: its schedule is unreadable ({error})") from None


def read_main(run_dir: str | Path) -> MainRun:
    """The main run of ``run_dir``; a SuggestError unless its schedule is ``constant``."""
    from evertrain.train.config import tokens_per_step  # pydantic only, no torch

    run = _load(run_dir, "RUN_DIR")
    spec = _spec(run)
    if spec.get("name") != "constant":
        raise SuggestError(
            f"{run_dir}: its schedule is {spec.get('name')!r}, not 'constant': suggest needs a "
            "constant-LR main run (warmup allowed) to fork decay branches from"
        )
    step = tokens_per_step(run.config)
    warmup = float(spec.get("warmup") or 0)
    warmup_tokens = warmup if spec.get("unit") == "tokens" else warmup * step
    return MainRun(run, spec, float(spec["value"]), step, warmup_tokens)


def find_branches(main: MainRun) -> list[Path]:
    """Runs forked from ``main`` (found as ``evertrain continual branches`` finds them) whose
    schedule decays: the decay branches the law can be fitted on."""
    from evertrain.continual.branches import branch_tree

    found = []
    for child in branch_tree(main.path).children:
        if child.kind != "run" or not child.run.train_records:
            continue
        try:
            spec = from_spec(child.schedule).to_spec()
        except (ScheduleError, TypeError):
            continue
        if spec.get("name") != "constant":
            found.append(child.run.path)
    return found


def _fork_step(main: MainRun, branch: Run) -> int:
    parent = branch.parent or {}
    if not parent.get("run") or Path(parent["run"]).resolve() != main.path.resolve():
        raise SuggestError(
            f"--branch {branch.path}: its manifest.json names parent {parent.get('run')!r}, not "
            f"the main run {main.path}: give a decay branch forked from RUN_DIR"
        )
    tokens = int(parent.get("tokens") or 0)
    if tokens % main.tokens_per_step:
        raise SuggestError(
            f"--branch {branch.path}: forked at {tokens:,} tokens, not a whole step of "
            f"{main.tokens_per_step} tokens of the main run"
        )
    return tokens // main.tokens_per_step


def branch_curve(main: MainRun, branch_dir: str | Path) -> tuple[LossCurve, float]:
    """The decay branch as one curve of the whole model's life (the main run's LR up to the
    fork, then the branch's), and the branch's floor as a fraction of the main run's LR."""
    branch = _load(branch_dir, "--branch")
    fork = _fork_step(main, branch)
    try:
        curve, _ = load_log_curve(branch.path)
    except LawError as error:
        raise SuggestError(f"--branch {branch.path}: {error}") from None
    if not np.any(np.diff(curve.lr) < 0):
        raise SuggestError(
            f"--branch {branch.path}: its LR never decreases: give a decay branch (a fork whose "
            "schedule anneals the LR)"
        )
    lr = np.concatenate([main.lr(fork), curve.lr])
    joined = LossCurve(branch.path.name, curve.steps + fork, curve.loss, lr)
    spec = _spec(branch)
    floor = float(spec.get("floor", curve.lr[int(curve.steps[-1])])) / main.peak
    return joined, floor


def main_curve(main: MainRun) -> LossCurve:
    try:
        curve, _ = load_log_curve(main.path)
    except LawError as error:
        raise SuggestError(f"RUN_DIR {main.path}: {error}") from None
    # the law is infinite where no LR has been applied yet (a warmup's first update at LR 0)
    keep = np.cumsum(curve.lr)[curve.steps] > 0
    if not keep.any():
        raise SuggestError(f"RUN_DIR {main.path}: no loss logged after the LR became positive")
    return LossCurve(main.path.name, curve.steps[keep], curve.loss[keep], curve.lr)


# --------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------


def decay_spec(candidate: Candidate, peak: float, floor: float) -> dict[str, Any]:
    """The decay branch's schedule: ``wsd`` with ``decay = total`` (no stable phase, no
    warmup), from ``peak`` to ``floor`` over ``candidate.decay_tokens`` tokens."""
    tokens = candidate.decay_tokens
    return get(
        "wsd",
        unit="tokens",
        peak=peak,
        floor=floor,
        total=tokens,
        decay=tokens,
        warmup=0,
        decay_shape=candidate.shape,
    ).to_spec()


def candidate_lr(
    main: MainRun, fork_step: int, decay_steps: int, spec: dict[str, Any]
) -> np.ndarray:
    """The per-step LR a branch with ``spec`` forked at ``fork_step`` trains with, as the trainer
    applies it (token schedule of the branch evaluated at the tokens before each update)."""
    decay = lr_array(spec, decay_steps, tokens_per_step=main.tokens_per_step)
    return np.concatenate([main.lr(fork_step), decay])


def parse_budgets(text: str) -> list[int]:
    """``"1e8,2e8,4e8"`` -> ``[100000000, 200000000, 400000000]`` (tokens)."""
    budgets = []
    for item in (part.strip() for part in text.split(",")):
        try:
            value = float(item)
        except ValueError:
            raise SuggestError(
                f"--budgets {text!r}: {item!r} is not a number of tokens (e.g. --budgets 1e8,2e8)"
            ) from None
        if not math.isfinite(value) or value <= 0 or value != int(value):
            raise SuggestError(f"--budgets {text!r}: {item!r} must be a positive whole token count")
        budgets.append(int(value))
    if not budgets:
        raise SuggestError("--budgets: name one or more token budgets, e.g. --budgets 1e8,2e8")
    return sorted(set(budgets))


def parse_shapes(text: str) -> list[str]:
    shapes = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in shapes if s not in SHAPES]
    if bad or not shapes:
        raise SuggestError(f"--decays {text!r}: choose from {','.join(SHAPES)}")
    return shapes


def parse_lengths(text: str) -> list[float]:
    try:
        lengths = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SuggestError(
            f"--lengths {text!r}: give fractions of the budget, e.g. 0.1,0.2"
        ) from None
    if not lengths or any(not 0 < f < 1 for f in lengths):
        raise SuggestError(f"--lengths {text!r}: each must be in (0, 1), e.g. 0.1,0.2,0.3")
    return sorted(set(lengths))


def _fork(
    main: MainRun, budget_steps: int, length: float, allowed: Sequence[int] | None
) -> int | None:
    """The fork step of a decay over ``length`` of the budget; with ``allowed`` (fork steps
    where the main run holds a checkpoint) the latest of those at or before it that makes the
    decay at most twice as long as asked, or None (a far checkpoint is not that decay)."""
    wanted = int(round((1.0 - length) * budget_steps))
    if allowed is None:
        return wanted
    earliest = wanted - length * budget_steps
    earlier = [s for s in allowed if earliest <= s <= wanted]
    return max(earlier) if earlier else None


# --------------------------------------------------------------------------------------------
# The suggestion
# --------------------------------------------------------------------------------------------


def _floor(given: float | None, fitted: float, branch: Path, shapes: Sequence[str]) -> float:
    """The decays' floor / the main LR: ``--floor``, else the first fitted branch's."""
    if given is not None and not 0 <= given < 1:
        raise SuggestError(
            f"--floor {given:g}: give the floor as a fraction of the main LR in [0, 1)"
        )
    floor = fitted if given is None else given
    if not 0 <= floor < 1:
        raise SuggestError(
            f"--branch {branch}: it decays to {floor:g} x the main LR, not below it: pass --floor"
        )
    if floor == 0 and "exponential" in shapes:
        raise SuggestError(
            "--decays exponential needs a floor > 0 and the fitted branch decays to 0: pass "
            "--floor (e.g. 0.1) or drop exponential from --decays"
        )
    return floor


def fit_law(curves: list[LossCurve], *, bootstrap: int, seed: int = 0) -> MultiPowerLaw:
    law = MultiPowerLaw()
    try:
        law.fit(curves, seed=seed, method="multistart", n_starts=4, bootstrap=bootstrap)
    except LawError as error:
        raise SuggestError(f"fitting the multi-power law: {error}") from None
    if law.bootstrap:
        # a resample refit that left the law's domain (NaN/inf parameters) says nothing
        kept = [p for p in law.bootstrap["params"] if all(math.isfinite(v) for v in p.values())]
        law.bootstrap["params"] = kept
        if len(kept) < 2:
            law.bootstrap = None
    return law


def suggest(
    run_dir: str | Path,
    budgets: Sequence[int],
    *,
    shapes: Sequence[str] = DEFAULT_SHAPES,
    lengths: Sequence[float] = DEFAULT_LENGTHS,
    branches: Sequence[str | Path] | None = None,
    floor_fraction: float | None = None,
    level: float = DEFAULT_LEVEL,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    fork_tokens: Sequence[int] | None = None,
    seed: int = 0,
) -> Suggestion:
    """Fit the multi-power law on ``run_dir`` (constant LR) and its decay branches (``branches``,
    default: the decaying forks found beside it) and rank, for every budget, each decay
    ``shape x length`` by its predicted final loss.

    ``fork_tokens``: forks may only be at these main-run token counts (its checkpoints, to
    launch the branches): each candidate forks at the latest of them before ``(1 - length)·B``.
    ``floor_fraction``: the decays' floor / the main run's LR (default: the fitted branch's).
    """
    main = read_main(run_dir)
    shapes = list(shapes)
    if not shapes or any(s not in SHAPES for s in shapes):
        raise SuggestError(f"--decays {shapes!r}: choose from {','.join(SHAPES)}")
    if not lengths or any(not 0 < f < 1 for f in lengths):
        raise SuggestError(f"--lengths {list(lengths)!r}: each must be in (0, 1)")
    branch_dirs = [Path(b) for b in branches] if branches else find_branches(main)
    if not branch_dirs:
        raise SuggestError(
            f"{run_dir}: no decay branch forked from it was found beside it: train one short decay "
            "branch from a checkpoint of the main run (init_from, a decaying schedule) or name it "
            "with --branch DIR"
        )
    step = main.tokens_per_step
    warmup_steps = math.ceil(main.warmup_tokens / step)
    budget_steps = {b: -(-int(b) // step) for b in budgets}
    for budget, steps in budget_steps.items():
        earliest = _fork(main, steps, max(lengths), None)
        if earliest is None or earliest <= warmup_steps:
            raise SuggestError(
                f"--budgets: budget {budget:,} tokens is not past the main run's fork points: a "
                f"decay over {max(lengths):.0%} of it would fork at {earliest * step:,} tokens, "
                f"inside the main run's warmup ({main.warmup_tokens:,.0f} tokens); give larger "
                "budgets or shorter --lengths"
            )
    allowed = None
    if fork_tokens is not None:
        allowed = sorted({int(t) // step for t in fork_tokens if int(t) % step == 0})
    fitted = [branch_curve(main, b) for b in branch_dirs]
    floor = _floor(floor_fraction, fitted[0][1], branch_dirs[0], shapes)
    law = fit_law([main_curve(main), *(c for c, _ in fitted)], bootstrap=bootstrap, seed=seed)
    result = Suggestion(main=main, branches=branch_dirs, law=law, level=level)
    for budget in sorted(budget_steps):
        steps = budget_steps[budget]
        candidates = _rank(main, law, steps, shapes, lengths, floor, level, allowed)
        if not candidates:
            raise SuggestError(
                f"--budgets: budget {budget:,} is not past the main run's fork points: no "
                f"checkpoint of it lies where a decay over {', '.join(f'{f:.0%}' for f in lengths)} "
                f"of the budget would fork (checkpoints at tokens {sorted(fork_tokens or [])}); "
                "train the main run further with checkpoints pinned there (checkpoint_at_tokens)"
            )
        result.budgets.append(
            BudgetSuggestion(
                budget, candidates, peak=main.peak, floor=float(f"{main.peak * floor:.12g}")
            )
        )
    return result


def _rank(
    main: MainRun,
    law: MultiPowerLaw,
    budget_steps: int,
    shapes: Sequence[str],
    lengths: Sequence[float],
    floor: float,
    level: float,
    allowed: Sequence[int] | None,
) -> list[Candidate]:
    step = main.tokens_per_step
    candidates, seen = [], set()
    for length in lengths:
        fork = _fork(main, budget_steps, length, allowed)
        if fork is None or fork >= budget_steps:
            continue
        for shape in shapes:
            if (shape, fork) in seen:
                continue  # two lengths snapped to one checkpoint: one candidate
            seen.add((shape, fork))
            decay_steps = budget_steps - fork
            candidate = Candidate(shape, length, fork * step, decay_steps * step, 0.0, 0.0, 0.0)
            spec = decay_spec(candidate, main.peak, float(f"{main.peak * floor:.12g}"))
            lr = candidate_lr(main, fork, decay_steps, spec)
            band = law_band_at_end(law, lr, level)
            if not all(math.isfinite(v) for v in band):
                raise SuggestError(
                    f"the fitted multi-power law predicts {band[0]:g} for a {shape} decay at "
                    f"{budget_steps * step:,} tokens: the fit failed; log more steps of the main "
                    "run and the decay branch (log_interval) or give a longer decay branch"
                )
            candidate.predicted, candidate.lower, candidate.upper = band
            candidates.append(candidate)
    return sorted(candidates, key=lambda c: (c.predicted, c.decay_tokens, c.shape))


def law_band_at_end(law: MultiPowerLaw, lr: np.ndarray, level: float) -> tuple[float, float, float]:
    """The law's prediction at the last step of ``lr`` with its band (none without bootstrap)."""
    last = np.array([len(lr) - 1])
    if not law.bootstrap:
        value = float(law.predict_lr(lr, last)[0])
        return value, value, value
    band = law.predict_band(lr, last, level)
    return float(band.pred[0]), float(band.lower[0]), float(band.upper[0])


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def format_table(result: Suggestion) -> str:
    """budget | best decay | predicted final loss [interval] | runner-up."""
    level = f"{result.level:.0%}"
    rows = [("budget", "best decay", f"predicted final loss [{level}]", "runner-up")]
    for budget in result.budgets:
        best, second = budget.best, budget.runner_up
        rows.append(
            (
                f"{budget.budget_tokens:,}",
                f"{best.label} from {best.fork_tokens:,}",
                f"{best.predicted:.4f} [{best.lower:.4f}, {best.upper:.4f}]",
                f"{second.label}: {second.predicted:.4f}" if second else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    names = ", ".join(p.name for p in result.branches)
    lines.append(
        f"multi-power law fitted on {result.main.path.name} + {names}; floor "
        f"{result.budgets[0].floor:.3g}, peak {result.main.peak:.3g}"
    )
    return "\n".join(line.rstrip() for line in lines)


def spec_name(budget: int) -> str:
    return f"decay-{budget}.json"


def write_specs(result: Suggestion, out_dir: str | Path) -> list[Path]:
    """One schedule spec per budget (``decay-<budget>.json``, readable by ``from_spec`` and
    usable as a branch's ``schedule:``) and ``suggest.json`` (fork points, predictions, law)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for budget in result.budgets:
        path = out / spec_name(budget.budget_tokens)
        atomic_write_json(path, budget.schedule())
        written.append(path)
    summary = result.to_dict()
    for entry in summary["budgets"]:
        entry["spec"] = spec_name(entry["budget_tokens"])
    atomic_write_json(out / "suggest.json", summary)
    return [*written, out / "suggest.json"]


# --------------------------------------------------------------------------------------------
# Launching the suggested branches
# --------------------------------------------------------------------------------------------


def main_checkpoints(run_dir: str | Path) -> dict[int, Path]:
    """The main run's kept checkpoints by token count (torch: the trainer's own listing)."""
    from evertrain.train.checkpoint import list_checkpoints

    return {
        int(meta.get("tokens", -1)): path.resolve()
        for path, meta in list_checkpoints(Path(run_dir) / "checkpoints")
    }


def branch_dir(result: Suggestion, budget: BudgetSuggestion) -> Path:
    """Where the suggested branch of ``budget`` trains: beside the main run."""
    return result.main.path.parent / f"suggest-{budget.budget_tokens}"


def launch(result: Suggestion, *, progress: bool = True) -> dict[int, Any]:
    """Train the best branch of every budget from the main run's checkpoint at its fork (the
    continual runner: resumable, re-read if finished); returns the StageRun by budget."""
    from evertrain.continual.runner import ContinualError, Setup, run_stage, stage_config

    config = result.main.run.config
    checkpoints = main_checkpoints(result.main.path)
    missing = [b for b in result.budgets if b.best.fork_tokens not in checkpoints]
    if missing:
        tokens = missing[0].best.fork_tokens
        raise SuggestError(
            f"{result.main.path}: no checkpoint at tokens {tokens:,} (the fork of budget "
            f"{missing[0].budget_tokens:,}); pin one (checkpoint_at_tokens) or train further"
        )
    train = {
        key: config[key]
        for key in ("batch_size", "grad_accum", "device", "seed", "dtype", "optimizer")
        if key in config
    }
    data = config.get("data") or {}
    if "eval_tokens" in data:
        train["eval_tokens"] = data["eval_tokens"]
    setup = Setup(model=config["model"], train=train, eval=dict(data.get("eval") or {}))
    offset = int(result.main.run.meta.get("offset_tokens", 0))
    runs = {}
    for budget in result.budgets:
        best = budget.best
        try:
            stage = stage_config(
                setup,
                out_dir=branch_dir(result, budget),
                train_sets=dict(data.get("train") or {}),
                mixture=dict(data.get("mixture") or {n: 1.0 for n in data.get("train") or {}}),
                schedule=from_spec(budget.schedule()),
                tokens=best.decay_tokens,
                init_from=checkpoints[best.fork_tokens],
            )
            runs[budget.budget_tokens] = run_stage(
                stage,
                name=branch_dir(result, budget).name,
                recipe="wsd-branch",
                old=[],
                new=list(data.get("train") or {}),
                offset_tokens=offset + best.fork_tokens,
                progress=progress,
                extra_meta={"budget": budget.budget_tokens, "suggested": best.to_dict()},
            )
        except ContinualError as error:
            raise SuggestError(str(error)) from None
    return runs
