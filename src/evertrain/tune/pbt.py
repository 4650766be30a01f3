"""Population Based Training over evertrain runs: everything but Ray.

PBT (Jaderberg et al. 2017) trains a population of members in legs of ``interval_tokens``; after
each leg the worst members **exploit** a better one (copy its weights, optimizer and sampler
state: one evertrain checkpoint) and **explore** (multiply the named hyper-parameters by 0.8 or
1.2). This module holds the pieces that do not need Ray, so they are tested without it:

- :class:`PBTSetup` / :func:`prepare`: the checked inputs (bad input raises :class:`TuneError`
  before any work), and :func:`member_config`, the member's ``TrainConfig`` for given
  hyper-parameters (``peak``: the schedule scaled by ``peak / base peak`` with the schedule
  algebra's ``scale``; ``replay``: the replay source's share of a two-source ``data.mixture``);
- :func:`initial_hypers` and :func:`explore`: the population's start and the perturbation;
- :func:`write_bundle` / :func:`adopt_bundle`: a member's state as one folder (the Ray
  checkpoint) and the exploit that makes a member's run folder continue from a donor's;
- :func:`realised_schedule`, :func:`realised_mixture`, :func:`summarise`: what the winner
  trained with, as specs, and the results table.

A member's run folder is a normal evertrain run folder (``config.yaml``, ``config_history.jsonl``,
``log.jsonl``, ``checkpoints/``), holding the lineage of its weights: an exploit copies the
donor's log and config history up to the copied checkpoint, and the resume under the perturbed
config appends the change to ``config_history.jsonl``. ``pbt_events.jsonl`` lists the exploits
of that lineage.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evertrain import _yaml
from evertrain._atomic import atomic_write_json, atomic_write_text
from evertrain.schedules import from_spec, scale
from evertrain.schedules.summary import peak as schedule_peak
from evertrain.train import TrainConfig
from evertrain.train.config_history import CONFIG_NAME, HISTORY_NAME, read_config_history
from evertrain.train.logging import read_log

#: The hyper-parameters ``--perturb`` can name.
PERTURBABLE = ("peak", "replay")
#: PBT's explore step: each perturbed value is multiplied by one of these (the paper's factors).
PERTURB_FACTORS = (0.8, 1.2)
#: The initial population spreads each perturbed value log-uniformly over [1/2, 2] x the config's.
INITIAL_SPREAD = 2.0
EVENTS_NAME = "pbt_events.jsonl"
#: OUT/exploits/<member>.jsonl: every exploit each member made (its lineage file loses the ones a
#: later exploit of that member replaced); one file per member, so no two processes append to one.
EXPLOITS_DIR = "exploits"
BUNDLE_META = "pbt.json"
BUNDLE_CHECKPOINT = "checkpoint"
LOG_NAME = "log.jsonl"


class TuneError(ValueError):
    """Bad input to a tuner; the message names the flag or field and the fix."""


@dataclass(frozen=True)
class PBTSetup:
    """The checked inputs of one PBT run (plain data: it travels to Ray workers)."""

    config: dict[str, Any]  # the base TrainConfig, as a dict
    out: str  # the PBT output folder; members live in out/members/<name>
    population: int
    perturb: tuple[str, ...]
    interval_tokens: int
    base_peak: float
    replay_source: str | None  # the mixture's replay dataset (when "replay" is perturbed)
    seed: int = 0
    # The folder relative paths of the config (data, init_from) are read from: Ray runs each
    # trial in a folder of its own, so members change to this one first.
    workdir: str = "."

    @property
    def members_dir(self) -> Path:
        return Path(self.out) / "members"

    @property
    def budget_tokens(self) -> int:
        return int(self.config["budget_tokens"])

    def base_hypers(self) -> dict[str, float]:
        """The config's own values of the perturbed hyper-parameters."""
        hypers: dict[str, float] = {}
        if "peak" in self.perturb:
            hypers["peak"] = self.base_peak
        if "replay" in self.perturb:
            mixture = self.config["data"]["mixture"]
            hypers["replay"] = float(mixture[self.replay_source]) / sum(
                float(w) for w in mixture.values()
            )
        return hypers


