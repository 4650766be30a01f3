"""Throughput of `evertrain.train.run` against a minimal hand-written PyTorch loop.

Both train the same GPT (``evertrain.train.model.GPT``) with AdamW, gradient clipping and the same
batch shape on the same prepared data, in one process, repeats interleaved (ours, baseline, ours,
...), after a warm-up of each; the medians are compared. The framework's end-to-end time includes
everything `run()` does (config, data and sampler set-up, schedule evaluation, JSONL logging, the
final evaluation and checkpoint), so ``ratio = ours / baseline`` is a conservative measure of what
the framework costs. ``steady_ratio`` compares the median step alone (the regime of a long run,
where the fixed set-up, final eval and checkpoint costs vanish).

MFU (model FLOPs utilisation), reported when ``--peak-tflops`` is given (e.g. 989 for an H100 SXM
in bf16 dense):

    flops_per_token = 6 * N + 12 * n_layer * d_model * seq_len      (PaLM, Chowdhery et al. 2022, app. B)
    MFU = flops_per_token * tokens_per_s / (peak_tflops * 1e12)

with N the parameter count (tied embeddings counted once: the output projection is a real matmul;
learned position tables excluded: a lookup costs no FLOPs). 6N = 2N forward + 4N backward.

Run:  python benchmarks/train.py                      # CPU, writes benchmarks/results/train.json
      python benchmarks/train.py --device cuda --dtype bfloat16 --peak-tflops 989 --out /tmp/gpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evertrain._atomic import atomic_write_json
from evertrain.data import PreparedDataset, prepare
from evertrain.train import TrainConfig, history, run
from evertrain.train.model import GPT, GPTConfig

MODELS = {
    "1M": {"n_layer": 4, "n_head": 4, "d_model": 128, "seq_len": 128, "batch_size": 16},
    "10M": {"n_layer": 6, "n_head": 6, "d_model": 384, "seq_len": 128, "batch_size": 8},
}


def flops_per_token(params: int, n_layer: int, d_model: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the weights plus the attention score/value matmuls."""
    return 6.0 * params + 12.0 * n_layer * d_model * seq_len


