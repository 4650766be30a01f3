"""PBT on Ray Tune: evertrain's trainer as a function trainable under ``PopulationBasedTraining``.

Each Ray trial is one member with its own evertrain run folder (``OUT/members/member_<i>``). The
trainable trains in legs of ``interval_tokens`` (``evertrain.train.run(..., stop_at_tokens=...)``
pauses the run at the leg's end with an eval and a checkpoint, its budget and schedule unchanged)
and reports the mean eval loss with a Ray checkpoint: the member's bundle (its newest evertrain
checkpoint plus log and config history, see :func:`evertrain.tune.pbt.write_bundle`).

When PBT exploits, Ray restarts the trial with the donor's bundle and the config our explore
function returned; the trainable then adopts the bundle (:func:`~evertrain.tune.pbt.adopt_bundle`)
and resumes under the perturbed config, which the trainer records in ``config_history.jsonl``
(its one-line "resumed with a changed config" notice is printed per changed field).

Ray is imported inside the functions here (the ``evertrain[tune]`` extra).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from evertrain.tune.pbt import (
    PBTSetup,
    TuneError,
    adopt_bundle,
    explore,
    initial_hypers,
    mean_eval,
    member_config,
    record_exploit,
    summarise,
    write_bundle,
    write_outputs,
)

#: The one-line hint when Ray is missing (the CLI prints it and exits 2).
INSTALL_HINT = 'PBT needs Ray Tune: pip install "evertrain[tune]" (or pip install "ray[tune]")'


def require_ray() -> Any:
    """Import and return ``ray`` (with ``ray.tune``), or raise :class:`TuneError` with the hint."""
    # Read by Ray at import: no usage statistics sent home, every member's progress line (not
    # "repeated 3x"), and no status tables (verbose=0 below).
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        import ray
        import ray.tune  # noqa: F401  (the extra installs both; a bare ray lacks tune's deps)
    except ImportError:
        raise TuneError(INSTALL_HINT) from None
    return ray


def member_name(trial_name: str) -> str:
    """``train_member_3f2a1_00002`` -> ``member_2``: a short stable name per trial (an exploit
    keeps the trial, so the member keeps its folder)."""
    tail = trial_name.rsplit("_", 1)[-1]
    return f"member_{int(tail)}" if tail.isdigit() else trial_name


def hypers_of(config: dict[str, Any]) -> dict[str, float]:
    """A trial config's hyper-parameters: set by explore, or the member's start."""
    if "hypers" in config:
        return dict(config["hypers"])
    return json.loads(config["start"])


class Explorer:
    """PBT's ``custom_explore_fn``: the donor's hyper-parameters, perturbed (seeded)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        new = dict(config)
        new["hypers"] = explore(hypers_of(config), self.rng)
        return new


def _leg_end(tokens: int, interval: int, budget: int) -> int:
    return min(budget, (tokens // interval + 1) * interval)


def train_member(config: dict[str, Any], setup: PBTSetup) -> None:
    """The Ray Tune function trainable: one member, in legs, reporting a bundle after each."""
    from ray import tune

    from evertrain.train import run

    os.chdir(setup.workdir)  # the config's relative paths mean what they meant to the user
    name = member_name(tune.get_context().get_trial_name())
    run_dir = setup.members_dir / name
    hypers = hypers_of(config)
    tokens = 0
    bundle = tune.get_checkpoint()
    if bundle is not None:
        with bundle.as_directory() as folder:
            event = adopt_bundle(run_dir, folder, member=name, hypers=hypers)
            if event is not None:  # every exploit, also of lineages a later exploit replaces
                record_exploit(setup, event)
            tokens = int(json.loads((Path(folder) / "pbt.json").read_text())["tokens"])
        if event is not None:
            print(
                f"{name}: exploit {event['donor']} at tokens {event['tokens']}, "
                f"explore {event['donor_hypers']} -> {hypers}",
                flush=True,
            )
    cfg = member_config(setup, hypers, run_dir)
    while True:
        stop = _leg_end(tokens, setup.interval_tokens, setup.budget_tokens)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run(cfg, resume=True, progress=False, stop_at_tokens=stop)
        for warning in caught:  # the trainer's notices, one line each (not file:line + source)
            print(f"{name}: warning: {warning.message}", flush=True)
        tokens = result.tokens
        loss = mean_eval(result.final_eval)
        print(f"{name}: tokens {tokens} eval loss {loss:.4f} {hypers}", flush=True)
        staging = Path(tempfile.mkdtemp(prefix=f"evertrain-pbt-{name}-"))
        try:
            write_bundle(run_dir, staging / "bundle", member=name, hypers=hypers)
            tune.report(
                {"loss": loss, "tokens": tokens, "member": name, **hypers},
                checkpoint=tune.Checkpoint.from_directory(str(staging / "bundle")),
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if tokens >= setup.budget_tokens:
            return


def run_pbt(
    setup: PBTSetup,
    *,
    address: str | None = None,
    cpus: int | None = None,
    gpus_per_member: float = 0.0,
) -> dict[str, Any]:
    """Run the population on Ray (a local instance started here, or the cluster at ``address``)
    and write the outputs; return the summary (see :func:`evertrain.tune.pbt.summarise`)."""
    ray = require_ray()
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    else:
        ray.init(
            num_cpus=cpus or min(setup.population, os.cpu_count() or 1),
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=True,
        )
    try:
        scheduler = PopulationBasedTraining(
            time_attr="tokens",
            metric="loss",
            mode="min",
            perturbation_interval=setup.interval_tokens,
            custom_explore_fn=Explorer(setup.seed + 1),
            synch=True,  # every member finishes a leg before the worst exploit the best
        )
        starts = [json.dumps(h) for h in initial_hypers(setup)]
        trainable = tune.with_resources(
            tune.with_parameters(train_member, setup=setup),
            {"cpu": 1, "gpu": gpus_per_member},
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"start": tune.grid_search(starts)},
            tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=1, reuse_actors=True),
            run_config=tune.RunConfig(
                name="pbt",
                storage_path=str((Path(setup.out) / "ray").resolve()),
                verbose=0,
                # A member at the budget stops there: no exploit of a finished run.
                stop={"tokens": setup.budget_tokens},
                checkpoint_config=tune.CheckpointConfig(num_to_keep=4),
            ),
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*reuse_actors.*")  # advice for class APIs
            grid = tuner.fit()
        members: dict[str, dict[str, float]] = {}
        for result in grid:
            if result.error is not None:
                first = str(result.error).strip().splitlines()
                raise TuneError(f"a PBT member failed: {first[-1] if first else result.error}")
            members[str(result.metrics["member"])] = hypers_of(result.config)
    finally:
        ray.shutdown()
    summary = summarise(setup, members)
    summary["outputs"] = {k: str(v) for k, v in write_outputs(setup, summary).items()}
    return summary


__all__ = ["INSTALL_HINT", "Explorer", "member_name", "require_ray", "run_pbt", "train_member"]
