"""Data benchmarks: mixture-sampler throughput and prepare throughput, each beside a peer.

    python benchmarks/data.py            # writes benchmarks/results/data.json

1. ``sampler_tokens_per_s``: tokens per second from ``MixtureSampler.next_batch()`` into torch
   tensors (``torch.from_numpy`` of x and y), one core (``torch.set_num_threads(1)``), two
   prepared sources mixed 25/75, seq_len 1024, batch 32. The peer is nanoGPT's ``get_batch``
   (a fresh np.memmap per call, ``torch.randint`` window starts, ``torch.stack`` of slices) on one
   source, measured in the same process. Smaller batches and changing weights are reported too.
2. ``prepare_speedup``: our ``prepare`` (``encode_batch_fast`` over batches of documents on all
   cores, val split, shard write with sha256) in MB of text per second, divided by a plain loop
   ``for doc in docs: tokenizer.encode(doc).ids`` collecting ids into one numpy array, on the same
   corpus (stdlib-english + stdlib-code, already in memory) with the same tokenizer.
3. ``verify_mb_per_s``: what a training run pays to open its data (``evertrain.train`` hashes
   every shard once per run open and checks the largest token id, ``evertrain.data.integrity``):
   ``verify_shards`` in MB of shard per second over the same two prepared datasets, page cache
   warm (a cold read is bounded by the disk instead), beside the sampler and prepare figures
   expressed in the same unit; also the reading of the largest id for manifests lacking it.
   ``python benchmarks/data.py --only verify`` measures this row alone and adds it to the JSON,
   keeping the other figures as they were.

Timings take the best of several repeats (the machine is shared; the best is the least disturbed).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "data.json"


def _throughput(next_batch, seconds: float = 1.5, repeats: int = 3) -> float:
    """Best tokens/s over `repeats` windows of `seconds` each (x tokens per batch counted)."""
    import torch

    best = 0.0
    for _ in range(3):  # warm the page cache and the code paths
        next_batch()
    for _ in range(repeats):
        tokens, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            x, y = next_batch()
            x_tensor, y_tensor = torch.from_numpy(x), torch.from_numpy(y)
            tokens += x_tensor.numel()
            assert y_tensor.dtype == torch.int64
        best = max(best, tokens / (time.perf_counter() - start))
    return best


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def nanogpt_get_batch(path: Path, dtype: np.dtype, seq_len: int, batch_size: int):
    """nanoGPT's train.py get_batch (CPU branch), verbatim apart from names."""
    import torch

    def get_batch():
        data = np.memmap(path, dtype=dtype, mode="r")
        ix = torch.randint(len(data) - seq_len, (batch_size,))
        x = torch.stack([torch.from_numpy(data[i : i + seq_len].astype(np.int64)) for i in ix])
        y = torch.stack(
            [torch.from_numpy(data[i + 1 : i + 1 + seq_len].astype(np.int64)) for i in ix]
        )
        return x.numpy(), y.numpy()

    return get_batch


def bench_sampler(english, code) -> dict:
    import torch

    from evertrain.data import MixtureSampler

    torch.set_num_threads(1)
    datasets = {"english": english, "code": code}
    constant = {"english": 0.25, "code": 0.75}
    linear = {
        "english": {"name": "piecewise_linear", "points": [[0, 0.9], [10**9, 0.1]]},
        "code": {"name": "piecewise_linear", "points": [[0, 0.1], [10**9, 0.9]]},
    }
    rehearsal = {
        "english": {"name": "rehearsal", "weight": 0.3, "exponent": 0.5, "scale_tokens": 1e6},
        "code": 1.0,
    }
    rows = {}
    for label, weights, seq_len, batch in [
        ("constant_25_75_seq1024_batch32", constant, 1024, 32),
        ("linear_schedule_seq1024_batch32", linear, 1024, 32),
        ("rehearsal_seq1024_batch32", rehearsal, 1024, 32),
        ("constant_25_75_seq128_batch16", constant, 128, 16),
        ("linear_schedule_seq128_batch16", linear, 128, 16),
    ]:
        sampler = MixtureSampler(datasets, weights, seq_len=seq_len, batch_size=batch, seed=0)
        rows[label] = _throughput(sampler.next_batch)
    peer = {
        "nanogpt_get_batch_seq1024_batch32": _throughput(
            nanogpt_get_batch(code.path / "train.bin", code.dtype, 1024, 32)
        ),
        "nanogpt_get_batch_seq128_batch16": _throughput(
            nanogpt_get_batch(code.path / "train.bin", code.dtype, 128, 16)
        ),
    }
    return {"evertrain": rows, "peer": peer}