def ours(
    spec: dict[str, Any],
    data_dir: Path,
    steps: int,
    device: str,
    dtype: str,
    root: Path,
    batch_size: int,
) -> tuple[dict[str, float], int]:
    """Tokens/s of a full `run()`: end to end (set-up to final checkpoint) and of the median step."""
    tokens_per_step = batch_size * spec["seq_len"]
    out_dir = Path(tempfile.mkdtemp(dir=root))
    cfg = TrainConfig.model_validate(
        {
            "out_dir": str(out_dir),
            "device": device,
            "dtype": dtype,
            "model": {k: spec[k] for k in ("n_layer", "n_head", "d_model", "seq_len")},
            "data": {"train": {"web": str(data_dir)}, "eval_tokens": tokens_per_step},
            "schedule": {"name": "cosine", "peak": 1e-3, "total": steps, "warmup": steps // 10},
            "batch_size": batch_size,
            "budget_tokens": steps * tokens_per_step,
            "eval_interval_tokens": 10**15,
            "checkpoint_interval_tokens": 10**15,
        }
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    result = run(cfg, progress=False)
    elapsed, cpu_elapsed = time.perf_counter() - start, time.process_time() - cpu_start
    # Steady state: the median step, from the per-step throughput the trainer logs.
    step_rates = [r["tokens_per_s"] for r in history(out_dir) if r.get("tokens_per_s")]
    rates = {
        "wall": result.tokens / elapsed,
        "steady": statistics.median(step_rates),
        "cpu": result.tokens / cpu_elapsed,
    }
    return rates, result.params


def baseline(
    spec: dict[str, Any],
    data_dir: Path,
    steps: int,
    device: str,
    dtype: str,
    vocab_size: int,
    batch_size: int,
) -> dict[str, float]:
    """Tokens/s of the loop a person would write by hand (nanoGPT's get_batch, AdamW, clip):
    end to end and of the median step."""
    start, cpu_start = time.perf_counter(), time.process_time()
    dev = torch.device(device)
    data = PreparedDataset(data_dir).train_tokens  # a 1-D uint16 np.memmap, as nanoGPT's train.bin
    seq_len = spec["seq_len"]
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(
            vocab_size=vocab_size,
            **{k: spec[k] for k in ("n_layer", "n_head", "d_model", "seq_len")},
        )
    ).to(dev)
    # nanoGPT's configure_optimizers: decay matrices, not norms/biases (nor, as in evertrain, the
    # embedding tables); the same split and hyper-parameters as the trainer's.
    decay = [
        p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith(("wte", "wpe"))
    ]
    no_decay = [
        p for n, p in model.named_parameters() if p.dim() < 2 or n.startswith(("wte", "wpe"))
    ]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.95),
        fused=dev.type == "cuda",
    )
    warmup = steps // 10

    def get_lr(step: int) -> float:  # nanoGPT's get_lr: linear warm-up, cosine to zero
        if step < warmup:
            return 1e-3 * step / warmup
        return 1e-3 * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (steps - warmup)))

    amp = (
        torch.autocast(dev.type, dtype=torch.bfloat16)
        if dtype == "bfloat16"
        else torch.autocast(dev.type, enabled=False)
    )
    generator = np.random.default_rng(0)
    step_seconds = []
    for step in range(steps):
        step_start = time.perf_counter()
        starts = generator.integers(0, len(data) - seq_len - 1, size=batch_size)
        x = torch.from_numpy(np.stack([data[s : s + seq_len] for s in starts]).astype(np.int64)).to(
            dev
        )
        y = torch.from_numpy(
            np.stack([data[s + 1 : s + 1 + seq_len] for s in starts]).astype(np.int64)
        ).to(dev)
        lr = get_lr(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with amp:
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        step_seconds.append(time.perf_counter() - step_start)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    tokens_per_step = batch_size * seq_len
    return {
        "wall": steps * tokens_per_step / (time.perf_counter() - start),
        "steady": tokens_per_step / statistics.median(step_seconds),
        "cpu": steps * tokens_per_step / (time.process_time() - cpu_start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="device peak for MFU (dense, this dtype)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps per timed run (default: 60 for 1M, 24 for 10M)",
    )
    parser.add_argument("--models", default="1M,10M")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="override each model's batch (larger on a GPU)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads; default 1: on a shared, loaded CPU two OpenMP threads "
        "spin-wait on each other and every matmul slows many-fold (0 = torch's default)",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="evertrain-bench-train-"))
    print(f"preparing data in {root} ...", flush=True)
    dataset = prepare(
        ["stdlib-english"], root / "data", vocab_size=2048, max_bytes=3_000_000, progress=False
    )
    entries = []
    for name in args.models.split(","):
        spec = MODELS[name]
        steps = args.steps or (60 if name == "1M" else 24)
        batch = args.batch_size or spec["batch_size"]
        data_dir, vocab = root / "data", dataset.vocab_size
        # Warm-up: imports, allocator, first-call kernels for both loops.
        ours(spec, data_dir, 3, args.device, args.dtype, root, batch)
        baseline(spec, data_dir, 3, args.device, args.dtype, vocab, batch)
        our_runs: list[dict[str, float]] = []
        base_runs: list[dict[str, float]] = []
        params = 0
        for repeat in range(args.repeats):
            # Alternate which goes first so drifting machine load biases neither side.
            for side in ("ours", "baseline") if repeat % 2 == 0 else ("baseline", "ours"):
                if side == "ours":
                    rates, params = ours(
                        spec, data_dir, steps, args.device, args.dtype, root, batch
                    )
                    our_runs.append(rates)
                else:
                    base_runs.append(
                        baseline(spec, data_dir, steps, args.device, args.dtype, vocab, batch)
                    )
            print(
                f"{name} repeat {repeat}: ours {our_runs[-1]['wall']:,.0f} tok/s, "
                f"baseline {base_runs[-1]['wall']:,.0f} tok/s",
                flush=True,
            )

        def median(runs: list[dict[str, float]], key: str) -> float:
            return statistics.median(r[key] for r in runs)

        ours_median, base_median = median(our_runs, "wall"), median(base_runs, "wall")
        per_token = flops_per_token(params, spec["n_layer"], spec["d_model"], spec["seq_len"])
        peak = args.peak_tflops * 1e12 if args.peak_tflops else None
        entry = {
            "name": name,
            "params": params,
            **{k: spec[k] for k in ("n_layer", "n_head", "d_model", "seq_len")},
            "batch_size": batch,
            "steps": steps,
            # End to end, wall clock: what a user waits for (includes run()'s set-up, final
            # eval and checkpoint).
            "tokens_per_s": ours_median,
            "baseline_tokens_per_s": base_median,
            "ratio": ours_median / base_median,
            # The median step alone: the regime of a long run.
            "steady_tokens_per_s": median(our_runs, "steady"),
            "steady_baseline_tokens_per_s": median(base_runs, "steady"),
            "steady_ratio": median(our_runs, "steady") / median(base_runs, "steady"),
            # Process CPU time instead of wall clock: insensitive to other processes' load on a
            # shared machine (meaningful on CPU only).
            "cpu_time_ratio": median(our_runs, "cpu") / median(base_runs, "cpu"),
            "runs": our_runs,
            "baseline_runs": base_runs,
            "flops_per_token": per_token,
            "mfu": per_token * ours_median / peak if peak else None,
            "baseline_mfu": per_token * base_median / peak if peak else None,
        }
        entries.append(entry)
        print(
            json.dumps(
                {
                    k: entry[k]
                    for k in (
                        "name",
                        "params",
                        "tokens_per_s",
                        "baseline_tokens_per_s",
                        "ratio",
                        "steady_ratio",
                        "cpu_time_ratio",
                    )
                }
            ),
            flush=True,
        )
    result = {
        "benchmark": "evertrain.train.run vs a minimal hand-written PyTorch loop (same GPT, same data, one process)",
        "command": "python benchmarks/train.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if v is not None and k != "out"
        ),
        "device": args.device,
        "dtype": args.dtype,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "peak_tflops": args.peak_tflops,
        "models": entries,
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
