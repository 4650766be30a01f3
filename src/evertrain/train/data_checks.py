"""The checks a run makes on its data when it opens it: checksums, then token ids vs vocabulary.

Rank 0 makes them, once per run open (a resume included), and sends its verdict to every rank,
so all ranks refuse with the same line and none waits in a collective for a rank that stopped.
One hash pass per run rather than one per rank: eight ranks of a node would read the same files
eight times. On several nodes with a copy of the data each, only rank 0's copy is hashed.
The cost (one sha256 pass, ~5 s per billion uint16 tokens on a loaded 2-core machine) is
measured in ``benchmarks/data.py`` (row ``verify``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evertrain.data import DataError, check_vocabulary, verify_shards
from evertrain.train import distributed
from evertrain.train.config import ConfigError


def _distinct(train: Mapping[str, Any], evals: Mapping[str, Any]) -> dict[Path, tuple[str, Any]]:
    """Each dataset folder once (eval sets are often the train sets), with its config field."""
    found: dict[Path, tuple[str, Any]] = {}
    for prefix, datasets in (("data.train", train), ("data.eval", evals)):
        for name, dataset in datasets.items():
            found.setdefault(Path(dataset.path).resolve(), (f"{prefix}.{name}", dataset))
    return found


def data_problem(train: Mapping[str, Any], evals: Mapping[str, Any], vocab_size: int) -> str | None:
    """The first problem of the run's datasets as one line (None if there is none): a shard whose
    sha256 fails, then a token id at or past ``vocab_size``."""
    datasets = _distinct(train, evals).values()
    checks = [(verify_shards, ()), (check_vocabulary, (vocab_size,))]
    for check, arguments in checks:  # every checksum first: damaged data is named as damaged
        for field, dataset in datasets:
            try:
                check(dataset, *arguments)
            except (DataError, OSError) as error:
                return f"{field}: {error}"
    return None


def check_run_data(
    train: Mapping[str, Any],
    evals: Mapping[str, Any],
    vocab_size: int,
    info: distributed.DistInfo,
) -> None:
    """ConfigError on every rank if rank 0 finds a problem (see :func:`data_problem`)."""
    problem = data_problem(train, evals, vocab_size) if info.is_main else None
    problem = distributed.broadcast_object(problem, info)
    if problem is not None:
        raise ConfigError(problem)
