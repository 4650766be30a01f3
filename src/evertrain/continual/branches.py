"""Decay branches: one constant-LR main run, a released model for every budget (WSD / WSD-S).

A WSD schedule (warmup → stable → decay; Hägele et al., 2024, arXiv:2405.18392) only decays at
the end, so the stable phase is shared by every budget: train one *main* run at constant LR,
pin a checkpoint at ``(1 − decay_fraction)·B`` for each budget B, and fork a short *decay
branch* from it (``init_from``) that anneals to the floor over the last ``decay_fraction·B``
tokens. Budgets B₁ < B₂ < B₃ then cost ``(1 − d)·B₃ + d·(B₁ + B₂ + B₃)`` tokens instead of
``B₁ + B₂ + B₃`` for separate cosine runs. WSD-S (Wen et al., 2024, arXiv:2410.05192) goes on
from a *decayed* branch at the high LR again: :func:`resume_from_branch`.

An *average branch* (:func:`average_branch`) is the other kind: no decay steps at all, the
model for budget B is the uniform average of the main run's checkpoints in a window before B
(LAWA, Sanyal et al. 2023, arXiv:2306.03241; checkpoint averaging as in Hägele et al. 2024), made
by the trainer's own ``evertrain train average``. Its folder looks like a run (a
``manifest.json`` naming the parent, ``continual.json`` with ``kind: average``, one eval record)
so the tree, its listing and its plot show both kinds.

The tree is recorded by the trainer itself: each fork's ``manifest.json`` names its parent run
and checkpoint. :func:`branch_tree` rebuilds it from the files, :func:`format_tree` lists it
(``evertrain continual branches RUN``) and :func:`plot_tree` draws it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evertrain._atomic import atomic_write_bytes, atomic_write_json
from evertrain.continual.forgetting import before_eval
from evertrain.continual.recipes import token_schedule
from evertrain.continual.report import plot_panels
from evertrain.continual.runner import (
    ContinualError,
    Setup,
    StageRun,
    newest_checkpoint,
    run_stage,
    stage_config,
)
from evertrain.continual.runs import Run, RunError, load_run, mean, write_meta
from evertrain.schedules import Schedule, from_spec


@dataclass
class BranchNode:
    """One run in a branch tree. ``offset_tokens`` = tokens trained into the model before this
    run started (the sum of the fork points up the lineage); ``fork_tokens`` = the parent's
    token count at the fork."""

    run: Run
    fork_checkpoint: str | None
    fork_tokens: int
    offset_tokens: int
    children: list[BranchNode] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def kind(self) -> str:
        """``average`` for an average branch, ``run`` for a trained run (main, decay branch)."""
        return str(self.run.meta.get("kind", "run"))

    @property
    def schedule(self) -> Any:
        return self.run.config.get("schedule")

    @property
    def tokens(self) -> int:
        return self.run.tokens

    @property
    def final_eval(self) -> dict[str, float]:
        return self.run.final_eval

    def walk(self) -> list[BranchNode]:
        """This node and all its descendants, depth first (children by fork point)."""
        nodes = [self]
        for child in sorted(self.children, key=lambda c: (c.fork_tokens, c.name)):
            nodes.extend(child.walk())
        return nodes

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.run.path),
            "fork_checkpoint": self.fork_checkpoint,
            "fork_tokens": self.fork_tokens,
            "offset_tokens": self.offset_tokens,
            "tokens": self.tokens,
            "schedule": self.schedule,
            "final_eval": self.final_eval,
            "children": [
                c.to_dict() for c in sorted(self.children, key=lambda c: (c.fork_tokens, c.name))
            ],
        }


def _candidate_runs(root: Path, search: list[Path]) -> list[Path]:
    found: list[Path] = []
    for folder in search:
        if not folder.is_dir():
            continue
        for manifest in (
            sorted(folder.glob("manifest.json"))
            + sorted(folder.glob("*/manifest.json"))
            + sorted(folder.glob("*/*/manifest.json"))
        ):
            run_dir = manifest.parent
            if run_dir.resolve() not in [f.resolve() for f in found]:
                found.append(run_dir)
    return found


def branch_tree(root: str | Path, search: list[str | Path] | None = None) -> BranchNode:
    """The tree of runs forked (directly or transitively) from ``root``.

    Forks are found among the run directories in ``search`` (default: ``root``'s parent folder
    and ``root`` itself, two levels deep) whose ``manifest.json`` names a parent run.
    """
    root = Path(root)
    try:
        root_run = load_run(root)
    except RunError as error:
        raise ContinualError(str(error)) from None
    folders = [Path(s) for s in search] if search else [root.parent, root]
    runs = []
    for path in _candidate_runs(root, folders):
        try:
            runs.append(load_run(path))
        except RunError:
            continue  # a half-written neighbour is not part of this tree
    by_parent: dict[Path, list[Run]] = {}
    for run in runs:
        parent = run.parent
        if parent and parent.get("run"):
            by_parent.setdefault(Path(parent["run"]).resolve(), []).append(run)

    def build(
        run: Run, fork_checkpoint: str | None, fork_tokens: int, offset: int, seen: set[Path]
    ) -> BranchNode:
        node = BranchNode(run, fork_checkpoint, fork_tokens, offset)
        key = run.path.resolve()
        seen = seen | {key}
        for child in by_parent.get(key, []):
            if child.path.resolve() in seen:
                continue  # a cycle in hand-edited manifests: never recurse forever
            parent = child.parent or {}
            tokens = int(parent.get("tokens") or 0)
            checkpoint = Path(str(parent.get("checkpoint", ""))).name or None
            node.children.append(build(child, checkpoint, tokens, offset + tokens, seen))
        return node

    return build(root_run, None, 0, int(root_run.meta.get("offset_tokens", 0)), set())


def _describe_schedule(schedule: Any) -> str:
    """A short description of a saved schedule spec, e.g. ``linear 1.0e-03 → 1.0e-04``.

    The spec is read back through the schedule parser, which turns numbers saved as strings
    (``peak: '3e-3'`` in configs written by older versions) into numbers."""
    if isinstance(schedule, str):
        return schedule
    if not isinstance(schedule, dict):
        return "?"
    try:
        spec = from_spec(schedule).to_spec()
    except ValueError:
        return str(schedule.get("name", "?"))  # unreadable spec: its name is all we can say
    name = spec.get("name", "?")
    if name == "constant" and "value" in spec:
        warmup = float(spec.get("warmup") or 0)
        return f"constant {float(spec['value']):.2e}" + (
            f", warmup {warmup:,.0f}" if warmup else ""
        )
    if name == "piecewise_linear":
        values = [float(p[1]) for p in spec.get("points", [])]
        return f"piecewise {' → '.join(f'{v:.1e}' for v in values)}"
    peak, floor = spec.get("peak"), spec.get("floor", 0.0)
    if isinstance(peak, (int, float)) and isinstance(floor, (int, float)):
        return f"{name} {peak:.1e} → {floor:.1e}"
    return str(name)


def _describe_average(meta: dict[str, Any]) -> str:
    """``average of 3 checkpoints at tokens 768–1,024, no decay``."""
    tokens = [int(source.get("tokens") or 0) for source in meta.get("sources", [])]
    if not tokens:
        return "average"
    return (
        f"average of {len(tokens)} checkpoints at tokens {min(tokens):,}–{max(tokens):,}, no decay"
    )


def format_tree(node: BranchNode) -> str:
    """An indented listing: name, fork point, schedule, tokens, final losses."""
    lines: list[str] = []

    def visit(current: BranchNode, prefix: str, last: bool, depth: int) -> None:
        losses = ", ".join(f"{k}={v:.4f}" for k, v in current.final_eval.items()) or "no eval"
        fork = f" forked at {current.fork_tokens:,} ({current.fork_checkpoint})" if depth else ""
        span = f"tokens {current.offset_tokens:,} → {current.offset_tokens + current.tokens:,}"
        connector = "" if depth == 0 else ("└─ " if last else "├─ ")
        what = (
            _describe_average(current.run.meta)
            if current.kind == "average"
            else _describe_schedule(current.schedule)
        )
        lines.append(f"{prefix}{connector}{current.name}{fork}  [{what}]  {span}  {losses}")
        children = sorted(current.children, key=lambda c: (c.fork_tokens, c.name))
        child_prefix = prefix + ("" if depth == 0 else ("   " if last else "│  "))
        for index, child in enumerate(children):
            visit(child, child_prefix, index == len(children) - 1, depth + 1)

    visit(node, "", True, 0)
    return "\n".join(lines)


def tree_figure_data(node: BranchNode) -> dict[str, Any]:
    """LR and mean eval loss against total tokens for every run of the tree."""
    series_lr, series_loss = [], []
    for current in node.walk():
        offset = current.offset_tokens
        train = current.run.train_records
        series_lr.append(
            {
                "label": current.name,
                "x": [float(offset + int(r["tokens"])) for r in train if r.get("lr") is not None],
                "y": [float(r["lr"]) for r in train if r.get("lr") is not None],
            }
        )
        evals = current.run.eval_records
        xs = [float(offset + int(r["tokens"])) for r in evals]
        ys = [mean([float(v) for v in r["eval"].values()]) for r in evals]
        # A fork starts from its parent checkpoint's loss, so each branch visibly leaves the trunk.
        start = before_eval(current.run) if current.fork_checkpoint else {}
        if start:
            xs, ys = [float(offset), *xs], [mean(list(start.values())), *ys]
        series_loss.append({"label": current.name, "x": xs, "y": ys})
    return {
        "xlabel": "tokens trained into the model",
        "panels": [
            {"title": "mean validation loss", "ylabel": "loss", "series": series_loss},
            {"title": "learning rate", "ylabel": "lr", "series": series_lr},
        ],
    }


def plot_tree(node: BranchNode, path: str | Path) -> Path:
    """Draw the tree (loss and LR of every branch against tokens) to ``path`` (PNG); its data
    goes to the same name with ``.json``."""
    path = Path(path)
    data = tree_figure_data(node)
    atomic_write_json(path.with_suffix(".json"), data)
    plot_panels(data, path)
    return path


def main_schedule(peak: float, warmup: int) -> Schedule:
    """The main run's schedule: the library's ``constant`` with a linear warmup to ``peak``
    over ``warmup`` tokens, then ``peak`` for ever."""
    return token_schedule("constant", value=float(peak), warmup=int(warmup))


def decay_schedule(peak: float, floor: float, tokens: int, shape: str = "linear") -> Schedule:
    """A decay branch: the library's ``linear`` or ``cosine`` from ``peak`` to ``floor`` over
    ``tokens`` (no warmup)."""
    if shape not in ("linear", "cosine"):
        raise ContinualError(f"decay_shape={shape!r} must be 'linear' or 'cosine'")
    return token_schedule(shape, peak=float(peak), floor=float(floor), total=int(tokens), warmup=0)


def run_branches(
    setup: Setup,
    *,
    out_dir: str | Path,
    datasets: dict[str, str],
    budgets: list[int],
    peak: float,
    floor_fraction: float = 0.1,
    decay_fraction: float = 0.2,
    warmup_fraction: float = 0.02,
    decay_shape: str = "linear",
    progress: bool = True,
    average_window_fraction: float | None = None,
    average_points: int = 4,
    decay_branches: bool = True,
) -> dict[str, StageRun | Path]:
    """Train one main run at constant LR and a decay branch per budget; return the runs by
    name (``main``, ``decay-<budget>``).

    Budget B's branch forks at ``(1 − decay_fraction)·B`` and decays over ``decay_fraction·B``.
    With ``average_window_fraction`` w, every budget also gets an average branch
    ``average-<budget>`` (its folder's path in the result): the main run goes on to the largest
    budget, pins ``average_points`` checkpoints evenly spaced over ``[(1 − w)·B, B]``, and
    :func:`average_branch` averages them. ``decay_branches=False`` trains no decay branches.
    """
    if not budgets or any(b <= 0 for b in budgets):
        raise ContinualError(f"budgets={budgets!r}: give one or more positive token budgets")
    if not 0 < decay_fraction < 1:
        raise ContinualError(f"decay_fraction={decay_fraction!r} must be in (0, 1)")
    if average_window_fraction is not None and not 0 <= average_window_fraction < 1:
        raise ContinualError(
            f"average_window_fraction={average_window_fraction!r} must be in [0, 1)"
        )
    if average_points < 1:
        raise ContinualError(f"average_points={average_points!r}: average at least 1 checkpoint")
    budgets = sorted(setup.whole_steps(b) for b in budgets)
    forks = [setup.round_tokens(int(b * (1 - decay_fraction))) for b in budgets]
    windows = {}  # budget -> the checkpoints its average branch averages
    if average_window_fraction is not None:
        for budget in budgets:
            width = average_window_fraction * budget
            spacing = width / max(average_points - 1, 1)
            points = [budget - width + i * spacing for i in range(average_points)]
            windows[budget] = sorted({min(budget, setup.round_tokens(int(p))) for p in points})
    pinned = sorted({*(forks if decay_branches else []), *(t for w in windows.values() for t in w)})
    out = Path(out_dir)
    warmup = int(warmup_fraction * budgets[0])
    main_config = stage_config(
        setup,
        out_dir=out / "main",
        train_sets=datasets,
        mixture={name: 1.0 for name in datasets},
        schedule=main_schedule(peak, warmup),
        tokens=budgets[-1] if windows else forks[-1],
        checkpoint_at_tokens=pinned,
        keep_last=1,
    )
    results: dict[str, StageRun | Path] = {
        "main": run_stage(
            main_config,
            name="main",
            recipe="wsd-main",
            old=[],
            new=list(datasets),
            progress=progress,
        )
    }
    for budget, tokens in windows.items():
        results[f"average-{budget}"] = average_branch(
            out / "main",
            budget=budget,
            window_tokens=budget - tokens[0],
            out_dir=out / f"average-{budget}",
            eval_sets=setup.eval,
            at_tokens=tokens,
        )
    for budget, fork in zip(budgets, forks, strict=True):
        if not decay_branches:
            break
        checkpoint = out / "main" / "checkpoints" / f"tokens_{fork}"
        config = stage_config(
            setup,
            out_dir=out / f"decay-{budget}",
            train_sets=datasets,
            mixture={name: 1.0 for name in datasets},
            schedule=decay_schedule(peak, peak * floor_fraction, budget - fork, decay_shape),
            tokens=budget - fork,
            init_from=checkpoint,
        )
        results[f"decay-{budget}"] = run_stage(
            config,
            name=f"decay-{budget}",
            recipe="wsd-branch",
            old=[],
            new=list(datasets),
            offset_tokens=fork,
            progress=progress,
            extra_meta={"budget": budget},
        )
    return results


def resume_from_branch(
    setup: Setup,
    *,
    branch_dir: str | Path,
    out_dir: str | Path,
    datasets: dict[str, str],
    tokens: int,
    peak: float,
    checkpoint_at_tokens: list[int] | None = None,
    progress: bool = True,
) -> StageRun:
    """WSD-S: continue the main run from a *decayed* branch at constant ``peak`` for ``tokens``
    (Wen et al., 2024): the decayed model is released, and training goes on from it."""
    branch = load_run(branch_dir)
    config = stage_config(
        setup,
        out_dir=out_dir,
        train_sets=datasets,
        mixture={name: 1.0 for name in datasets},
        schedule=token_schedule("constant", value=float(peak)),
        tokens=setup.whole_steps(tokens),
        init_from=newest_checkpoint(branch_dir),
        checkpoint_at_tokens=checkpoint_at_tokens,
    )
    return run_stage(
        config,
        name=Path(out_dir).name,
        recipe="wsd-s-main",
        old=[],
        new=list(datasets),
        offset_tokens=branch.offset_tokens + branch.tokens,
        progress=progress,
    )


def window_checkpoints(
    main_dir: str | Path, budget: int, window_tokens: int, at_tokens: list[int] | None = None
) -> list[Path]:
    """The main run's kept checkpoints at tokens in ``[budget − window_tokens, budget]`` (only
    those at ``at_tokens`` when given), oldest first; a ContinualError naming the window and
    the fix when there is none."""
    from evertrain.train.checkpoint import list_checkpoints  # torch

    low = budget - window_tokens
    found = [
        path.resolve()
        for path, meta in list_checkpoints(Path(main_dir) / "checkpoints")
        if low <= int(meta.get("tokens", -1)) <= budget
        and (at_tokens is None or int(meta.get("tokens", -1)) in at_tokens)
    ]
    if not found:
        raise ContinualError(
            f"{main_dir}: no checkpoint at tokens {low:,}–{budget:,} to average for budget "
            f"{budget:,}; pin some there (checkpoint_at_tokens) or widen the window"
        )
    return found


def average_branch(
    main_dir: str | Path,
    *,
    budget: int,
    window_tokens: int,
    out_dir: str | Path,
    eval_sets: dict[str, str] | None = None,
    at_tokens: list[int] | None = None,
) -> Path:
    """The model for ``budget`` without decay steps: the uniform average (``evertrain train
    average``) of ``main_dir``'s checkpoints at tokens ``[budget − window_tokens, budget]``,
    written to ``out_dir/checkpoints/average`` with a run-like ``manifest.json`` (parent: the
    newest averaged checkpoint) and ``continual.json`` (``kind: average``, budget, sources).
    ``at_tokens``: average only the checkpoints at these token counts of the window.

    ``eval_sets`` (name -> prepared dir): evaluate the average on their validation splits (the
    main run's ``eval_tokens``) and record it as the branch's one eval. A finished branch of the
    same checkpoints is returned as it is. Returns ``out_dir``.
    """
    from evertrain._lock import FolderLock
    from evertrain.train.averaging import average_checkpoints  # torch
    from evertrain.train.checkpoint import CheckpointError, read_meta

    out = Path(out_dir)
    sources = window_checkpoints(main_dir, budget, window_tokens, at_tokens)
    main = load_run(main_dir)
    checkpoint = out / "checkpoints" / "average"
    with FolderLock(out, what="average branch folder"):
        if (out / "continual.json").is_file() and checkpoint.is_dir():
            done = load_run(out).meta
            if [s.get("path") for s in done.get("sources", [])] == [str(p) for p in sources]:
                return out
        if out.exists() and any(not p.name.startswith(".") for p in out.iterdir()):
            raise ContinualError(
                f"{out}: already holds something else than this average branch; choose a new out_dir"
            )
        try:
            average_checkpoints(sources, checkpoint)
        except CheckpointError as error:
            raise ContinualError(str(error)) from None
        meta = read_meta(checkpoint)
        newest = max(meta["averaged"]["sources"], key=lambda item: int(item["tokens"] or 0))
        losses = _evaluate_average(checkpoint, main, eval_sets) if eval_sets else {}
        if losses:  # the branch trains nothing: its own tokens are 0
            record = {"kind": "eval", "step": 0, "tokens": 0, "eval": losses}
            atomic_write_bytes(out / "log.jsonl", (json.dumps(record) + "\n").encode())
        atomic_write_json(
            out / "manifest.json",
            {
                "checkpoints": [
                    {
                        "name": checkpoint.name,
                        "path": str(checkpoint.resolve()),
                        "step": 0,
                        "tokens": 0,
                        "eval": losses,
                        "pinned": True,
                    }
                ],
                "parent": {
                    "checkpoint": newest["path"],
                    "run": str(Path(main_dir).resolve()),
                    "step": newest["step"],
                    "tokens": newest["tokens"],
                },
            },
        )
        write_meta(
            out,
            name=out.name,
            kind="average",
            recipe="average-branch",
            budget=int(budget),
            window_tokens=int(window_tokens),
            sources=meta["averaged"]["sources"],
            offset_tokens=main.offset_tokens + int(newest["tokens"]),
        )
    return out


def _evaluate_average(checkpoint: Path, main: Run, eval_sets: dict[str, str]) -> dict[str, float]:
    """Eval losses of the averaged checkpoint, as the main run's trainer would measure them."""
    from evertrain.data import PreparedDataset
    from evertrain.train.checkpoint import load_checkpoint
    from evertrain.train.loop import evaluate
    from evertrain.train.model import GPT, GPTConfig

    state = load_checkpoint(checkpoint)
    model = GPT(GPTConfig(**state["model_config"]))
    load_checkpoint(checkpoint, model)
    config = main.config or state.get("config") or {}
    datasets = {name: PreparedDataset(path) for name, path in eval_sets.items()}
    return evaluate(
        model,
        datasets,
        seq_len=int(state["model_config"]["seq_len"]),
        batch_size=int(config.get("batch_size", 1)),
        eval_tokens=int((config.get("data") or {}).get("eval_tokens", 65536)),
    )