def parse_perturb(text: str) -> tuple[str, ...]:
    """``"peak,replay"`` -> ``("peak", "replay")``; an unknown or empty name is a TuneError."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in PERTURBABLE]
    if unknown or not names:
        raise TuneError(
            f"--perturb: {', '.join(unknown) or repr(text)} is not a hyper-parameter PBT can "
            f"perturb; use a comma list of {', '.join(PERTURBABLE)}"
        )
    return names


def prepare(
    config_path: str | Path,
    *,
    out: str | Path,
    population: int,
    perturb: str,
    interval_tokens: int,
    replay_source: str | None = None,
    seed: int = 0,
    overrides: list[str] | None = None,
) -> PBTSetup:
    """Check every input of ``evertrain tune pbt``; raise :class:`TuneError` (or the trainer's
    ``ConfigError``) naming the flag or field, before Ray or any training starts."""
    if population < 2:
        raise TuneError(
            f"--population: {population} members cannot exploit each other; use --population 2 or more"
        )
    names = parse_perturb(perturb)
    cfg = TrainConfig.from_yaml(config_path, overrides)
    if interval_tokens < cfg.tokens_per_step:
        raise TuneError(
            f"--interval-tokens: {interval_tokens} is less than one optimizer step "
            f"({cfg.tokens_per_step} tokens); raise it"
        )
    if interval_tokens >= cfg.budget_tokens:
        raise TuneError(
            f"--interval-tokens: {interval_tokens} is not below budget_tokens={cfg.budget_tokens}, "
            "so no member would ever exploit another; lower it"
        )
    base_peak = schedule_peak(cfg.schedule)
    if "peak" in names and not base_peak > 0:
        raise TuneError(
            "--perturb peak: the config's schedule peaks at 0, so scaling it changes nothing; "
            "give the schedule a positive peak"
        )
    source = _replay_source(cfg, replay_source) if "replay" in names else None
    config = cfg.to_dict()
    return PBTSetup(
        config=config,
        out=str(Path(out).resolve()),
        population=population,
        perturb=names,
        interval_tokens=interval_tokens,
        base_peak=float(base_peak),
        replay_source=source,
        seed=seed,
        workdir=str(Path.cwd()),
    )


def _replay_source(cfg: TrainConfig, named: str | None) -> str:
    """The replay dataset of a two-source numeric mixture: ``named``, else the smaller weight."""
    mixture = cfg.data.mixture
    if mixture is None or len(mixture) != 2:
        raise TuneError(
            "--perturb replay: needs data.mixture with exactly two datasets (new data and replay), "
            f"got {sorted(mixture) if mixture else 'none'}; add data.mixture or drop replay"
        )
    if not all(isinstance(w, (int, float)) for w in mixture.values()):
        raise TuneError(
            "--perturb replay: data.mixture weights must be numbers (PBT sets them); "
            "replace the schedule weights by numbers"
        )
    if named is not None:
        if named not in mixture:
            raise TuneError(
                f"--replay-source: {named!r} is not in data.mixture {sorted(mixture)}; name one of them"
            )
        source = named
    else:
        first, second = list(mixture)
        source = first if float(mixture[first]) < float(mixture[second]) else second
    if not float(mixture[source]) > 0:
        raise TuneError(
            f"--perturb replay: data.mixture.{source} is 0, and a share of 0 stays 0 when "
            "multiplied; give the replay source a weight > 0"
        )
    return source


def member_config(setup: PBTSetup, hypers: dict[str, float], run_dir: str | Path) -> TrainConfig:
    """The member's TrainConfig: the base config in ``run_dir`` with ``hypers`` applied."""
    config = json.loads(json.dumps(setup.config))  # a deep copy of plain data
    config["out_dir"] = str(run_dir)
    if "peak" in hypers:
        factor = hypers["peak"] / setup.base_peak
        config["schedule"] = scale(from_spec(setup.config["schedule"]), factor).to_spec()
    if "replay" in hypers and setup.replay_source is not None:
        share = hypers["replay"]
        (other,) = [name for name in config["data"]["mixture"] if name != setup.replay_source]
        config["data"]["mixture"] = {setup.replay_source: share, other: 1.0 - share}
    return TrainConfig.model_validate(config)


