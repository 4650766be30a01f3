"""The run scheduler: longest ready job first, dependencies (whole or partial) respected."""

from __future__ import annotations

import pytest

from evertrain.continual.demo import demo_jobs
from evertrain.continual.jobs import Job, next_job, simulate


def _starts(slots):
    return {slot.name: slot.start for slot in slots}


def _check_dependencies(jobs, slots):
    by_name, placed = {j.name: j for j in jobs}, {s.name: s for s in slots}
    for job in jobs:
        for name, fraction in job.after.items():
            point = placed[name].start + fraction * by_name[name].length
            assert placed[job.name].start >= point, (job.name, name)


def test_next_job_is_the_longest_ready_one():
    jobs = [Job("a", 1), Job("b", 3, {"x": 1.0}), Job("c", 2), Job("d", 2)]
    assert next_job(jobs, lambda j: not j.after).name == "c"  # b is longer but not ready
    assert next_job(jobs, lambda j: True).name == "b"
    assert next_job(jobs, lambda j: False) is None


def test_longest_first_without_dependencies():
    slots = simulate([Job("short", 1), Job("long", 3), Job("mid", 2)], workers=2)
    assert _starts(slots) == {"long": 0, "mid": 0, "short": 2}
    assert max(s.end for s in slots) == 3


def test_demo_graph_on_two_workers_keeps_both_busy_until_the_last_start():
    jobs = demo_jobs(base_tokens=240, stage_tokens=240, pre_anneal=216)
    slots = simulate(jobs, workers=2)
    _check_dependencies(jobs, slots)
    starts = _starts(slots)
    # the two runs without a finished dependency start at once, the longest (retrain) among them
    assert starts["retrain"] == starts["base"] == 0
    assert [s.name for s in slots][:2] == ["retrain", "base"]
    # 7 base-lengths of work on 2 workers: 4 lengths is the shortest possible at run granularity
    assert max(s.end for s in slots) == 960


@pytest.mark.parametrize("workers", [3, 4])
def test_infinite_replay_starts_at_the_base_pre_anneal_checkpoint_on_a_free_worker(workers):
    jobs = demo_jobs(base_tokens=240, stage_tokens=240, pre_anneal=216)
    slots = simulate(jobs, workers=workers)
    _check_dependencies(jobs, slots)
    starts = _starts(slots)
    assert starts["infinite+replay"] == 216  # 90 % into the base, before it ends
    assert min(starts[n] for n in ("finetune", "rewarm", "rewarm+replay")) == 240


def test_a_chain_runs_in_order_and_bad_graphs_are_refused():
    chain = [Job("c", 1, {"b": 1.0}), Job("b", 5, {"a": 1.0}), Job("a", 1)]
    assert [s.name for s in simulate(chain, workers=3)] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="unknown job 'z'"):
        simulate([Job("a", 1, {"z": 1.0})], workers=1)
    with pytest.raises(ValueError, match="cycle"):
        simulate([Job("a", 1, {"b": 1.0}), Job("b", 1, {"a": 1.0})], workers=2)
    with pytest.raises(ValueError, match="fraction"):
        simulate([Job("a", 1), Job("b", 1, {"a": 0.0})], workers=1)