def bench_prepare(tokenizer_path: Path, work: Path, repeats: int = 3) -> dict:
    from evertrain.data import builtin_documents, load_tokenizer, prepare
    from evertrain.data.tokenizer import eos_token_id

    sources = ["stdlib-english", "stdlib-code"]
    documents = [doc for name in sources for doc in builtin_documents(name)]  # cached in memory
    megabytes = sum(len(doc.encode("utf-8")) for doc in documents) / 1e6
    tokenizer = load_tokenizer(tokenizer_path)
    _, eos = eos_token_id(tokenizer)

    def plain_loop() -> int:
        ids: list[int] = []
        for doc in documents:
            ids.extend(tokenizer.encode(doc, add_special_tokens=False).ids)
            ids.append(eos)
        return len(np.array(ids, dtype=np.uint16))

    ours_seconds, plain_seconds, ours_cpu, plain_cpu = [], [], [], []
    for repeat in range(repeats):
        out = work / f"prepared-{repeat}"
        start, cpu = time.perf_counter(), _cpu_seconds()
        dataset = prepare(sources, out, tokenizer=tokenizer_path, val_fraction=0.05, progress=False)
        ours_seconds.append(time.perf_counter() - start)
        ours_cpu.append(_cpu_seconds() - cpu)
        ours_tokens = dataset.manifest["tokens"]["train"] + dataset.manifest["tokens"]["val"]
        shutil.rmtree(out)
        start, cpu = time.perf_counter(), _cpu_seconds()
        plain_tokens = plain_loop()
        plain_seconds.append(time.perf_counter() - start)
        plain_cpu.append(_cpu_seconds() - cpu)
    assert ours_tokens == plain_tokens, (ours_tokens, plain_tokens)  # same work, same tokens
    ours, plain = megabytes / min(ours_seconds), megabytes / min(plain_seconds)
    return {
        "corpus": "+".join(sources),
        "megabytes": round(megabytes, 3),
        "tokens": ours_tokens,
        "ours_mb_per_s": ours,
        "plain_loop_mb_per_s": plain,
        "ours_seconds": ours_seconds,
        "plain_loop_seconds": plain_seconds,
        # CPU seconds (all threads): less sensitive to other load than wall time.
        "ours_cpu_seconds": ours_cpu,
        "plain_loop_cpu_seconds": plain_cpu,
        "ours_mb_per_cpu_s": megabytes / min(ours_cpu),
        "plain_loop_mb_per_cpu_s": megabytes / min(plain_cpu),
        "speedup": ours / plain,
    }


def bench_verify(datasets: list, reference: dict | None = None, seconds: float = 2.0) -> dict:
    """Shard verification throughput; ``reference``: the sampler/prepare figures to compare to."""
    from evertrain.data import verify_shards
    from evertrain.data.integrity import shard_max_id

    shard_bytes = sum(
        (ds.path / shard["file"]).stat().st_size
        for ds in datasets
        for shard in ds.manifest["shards"].values()
    )
    tokens = sum(sum(ds.manifest["tokens"].values()) for ds in datasets)

    def best_rate(work) -> float:
        """Best MB/s over windows of ~seconds/3, each running ``work`` on every dataset."""
        best = 0.0
        for _ in range(3):
            passes, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / 3:
                for ds in datasets:
                    work(ds)
                passes += 1
            best = max(best, passes * shard_bytes / 1e6 / (time.perf_counter() - start))
        return best

    for ds in datasets:
        verify_shards(ds)  # warm the page cache
    verify = best_rate(verify_shards)
    max_id = best_rate(lambda ds: (shard_max_id(ds.train_tokens), shard_max_id(ds.val_tokens)))
    bytes_per_token = shard_bytes / tokens
    row = {
        "verify_mb_per_s": verify,
        "verify_tokens_per_s": verify * 1e6 / bytes_per_token,
        "max_token_id_read_mb_per_s": max_id,
        "shard_megabytes": shard_bytes / 1e6,
        "seconds_per_billion_tokens": 1e9 * bytes_per_token / 1e6 / verify,
    }
    if reference:
        # prepare is reported in MB of text; in shard bytes it writes prepare_tokens_per_s * 2.
        prepare_tokens_per_s = reference["prepare"]["tokens"] / min(
            reference["prepare"]["ours_seconds"]
        )
        row["prepare_tokens_per_s"] = prepare_tokens_per_s
        row["verify_vs_prepare_tokens_per_s"] = row["verify_tokens_per_s"] / prepare_tokens_per_s
        row["sampler_tokens_per_s"] = reference["sampler_tokens_per_s"]
        row["verify_vs_sampler_tokens_per_s"] = (
            row["verify_tokens_per_s"] / reference["sampler_tokens_per_s"]
        )
    return row


