"""Forgetting and adaptation of a continual stage, from its evaluation records.

For a stage that continues a parent checkpoint, with validation losses L on every dataset:

- forgetting  = mean over old datasets  of  L_after(old) − L_before(old)   (> 0: forgot)
- peak forgetting = the largest rise of that loss above "before" at any evaluation of the stage
- adaptation  = mean over new datasets  of  L_before(new) − L_after(new)   (> 0: learned)
- average     = mean over every evaluated dataset of L_after                (the headline number)

"before" is the parent checkpoint's evaluation (from the parent's manifest, or the stage's own
eval at token 0); "after" is the stage's last evaluation. This follows the protocol of Ibrahim
et al. (2024, arXiv:2403.08763): final validation loss on the previous and the new
distribution, and their average, at a given compute.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evertrain.continual.runs import Run, checkpoint_eval, eval_at_tokens, load_run, mean


@dataclass(frozen=True)
class StageOutcome:
    """Losses of one run on old and new data, before and after, with its compute."""

    run: str
    recipe: str
    old: tuple[str, ...]
    new: tuple[str, ...]
    before: dict[str, float]
    after: dict[str, float]
    tokens: int
    wall_seconds: float | None
    #: mean loss on the old datasets at each evaluation of the stage, in order
    old_trajectory: tuple[float, ...] = ()

    @property
    def loss_old(self) -> float:
        return mean([self.after[n] for n in self.old if n in self.after])

    @property
    def loss_new(self) -> float:
        return mean([self.after[n] for n in self.new if n in self.after])

    @property
    def loss_avg(self) -> float:
        """Mean final loss over every evaluated dataset (with one old and one new dataset: the
        average of the old and new validation loss of Ibrahim et al.). A base run evaluated on
        both distributions is averaged the same way, so every row of a report compares alike."""
        return mean(list(self.after.values()))

    @property
    def forgetting(self) -> float:
        pairs = [
            self.after[n] - self.before[n] for n in self.old if n in self.after and n in self.before
        ]
        return mean(pairs)

    @property
    def peak_forgetting(self) -> float:
        """The largest rise of the old-data loss above "before" at any evaluation of the stage
        (re-warming forgets most early on, then partly recovers; Ibrahim et al. 2024, Fig. 2)."""
        before = [self.before[n] for n in self.old if n in self.before]
        if not before or not self.old_trajectory:
            return math.nan
        return max(self.old_trajectory) - mean(before)

    @property
    def adaptation(self) -> float:
        pairs = [
            self.before[n] - self.after[n] for n in self.new if n in self.after and n in self.before
        ]
        return mean(pairs)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["old"], out["new"] = list(self.old), list(self.new)
        out["old_trajectory"] = list(self.old_trajectory)
        for key in (
            "loss_old",
            "loss_new",
            "loss_avg",
            "forgetting",
            "peak_forgetting",
            "adaptation",
        ):
            value = getattr(self, key)
            out[key] = None if math.isnan(value) else value
        return out


def stage_outcome(
    run: Run | str | Path, old: list[str] | None = None, new: list[str] | None = None
) -> StageOutcome:
    """Forgetting/adaptation of ``run``; ``old``/``new`` default to the roles recorded in the
    run's ``continual.json`` (written by the continual runner)."""
    if not isinstance(run, Run):
        run = load_run(run)
    old = list(old if old is not None else run.meta.get("old", []))
    new = list(new if new is not None else run.meta.get("new", []))
    return StageOutcome(
        run=run.name,
        recipe=run.recipe,
        old=tuple(old),
        new=tuple(new),
        before=before_eval(run),
        after=run.final_eval,
        tokens=run.tokens,
        wall_seconds=run.wall_seconds,
        old_trajectory=tuple(
            mean([float(r["eval"][n]) for n in old if n in r["eval"]])
            for r in run.eval_records
            if any(n in r["eval"] for n in old)
        ),
    )


def before_eval(run: Run) -> dict[str, float]:
    """Losses of the model this run started from: the parent checkpoint's eval, else the run's
    own eval at token 0, else {} (a run from scratch has no "before")."""
    parent = run.parent
    if parent and parent.get("checkpoint"):
        parent_run_dir = parent.get("run")
        if parent_run_dir and Path(parent_run_dir).is_dir():
            found = checkpoint_eval(load_run(parent_run_dir), parent["checkpoint"])
            if found:
                return found
    return eval_at_tokens(run, 0)
