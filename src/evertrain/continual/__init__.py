"""evertrain.continual: continual pre-training plans, recipes, branches, forgetting and reports.

>>> from evertrain.continual import BaseModelInfo, build_recipe
>>> base = BaseModelInfo(peak=3e-3, final_lr=3e-4, constant_lr=1.5e-3, floor=3e-4, tokens=100_000)
>>> build_recipe("rewarm+replay", base=base, stage_tokens=100_000, old=["D0"], new=["D1"]).mixture
{'D0': 0.25, 'D1': 0.75}

torch is imported only when a run trains (``evertrain.train``); recipes, plans, forgetting and
reports need numpy, pydantic and matplotlib only. See docs/continual.md.
"""

from evertrain.continual.forgetting import StageOutcome, stage_outcome
from evertrain.continual.plan import Plan, PlanError, Stage, load_plan
from evertrain.continual.recipes import (
    CITATIONS,
    DEFAULTS,
    RECIPES,
    BaseModelInfo,
    RecipeError,
    StageRecipe,
    build_recipe,
    infinite_schedule,
)
from evertrain.continual.report import ReportError, write_report
from evertrain.continual.runner import (
    ContinualError,
    Setup,
    StageRun,
    run_plan,
    run_recipe,
    stage_config,
    train_base,
)
from evertrain.continual.runs import Run, RunError, load_run

__all__ = [
    "CITATIONS",
    "DEFAULTS",
    "RECIPES",
    "BaseModelInfo",
    "ContinualError",
    "Plan",
    "PlanError",
    "RecipeError",
    "ReportError",
    "Run",
    "RunError",
    "Setup",
    "Stage",
    "StageOutcome",
    "StageRecipe",
    "StageRun",
    "build_recipe",
    "infinite_schedule",
    "load_plan",
    "load_run",
    "run_plan",
    "run_recipe",
    "stage_config",
    "stage_outcome",
    "train_base",
    "write_report",
]
