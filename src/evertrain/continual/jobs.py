"""Which training run to start next on a free worker: by dependencies, then longest first.

The demo's runs form a small dependency graph: the continuations need the base's final
checkpoint, ``infinite+replay`` only its pre-anneal checkpoint (90 % into the base), and
``retrain`` nothing. Starting them in a fixed order leaves a worker idle at the end while the
last long run trains alone; starting, among the runs whose dependencies are met, the longest
first (LPT list scheduling) keeps the long runs off the end.

:func:`next_job` is the rule, used by the live dispatcher; :func:`simulate` replays it on
lengths alone (no training), which is how the rule is tested and how an order can be shown
before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Job:
    """One run to schedule: ``length`` is its cost (e.g. tokens), ``after`` maps each job it
    depends on to the fraction of that job that must be done first (1.0: finished)."""

    name: str
    length: float
    after: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Slot:
    """Where and when :func:`simulate` runs a job."""

    name: str
    worker: int
    start: float
    end: float


def next_job(pending: Sequence[Job], ready: Callable[[Job], bool]) -> Job | None:
    """The longest of the ``pending`` jobs that are ``ready`` (the first listed among equally
    long ones), or None when none is ready."""
    best: Job | None = None
    for job in pending:
        if ready(job) and (best is None or job.length > best.length):
            best = job
    return best


def simulate(jobs: Sequence[Job], workers: int) -> list[Slot]:
    """Run :func:`next_job` on ``workers`` identical workers, each job taking ``length`` time
    units; return the slots in start order. Raises ValueError for unknown or cyclic dependencies."""
    if workers < 1:
        raise ValueError(f"workers={workers!r} must be at least 1")
    by_name = {job.name: job for job in jobs}
    for job in jobs:
        for dependency, fraction in job.after.items():
            if dependency not in by_name or dependency == job.name:
                raise ValueError(f"job {job.name!r} depends on unknown job {dependency!r}")
            if not 0.0 < fraction <= 1.0:
                raise ValueError(
                    f"job {job.name!r}: fraction {fraction!r} of {dependency!r} must be in (0, 1]"
                )
    pending = list(jobs)
    started: dict[str, Slot] = {}
    busy_until = [0.0] * workers
    now = 0.0

    def milestone(name: str, fraction: float) -> float:
        slot = started[name]
        return slot.end if fraction >= 1.0 else slot.start + fraction * by_name[name].length

    def ready(job: Job) -> bool:
        return all(
            name in started and milestone(name, fraction) <= now
            for name, fraction in job.after.items()
        )

    while pending:
        assigned = False
        for worker in range(workers):
            if busy_until[worker] > now:
                continue
            job = next_job(pending, ready)
            if job is None:
                break
            started[job.name] = Slot(job.name, worker, now, now + job.length)
            busy_until[worker] = now + job.length
            pending.remove(job)
            assigned = True
        # Advance to the next moment anything changes: a run ends or passes a milestone.
        upcoming = [end for end in busy_until if end > now]
        upcoming += [
            milestone(name, fraction)
            for job in pending
            for name, fraction in job.after.items()
            if name in started and milestone(name, fraction) > now
        ]
        if upcoming:
            now = min(upcoming)
        elif pending and not assigned:
            raise ValueError(
                f"jobs {sorted(j.name for j in pending)} can never start: "
                "their dependencies form a cycle"
            )
    return sorted(started.values(), key=lambda s: (s.start, s.worker))
