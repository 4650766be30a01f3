"""Process-group plumbing for ``torchrun`` (DDP); a no-op in a single process.

``torchrun --nproc_per_node N -m evertrain.train CONFIG`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`setup` initialises gloo on CPU or NCCL on GPU. Each rank draws its own
slice of the global batch from the mixture sampler (rank r gets rows ``[r*B/N, (r+1)*B/N)``),
DDP averages gradients, so N processes follow the single-process trajectory to float tolerance.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job. ``owns_group``: :func:`setup` created the process
    group (so :func:`teardown` destroys it); a group the caller made stays theirs."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device_type: str) -> DistInfo:
    """Join the process group if launched by torchrun (``WORLD_SIZE > 1``)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns_group = not dist.is_initialized()
    if owns_group:
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, owns_group=owns_group)


def teardown(info: DistInfo) -> None:
    """Destroy the process group :func:`setup` created (NCCL warns at exit about one left
    open, and its communicators hold GPU memory); a group the caller created is left alone."""
    if info.enabled and info.owns_group and dist.is_initialized():
        # Gloo's worker thread frees each finished collective's tensors after the caller's wait
        # returns, and freeing a tensor that Python knows takes the GIL. ~ProcessGroupGloo joins
        # that thread; reached from the DDP reducer's destructor it runs with the GIL held, a
        # deadlock when a free is still pending (seen on a loaded CPU: the reducer went with a
        # RunPreempted's traceback after the group was destroyed). So every reducer goes first,
        # while the group is still registered (the loop drops its DDP wrapper; collect() frees
        # one left in a cycle); the group's own Python handle releases the GIL in its
        # destructor, and the barrier (no tensors) leaves the worker idle before it.
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``value`` over ranks (in place on a copy); identity in one process."""
    if not info.enabled:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def all_reduce_max(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Elementwise maximum of ``value`` over ranks (on a copy); identity in one process.

    The loop uses it on a one-element tensor each step so that a stop request (a signal number,
    0 for none) seen by any rank stops every rank after the same step.
    """
    if not info.enabled:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return value


def broadcast_object(obj, info: DistInfo):  # noqa: ANN001, ANN201
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
