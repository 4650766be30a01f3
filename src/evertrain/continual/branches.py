"""Decay branches: one constant-LR main run, a released model for every budget (WSD / WSD-S).

A WSD schedule (warmup → stable → decay; Hägele et al., 2024, arXiv:2405.18392) only decays at
the end, so the stable phase is shared by every budget: train one *main* run at constant LR,
pin a checkpoint at ``(1 − decay_fraction)·B`` for each budget B, and fork a short *decay
branch* from it (``init_from``) that anneals to the floor over the last ``decay_fraction·B``
tokens. Budgets B₁ < B₂ < B₃ then cost ``(1 − d)·B₃ + d·(B₁ + B₂ + B₃)`` tokens instead of
``B₁ + B₂ + B₃`` for separate cosine runs. WSD-S (Wen et al., 2024, arXiv:2410.05192) goes on
from a *decayed* branch at the high LR again: :func:`resume_from_branch`.

The tree is recorded by the trainer itself: each fork's ``manifest.json`` names its parent run
and checkpoint. :func:`branch_tree` rebuilds it from the files, :func:`format_tree` lists it
(``evertrain continual branches RUN``) and :func:`plot_tree` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evertrain._atomic import atomic_write_json
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
from evertrain.continual.runs import Run, RunError, load_run, mean
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


def format_tree(node: BranchNode) -> str:
    """An indented listing: name, fork point, schedule, tokens, final losses."""
    lines: list[str] = []

    def visit(current: BranchNode, prefix: str, last: bool, depth: int) -> None:
        losses = ", ".join(f"{k}={v:.4f}" for k, v in current.final_eval.items()) or "no eval"
        fork = f" forked at {current.fork_tokens:,} ({current.fork_checkpoint})" if depth else ""
        span = f"tokens {current.offset_tokens:,} → {current.offset_tokens + current.tokens:,}"
        connector = "" if depth == 0 else ("└─ " if last else "├─ ")
        lines.append(
            f"{prefix}{connector}{current.name}{fork}  [{_describe_schedule(current.schedule)}]  {span}  {losses}"
        )
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
) -> dict[str, StageRun]:
    """Train one main run at constant LR and a decay branch per budget; return the runs by
    name (``main``, ``decay-<budget>``).

    Budget B's branch forks at ``(1 − decay_fraction)·B`` and decays over ``decay_fraction·B``.
    """
    if not budgets or any(b <= 0 for b in budgets):
        raise ContinualError(f"budgets={budgets!r}: give one or more positive token budgets")
    if not 0 < decay_fraction < 1:
        raise ContinualError(f"decay_fraction={decay_fraction!r} must be in (0, 1)")
    budgets = sorted(setup.whole_steps(b) for b in budgets)
    forks = [setup.round_tokens(int(b * (1 - decay_fraction))) for b in budgets]
    out = Path(out_dir)
    warmup = int(warmup_fraction * budgets[0])
    main_config = stage_config(
        setup,
        out_dir=out / "main",
        train_sets=datasets,
        mixture={name: 1.0 for name in datasets},
        schedule=main_schedule(peak, warmup),
        tokens=forks[-1],
        checkpoint_at_tokens=forks,
        keep_last=1,
    )
    results = {
        "main": run_stage(
            main_config,
            name="main",
            recipe="wsd-main",
            old=[],
            new=list(datasets),
            progress=progress,
        )
    }
    for budget, fork in zip(budgets, forks, strict=True):
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
