"""evertrain.laws: loss-curve laws fitted to a few runs, predicting any schedule's whole curve.

numpy/scipy only. Two laws share one interface (:class:`Law`):

* :class:`MultiPowerLaw` (``"mpl"``, Luo et al. 2025),
* :class:`AnnealingLaw` (``"annealing"``, Tissue et al. 2024).

:class:`CPTLaw` (Wang, Tissue et al. 2025) predicts continual stages (old- and new-data losses
of a recipe: schedule, replay ratio, length) from a base run and a few continual runs;
:func:`design_fit_runs` picks the continual runs to fit it on; :mod:`evertrain.laws.intervals`
gives every law bootstrap prediction bands.
"""

from evertrain.laws._ld import multi_power_ld, multi_power_ld_naive
from evertrain.laws.annealing import AnnealingLaw
from evertrain.laws.base import (
    LAWS,
    FitResult,
    Law,
    curve_metrics,
    law_from_dict,
    load_law,
    make_law,
)
from evertrain.laws.cpt import (
    BaseRun,
    ContinualRun,
    CPTLaw,
    CPTPrediction,
    Recipe,
    load_cpt_law,
    parse_goal,
    parse_recipe,
    read_cpt_runs,
)
from evertrain.laws.curves import (
    SHARED_CURVES,
    SHARED_FIT,
    SHARED_SIZES,
    SHARED_TEST,
    LawError,
    LossCurve,
    load_curve,
    load_shared_curve,
    load_shared_curves,
    lr_array,
    shared_curve_lr,
    shared_curves_dir,
)
from evertrain.laws.design import PROBE_FRACTION, FitRun, design_fit_runs, probe_runs
from evertrain.laws.intervals import Band, bootstrap_law, coverage, law_band
from evertrain.laws.mpl import MultiPowerLaw

__all__ = [
    "AnnealingLaw",
    "Band",
    "BaseRun",
    "CPTLaw",
    "CPTPrediction",
    "ContinualRun",
    "FitRun",
    "Recipe",
    "design_fit_runs",
    "probe_runs",
    "PROBE_FRACTION",
    "bootstrap_law",
    "coverage",
    "law_band",
    "load_cpt_law",
    "parse_goal",
    "parse_recipe",
    "read_cpt_runs",
    "LAWS",
    "SHARED_CURVES",
    "SHARED_FIT",
    "SHARED_SIZES",
    "SHARED_TEST",
    "FitResult",
    "Law",
    "LawError",
    "LossCurve",
    "MultiPowerLaw",
    "curve_metrics",
    "law_from_dict",
    "load_curve",
    "load_law",
    "load_shared_curve",
    "load_shared_curves",
    "lr_array",
    "make_law",
    "multi_power_ld",
    "multi_power_ld_naive",
    "shared_curve_lr",
    "shared_curves_dir",
]