def initial_hypers(setup: PBTSetup) -> list[dict[str, float]]:
    """One start per member: member 0 trains the config as written; the others draw each
    perturbed value log-uniformly from [1/2, 2] x the config's (a replay share at most 1)."""
    rng = random.Random(setup.seed)
    base = setup.base_hypers()
    starts = [dict(base)]
    for _ in range(setup.population - 1):
        start = {}
        for name, value in base.items():
            factor = INITIAL_SPREAD ** rng.uniform(-1.0, 1.0)
            start[name] = _bounded(name, value * factor)
        starts.append(start)
    return starts


def explore(hypers: dict[str, float], rng: random.Random) -> dict[str, float]:
    """PBT's explore: each value times 0.8 or 1.2 (a replay share kept within [0, 1])."""
    return {
        name: _bounded(name, value * rng.choice(PERTURB_FACTORS)) for name, value in hypers.items()
    }


def _bounded(name: str, value: float) -> float:
    return min(1.0, max(0.0, value)) if name == "replay" else value


# ---------------------------------------------------------------------------- bundles (exploit)
def write_bundle(
    run_dir: str | Path, bundle_dir: str | Path, *, member: str, hypers: dict[str, float]
) -> dict[str, Any]:
    """Write the member's state into ``bundle_dir`` (the Ray checkpoint): its newest evertrain
    checkpoint, log, config history and exploit events, and ``pbt.json`` saying whose they are."""
    from evertrain.train.checkpoint import latest_valid_checkpoint  # torch: only when needed

    run_dir, bundle_dir = Path(run_dir), Path(bundle_dir)
    found = latest_valid_checkpoint(run_dir / "checkpoints")
    if found is None:
        raise TuneError(f"{run_dir}: no valid checkpoint to hand to the population")
    checkpoint, meta = found
    bundle_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(checkpoint, bundle_dir / BUNDLE_CHECKPOINT)
    for name in (LOG_NAME, HISTORY_NAME, CONFIG_NAME, EVENTS_NAME):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, bundle_dir / name)
    info = {
        "member": member,
        "checkpoint": checkpoint.name,
        "step": int(meta["step"]),
        "tokens": int(meta["tokens"]),
        "hypers": hypers,
    }
    atomic_write_json(bundle_dir / BUNDLE_META, info)
    return info


def read_bundle(bundle_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(bundle_dir) / BUNDLE_META).read_text(encoding="utf-8"))


def adopt_bundle(
    run_dir: str | Path, bundle_dir: str | Path, *, member: str, hypers: dict[str, float]
) -> dict[str, Any] | None:
    """Make ``run_dir`` continue from the state in ``bundle_dir``; return the exploit event.

    The member's own checkpoint at the bundle's step (a restart of the same member): nothing to
    copy, None. Otherwise (an exploit of a donor, or a member whose folder lost its state): the
    member's checkpoints are replaced by the bundle's checkpoint and its log, config history and
    events by the donor's, so that the folder holds the lineage of the weights it now trains;
    the event (appended to ``pbt_events.jsonl``) records donor, step, tokens and both configs.
    """
    from evertrain.train.checkpoint import latest_valid_checkpoint  # torch: only when needed

    run_dir, bundle_dir = Path(run_dir), Path(bundle_dir)
    info = read_bundle(bundle_dir)
    own = latest_valid_checkpoint(run_dir / "checkpoints")
    if info["member"] == member and own is not None and int(own[1]["step"]) == info["step"]:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = run_dir / "checkpoints"
    if checkpoints.exists():
        # PBT replaces the member's own lineage (OUT/exploits keeps the record of its exploits).
        shutil.rmtree(checkpoints)
    checkpoints.mkdir()
    # Copy under a temporary name, then rename: a crash leaves no half checkpoint that looks valid.
    staging = checkpoints / f".tmp-{info['checkpoint']}-adopt"
    shutil.copytree(bundle_dir / BUNDLE_CHECKPOINT, staging)
    staging.rename(checkpoints / info["checkpoint"])
    for name in (LOG_NAME, HISTORY_NAME, CONFIG_NAME, EVENTS_NAME):
        source = bundle_dir / name
        if source.is_file():
            atomic_write_text(run_dir / name, source.read_text(encoding="utf-8"))
        elif (run_dir / name).exists():
            (run_dir / name).unlink()
    event = {
        "member": member,
        "donor": info["member"],
        "step": info["step"],
        "tokens": info["tokens"],
        "donor_hypers": info["hypers"],
        "hypers": hypers,
    }
    with open(run_dir / EVENTS_NAME, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(event) + "\n")
    return event


