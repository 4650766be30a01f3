"""Run BLAS single-threaded while fitting.

L-BFGS-B (scipy >= 1.15) calls BLAS on vectors of a few parameters every iteration. With a
multi-threaded OpenBLAS on a loaded machine each such call pays for waking and syncing threads
that compete with other processes: on the shared 2-core machine the reference fit's 135 small
L-BFGS-B runs took 10 s with default threads and 0.35 s with one. ``single_threaded_blas``
sets the OpenBLAS builds that numpy and scipy ship (``scipy_openblas``) to one thread for the
duration of a ``with`` block and restores their previous counts; it does nothing where those
libraries or their controls are absent (not Linux, another BLAS), so it is always safe to use.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# (get, set) symbol names of the OpenBLAS builds bundled with numpy (64-bit ints) and scipy
_CONTROLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)


def _loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS shared libraries already mapped into this process (Linux)."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


def _controls() -> list[tuple[object, object]]:
    found = []
    for path in _loaded_openblas():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _CONTROLS:
            get = getattr(library, get_name, None)
            put = getattr(library, set_name, None)
            if get is not None and put is not None:
                get.restype = ctypes.c_int
                put.argtypes = [ctypes.c_int]
                found.append((get, put))
                break
    return found


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Within the block, numpy's and scipy's OpenBLAS use one thread; restored afterwards."""
    controls = _controls()
    previous = []
    for get, put in controls:
        previous.append(int(get()))  # type: ignore[operator]
        put(1)  # type: ignore[operator]
    try:
        yield
    finally:
        for (_, put), count in zip(controls, previous, strict=True):
            put(count)  # type: ignore[operator]
