"""A counter-based random number generator: SplitMix64 evaluated at arbitrary indices.

The sampler and the validation split need "the i-th random number of stream s under seed k"
for any i, without drawing the first i - 1 numbers (that is what makes resume and the rank
split exact and free). SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014) is exactly such a generator: its i-th output is

    mix(key + (i + 1) * GAMMA),   GAMMA = 0x9E3779B97F4A7C15

with ``mix`` a bijective 64-bit finaliser (Stafford's variant 13), so it vectorises over an
array of indices with a handful of numpy uint64 operations. It passes BigCrush; for choosing a
data source and a window start per sequence that is far more than enough.
"""

from __future__ import annotations

import numpy as np

_MASK = (1 << 64) - 1
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_S11 = np.uint64(11)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic, no warnings)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def stream_key(seed: int, stream: int) -> np.uint64:
    """A 64-bit key for stream ``stream`` under ``seed`` (distinct streams are decorrelated)."""
    base = _mix(
        np.array([(seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _MASK], dtype=np.uint64)
    )
    keyed = _mix(base ^ np.array([stream & _MASK], dtype=np.uint64))
    return keyed[0]


def random_uint64(key: np.uint64, index: np.ndarray) -> np.ndarray:
    """The ``index``-th outputs (uint64 array) of the SplitMix64 stream with this key."""
    index = np.asarray(index, dtype=np.uint64)
    return _mix(key + (index + np.uint64(1)) * _GAMMA)


def random_uniform(key: np.uint64, index: np.ndarray) -> np.ndarray:
    """The ``index``-th uniforms in [0, 1) (float64, 53 random bits) of the stream with this key."""
    return (random_uint64(key, index) >> _S11).astype(np.float64) * (2.0**-53)