def _prepared_pair(work: Path) -> tuple:
    from evertrain.data import prepare, train_tokenizer

    tokenizer_path = train_tokenizer(
        ["stdlib-english", "stdlib-code"], work / "tokenizer.json", vocab_size=4096
    )
    english = prepare(
        ["stdlib-english"], work / "english", tokenizer=tokenizer_path, progress=False
    )
    code = prepare(["stdlib-code"], work / "code", tokenizer=tokenizer_path, progress=False)
    return tokenizer_path, english, code


_VERIFY_DESCRIPTION = (
    "verify_shards() (sha256 of every shard, 4 MiB reads, one core) over the stdlib-english and "
    "stdlib-code shards (vocab 4096, uint16), page cache warm, best of 3 windows; what a training "
    "run pays once per run open. Compared in tokens/s with prepare (tokens written per second) "
    "and the sampler (tokens drawn per second) of this file"
)


def main_verify_only(results_path: Path = RESULTS) -> dict:
    """Measure the verify row alone and add it to the existing results (other rows kept)."""
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    load_at_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="evertrain-bench-verify-"))
    try:
        _, english, code = _prepared_pair(work)
        row = bench_verify([english, code], results if "prepare" in results else None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row["load_average_1min"] = {"start": load_at_start, "end": os.getloadavg()[0]}
    row["command"] = "python benchmarks/data.py --only verify"
    results["verify_mb_per_s"] = row["verify_mb_per_s"]
    results["verify"] = row
    results.setdefault("description", {})["verify_mb_per_s"] = _VERIFY_DESCRIPTION
    from evertrain._atomic import atomic_write_json

    atomic_write_json(results_path, results)
    return results


def main(results_path: Path = RESULTS) -> dict:
    load_at_start = os.getloadavg()[0]  # other work on a shared machine skews the figures
    work = Path(tempfile.mkdtemp(prefix="evertrain-bench-data-"))
    try:
        tokenizer_path, english, code = _prepared_pair(work)
        prepare_figures = bench_prepare(tokenizer_path, work)
        sampler_figures = bench_sampler(english, code)
        headline = sampler_figures["evertrain"]["constant_25_75_seq1024_batch32"]
        verify_figures = bench_verify(
            [english, code], {"prepare": prepare_figures, "sampler_tokens_per_s": headline}
        )
        corpora = {
            ds.name: {
                "bytes": ds.manifest["bytes"],
                "documents": sum(ds.manifest["documents"].values()),
                "tokens": sum(ds.manifest["tokens"].values()),
                "tokens_train": ds.manifest["tokens"]["train"],
                "tokens_val": ds.manifest["tokens"]["val"],
            }
            for ds in (english, code)
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    headline = sampler_figures["evertrain"]["constant_25_75_seq1024_batch32"]
    peer = sampler_figures["peer"]["nanogpt_get_batch_seq1024_batch32"]
    import tokenizers
    import torch

    results = {
        "sampler_tokens_per_s": headline,
        "sampler_vs_nanogpt_get_batch": headline / peer,
        "prepare_speedup": prepare_figures["speedup"],
        "prepare_mb_per_s": prepare_figures["ours_mb_per_s"],
        "verify_mb_per_s": verify_figures["verify_mb_per_s"],
        "sampler": sampler_figures,
        "verify": verify_figures,
        "prepare": prepare_figures,
        "builtin_corpora_vocab4096": corpora,
        "description": {
            "sampler_tokens_per_s": "MixtureSampler.next_batch() -> torch.from_numpy(x), torch.from_numpy(y); "
            "x tokens per second, one thread (torch.set_num_threads(1)); sources stdlib-english/stdlib-code "
            "(vocab 4096, uint16 memmaps), weights 0.25/0.75, seq_len 1024, batch 32; best of 3 windows of 1.5 s",
            "sampler_vs_nanogpt_get_batch": "the same, divided by nanoGPT's get_batch (fresh memmap, torch.randint, "
            "torch.stack of slices) at seq_len 1024, batch 32, same process",
            "prepare_speedup": "prepare() MB/s (encode_batch_fast on all cores, val split, shard write + sha256) "
            "divided by a plain `for doc in docs: tokenizer.encode(doc).ids` loop, same corpus in memory, same "
            "tokenizer, same process; best of 3 each",
            "verify_mb_per_s": _VERIFY_DESCRIPTION,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "torch": torch.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "command": "python benchmarks/data.py",
        "load_average_1min": {"start": load_at_start, "end": os.getloadavg()[0]},
    }
    from evertrain._atomic import atomic_write_json

    atomic_write_json(results_path, results)
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file to write")
    parser.add_argument(
        "--only", choices=["verify"], help="measure this row alone; keep the rest of --out"
    )
    arguments = parser.parse_args()
    figures = main_verify_only(arguments.out) if arguments.only else main(arguments.out)
    print(json.dumps({k: v for k, v in figures.items() if not isinstance(v, dict)}, indent=2))