def record_exploit(setup: PBTSetup, event: dict[str, Any]) -> None:
    """Append ``event`` to ``OUT/exploits/<member>.jsonl``."""
    folder = Path(setup.out) / EXPLOITS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{event['member']}.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(event) + "\n")


def read_events(run_dir: str | Path, name: str = EVENTS_NAME) -> list[dict[str, Any]]:
    """The events in ``run_dir/name`` (a member's lineage file by default)."""
    path = Path(run_dir) / name
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


# ---------------------------------------------------------------------------- results
def mean_eval(record: dict[str, float]) -> float:
    """The headline metric: mean validation loss over the eval datasets."""
    return sum(record.values()) / len(record) if record else math.nan


def final_eval(run_dir: str | Path) -> dict[str, float]:
    evals = [r for r in read_log(Path(run_dir) / LOG_NAME) if r.get("kind") == "eval"]
    return dict(evals[-1]["eval"]) if evals else {}


def realised_schedule(run_dir: str | Path, tokens_per_step: int) -> dict[str, Any]:
    """The LR the run's updates actually used, as a ``piecewise_linear`` spec over tokens.

    Each logged train record's ``lr`` was set at the tokens before its step; points on a straight
    line are merged, and an exploit's jump is the step between two points (exact at every step,
    which is where the trainer evaluates the schedule; ``log_interval: 1`` logs every step)."""
    points: list[list[float]] = []
    for record in read_log(Path(run_dir) / LOG_NAME):
        if record.get("kind") == "train" and record.get("lr") is not None:
            points.append([int(record["tokens"]) - tokens_per_step, float(record["lr"])])
    if not points:
        raise TuneError(f"{run_dir}: log.jsonl has no train records to read the schedule from")
    return {"name": "piecewise_linear", "points": _merge_collinear(points), "unit": "tokens"}


def _merge_collinear(points: list[list[float]]) -> list[list[float]]:
    kept = [points[0]]
    for index in range(1, len(points) - 1):
        (t0, v0), (t1, v1), (t2, v2) = kept[-1], points[index], points[index + 1]
        predicted = v0 + (v2 - v0) * (t1 - t0) / (t2 - t0) if t2 != t0 else v2
        if not math.isclose(predicted, v1, rel_tol=1e-9, abs_tol=1e-15):
            kept.append(points[index])
    if len(points) > 1:
        kept.append(points[-1])
    return kept


def realised_mixture(run_dir: str | Path) -> dict[str, Any]:
    """``data.mixture`` over the run's config history: each weight a number when it never
    changed, else a ``piecewise_linear`` spec over tokens that jumps where a config took effect."""
    entries = read_config_history(run_dir)
    if not entries:
        raise TuneError(f"{run_dir}: no config_history.jsonl to read the mixture from")
    mixtures = [(int(e["tokens"]), e["config"]["data"].get("mixture")) for e in entries]
    first = mixtures[0][1]
    if first is None or all(m == first for _, m in mixtures):
        return (
            dict(first) if first else {name: 1.0 for name in entries[0]["config"]["data"]["train"]}
        )
    result: dict[str, Any] = {}
    for name in first:
        points: list[list[float]] = []
        for index, (tokens, mixture) in enumerate(mixtures):
            weight = float(mixture[name])
            points.append([tokens, weight])
            end = mixtures[index + 1][0] if index + 1 < len(mixtures) else None
            if end is not None:
                points.append([end, weight])
        result[name] = {"name": "piecewise_linear", "points": points, "unit": "tokens"}
    return result


