"""Schedule benchmarks, run side by side with the peer in one process.

1. ``torch_step_overhead_ratio``: per-step time of ``ScheduleLR.step()`` divided by that of the
   ``LambdaLR`` that transformers' ``get_wsd_schedule`` returns, for the same WSD schedule (warmup,
   stable, linear decay to a floor) on identical AdamW optimizers (two param groups). Each repeat
   builds fresh schedulers and steps each through the whole schedule; the order alternates
   between repeats (interleaved); the ratio is of the medians. Target: <= 1.0.
2. ``vectorized_speedup``: time to step a torch scheduler (the same ``LambdaLR``) 1,000,000 times,
   reading its LR each step, divided by the time of evaluating our schedule on the same 1,000,000
   points at once (``schedule(np.arange(1_000_000))``). Target: >= 100. The two LR sequences are
   checked equal (max relative difference recorded).

    python benchmarks/schedules.py            # writes benchmarks/results/schedules.json
    python benchmarks/schedules.py --quick    # fewer repeats, for a smoke run
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evertrain._atomic import atomic_write_json
from evertrain.adapters.torch import ScheduleLR
from evertrain.schedules import from_spec

RESULTS = Path(__file__).resolve().parent / "results" / "schedules.json"

PEAK, FLOOR_RATIO = 3e-4, 0.1
VECTOR_CALLS_PER_REPEAT = 5


def wsd_spec(total: int) -> dict[str, Any]:
    warmup, decay = total // 10, total // 5
    return {
        "name": "wsd",
        "peak": PEAK,
        "total": total,
        "warmup": warmup,
        "decay": decay,
        "decay_shape": "linear",
        "floor": PEAK * FLOOR_RATIO,
        "warmup_start": PEAK * FLOOR_RATIO,  # HF warms up from min_lr_ratio * lr
    }


def make_optimizer() -> torch.optim.Optimizer:
    model = torch.nn.Linear(8, 8)
    optimizer = torch.optim.AdamW(
        [
            {"params": [model.weight], "weight_decay": 0.1},
            {"params": [model.bias], "weight_decay": 0.0},
        ],
        lr=PEAK,
    )
    optimizer.step()  # no grads: a no-op that marks the optimizer as stepped (torch's order check)
    return optimizer


def make_ours(total: int) -> ScheduleLR:
    return ScheduleLR(make_optimizer(), wsd_spec(total))


def make_peer(total: int) -> torch.optim.lr_scheduler.LambdaLR:
    from transformers.optimization import get_wsd_schedule

    return get_wsd_schedule(
        make_optimizer(),
        num_warmup_steps=total // 10,
        num_decay_steps=total // 5,
        num_training_steps=total,
        decay_type="linear",
        min_lr_ratio=FLOOR_RATIO,
    )


def time_steps(scheduler: Any, steps: int) -> float:
    """Seconds per ``scheduler.step()`` over ``steps`` calls (garbage collector paused)."""
    step = scheduler.step
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed / steps


def bench_step_overhead(steps: int, repeats: int) -> dict[str, Any]:
    ours_times, peer_times = [], []
    for repeat in range(repeats):
        ours, peer = make_ours(steps), make_peer(steps)
        pair = [("ours", ours), ("peer", peer)]
        if repeat % 2:
            pair.reverse()
        for label, scheduler in pair:
            (ours_times if label == "ours" else peer_times).append(time_steps(scheduler, steps))
    ours_median, peer_median = statistics.median(ours_times), statistics.median(peer_times)
    return {
        "torch_step_overhead_ratio": ours_median / peer_median,
        "ours_us_per_step_median": ours_median * 1e6,
        "lambdalr_us_per_step_median": peer_median * 1e6,
        "ours_us_per_step": [t * 1e6 for t in ours_times],
        "lambdalr_us_per_step": [t * 1e6 for t in peer_times],
        "steps_per_repeat": steps,
        "repeats": repeats,
    }


def bench_vectorized(points: int, repeats: int) -> dict[str, Any]:
    schedule = from_spec(wsd_spec(points))
    progress = np.arange(points)
    stepped_times, vector_times, ours_stepped_times = [], [], []
    stepped = vector = None
    for _ in range(repeats):
        peer = make_peer(points)
        optimizer_lr = peer.get_last_lr
        gc.disable()
        start = time.perf_counter()
        stepped = [0.0] * points
        for k in range(points):
            stepped[k] = optimizer_lr()[0]
            peer.step()
        stepped_times.append(time.perf_counter() - start)
        # The vectorised call is cheap, so it is timed several times per repeat; the median over
        # all of them is robust to a neighbour's burst on a shared machine.
        for _ in range(VECTOR_CALLS_PER_REPEAT):
            start = time.perf_counter()
            vector = schedule(progress)
            vector_times.append(time.perf_counter() - start)
        gc.enable()
        ours = make_ours(points)
        gc.disable()
        start = time.perf_counter()
        for _ in range(points):
            ours.step()
        ours_stepped_times.append(time.perf_counter() - start)
        gc.enable()
    stepped_array = np.asarray(stepped)
    max_rel_diff = float(
        np.max(np.abs(stepped_array - vector) / np.maximum(np.abs(stepped_array), 1e-300))
    )
    stepped_median, vector_median = (
        statistics.median(stepped_times),
        statistics.median(vector_times),
    )
    return {
        "vectorized_speedup": stepped_median / vector_median,
        "points": points,
        "lambdalr_stepped_seconds": stepped_times,
        "vectorized_seconds": vector_times,
        "schedulelr_stepped_seconds": ours_stepped_times,
        "lambdalr_stepped_seconds_median": stepped_median,
        "vectorized_seconds_median": vector_median,
        "max_relative_difference_stepped_vs_vectorized": max_rel_diff,
        "repeats": repeats,
    }


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # torch's scheduler-order notices are not what we time
    overhead = bench_step_overhead(steps=20_000, repeats=5 if args.quick else 21)
    vectorized = bench_vectorized(points=1_000_000, repeats=1 if args.quick else 3)
    import transformers

    result = {
        "torch_step_overhead_ratio": overhead["torch_step_overhead_ratio"],
        "vectorized_speedup": vectorized["vectorized_speedup"],
        "description": {
            "torch_step_overhead_ratio": (
                "median seconds per ScheduleLR.step() / median seconds per step() of the LambdaLR "
                "returned by transformers.get_wsd_schedule, same WSD schedule (10% warmup from "
                "0.1*peak, linear decay over the last 20% to 0.1*peak), identical AdamW optimizers "
                "with two param groups, fresh schedulers per repeat stepped through the whole "
                "schedule, order alternated between repeats, same process; target <= 1.0"
            ),
            "vectorized_speedup": (
                "median seconds to step that LambdaLR 1,000,000 times reading get_last_lr() each "
                "step / median seconds of evertrain schedule(np.arange(1_000_000)) on the same "
                "schedule; the two sequences agree to max_relative_difference; target >= 100"
            ),
        },
        "step_overhead": overhead,
        "vectorized": vectorized,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "numpy": np.__version__,
            "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "command": "python benchmarks/schedules.py" + (" --quick" if args.quick else ""),
    }
    atomic_write_json(args.out, result)
    print(
        f"torch_step_overhead_ratio = {result['torch_step_overhead_ratio']:.3f} "
        f"(ours {overhead['ours_us_per_step_median']:.2f} us, LambdaLR "
        f"{overhead['lambdalr_us_per_step_median']:.2f} us per step)\n"
        f"vectorized_speedup = {result['vectorized_speedup']:.0f}x "
        f"(stepping {vectorized['lambdalr_stepped_seconds_median']:.3f} s, vectorised "
        f"{vectorized['vectorized_seconds_median'] * 1e3:.2f} ms for 1e6 points)\n"
        f"wrote {args.out}"
    )
    return result


if __name__ == "__main__":
    main()
