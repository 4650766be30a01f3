"""Keep glibc from mapping and unmapping activation buffers on every CPU training step.

PyTorch's CPU allocator is plain ``malloc``. glibc serves large blocks (activations, logits,
gradients: megabytes each) with ``mmap`` and, when they are freed, unmaps them or trims the heap
top back to the OS, so the next step faults every page in again. On a 1M-parameter GPT this cost
~7% of the step time here (see benchmarks/results/train.json). Raising the mmap threshold and the
trim threshold makes freed blocks stay in the heap for the next step to reuse, as jemalloc or
tcmalloc would. The settings are process-wide and only change when memory goes back to the OS,
never what is computed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

# glibc caps M_MMAP_THRESHOLD at 32 MiB on 64-bit (HEAP_MAX_SIZE / 2): blocks up to that size come
# from the heap and are reused; the heap top is only trimmed once 1 GiB of it is free.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20

_applied = False


def tune_glibc_malloc() -> bool:
    """Apply the settings above once per process. Returns whether they are in force (False off
    Linux/glibc, e.g. macOS or musl, where nothing is changed)."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = (
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        and mallopt(_M_TOP_PAD, TOP_PAD) == 1
    )
    _applied = ok
    return ok