def summarise(setup: PBTSetup, members: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The results of a finished population: every member's final eval and hyper-parameters,
    every exploit event (``OUT/exploits``), and the winner (lowest mean final eval loss)."""
    rows = []
    events = [
        event
        for path in sorted((Path(setup.out) / EXPLOITS_DIR).glob("*.jsonl"))
        for event in read_events(path.parent, path.name)
    ]
    for name, hypers in sorted(members.items()):
        run_dir = setup.members_dir / name
        evals = final_eval(run_dir)
        lineage = read_events(run_dir)
        rows.append(
            {
                "member": name,
                "run_dir": str(run_dir),
                "final_eval": evals,
                "final_loss": mean_eval(evals),
                "hypers": hypers,
                "exploits_in_lineage": len(lineage),
                "lineage": lineage,  # the exploits behind the weights it ended with
            }
        )
    ranked = [row for row in rows if not math.isnan(row["final_loss"])]
    if not ranked:
        raise TuneError(f"{setup.members_dir}: no member logged an evaluation")
    winner = min(ranked, key=lambda row: row["final_loss"])
    return {
        "population": setup.population,
        "perturb": list(setup.perturb),
        "interval_tokens": setup.interval_tokens,
        "budget_tokens": setup.budget_tokens,
        "winner": winner["member"],
        "members": rows,
        "exploits": sorted(events, key=lambda e: (e["tokens"], e["member"])),
    }


def write_outputs(setup: PBTSetup, summary: dict[str, Any]) -> dict[str, Path]:
    """Write the winner's specs and the results (JSON and a text table) into ``setup.out``."""
    out = Path(setup.out)
    winner_dir = setup.members_dir / summary["winner"]
    tokens_per_step = TrainConfig.model_validate(setup.config).tokens_per_step
    paths = {
        "schedule": out / "winner_schedule.yaml",
        "mixture": out / "winner_mixture.yaml",
        "results": out / "pbt_results.json",
        "table": out / "pbt_results.txt",
    }
    atomic_write_text(paths["schedule"], _yaml.dump(realised_schedule(winner_dir, tokens_per_step)))
    atomic_write_text(paths["mixture"], _yaml.dump(realised_mixture(winner_dir)))
    atomic_write_json(paths["results"], summary)
    atomic_write_text(paths["table"], results_table(summary) + "\n")
    return paths


def results_table(summary: dict[str, Any]) -> str:
    """Members (winner first marked ``*``), their final loss and hyper-parameters, exploits."""
    names = summary["perturb"]
    header = (
        f"{'member':<14} {'final loss':>10} " + " ".join(f"{n:>10}" for n in names) + " exploits"
    )
    lines = [header]
    for row in summary["members"]:
        mark = "*" if row["member"] == summary["winner"] else " "
        values = " ".join(f"{row['hypers'].get(n, math.nan):>10.4g}" for n in names)
        lines.append(
            f"{mark}{row['member']:<13} {row['final_loss']:>10.4f} {values} {row['exploits_in_lineage']:>8}"
        )
    for event in summary["exploits"]:
        lines.append(
            f"exploit at tokens {event['tokens']}: {event['member']} copied {event['donor']} "
            f"({_hyper_text(event['donor_hypers'])} -> {_hyper_text(event['hypers'])})"
        )
    return "\n".join(lines)


def _hyper_text(hypers: dict[str, float]) -> str:
    return ", ".join(f"{name}={value:.4g}" for name, value in hypers.items())
