"""Deterministic, resumable mixture sampling of fixed-length sequences from prepared datasets.

How a sequence is drawn. Sequences are numbered globally, g = 0, 1, 2, ... across all ranks;
global batch b holds sequences b*G .. b*G + G - 1 with G = world_size * batch_size, and rank r
takes rows r*batch_size .. (r+1)*batch_size - 1 of it. For sequence g:

1. progress ``t_g = g * seq_len`` (tokens drawn before it, all ranks together);
2. each source i has weight ``w_i(t_g) >= 0`` (a number, an ``evertrain.schedules`` spec evaluated
   at ``t_g``, or a power-law rehearsal weight, below); probabilities ``p_i = w_i / sum_j w_j``;
3. the source is the smallest i with ``u_g < p_1 + ... + p_i``, ``u_g`` the g-th uniform of a
   counter-based generator keyed by the seed (SplitMix64, see ``_rng``);
4. the window start is ``h_g mod (n_i - seq_len)``, ``h_g`` the g-th 64-bit output of a second
   stream, and the sequence is ``tokens_i[start : start + seq_len + 1]``: x is its first seq_len
   tokens, y the last seq_len (x shifted by one).

Everything about sequence g depends only on (seed, g, the weights): the state is a handful of
integers, resume is bit-identical, any split of the global batch into ranks concatenates to the
single-process stream, and even changing world_size on resume continues the same stream.

Power-law rehearsal (``{"name": "rehearsal", "weight": w0, "exponent": a, "scale_tokens": s}``):
the weight of a rehearsed source decays with the tokens since it was last drawn,

    w(t) = w0 * (1 + (t - t_last) / s) ** (-a),

where ``t_last`` is the progress at the last sequence drawn from that source (initially
``last_seen``, default 0: the start of sampling). Drawing it resets the clock, so a source that is
revisited stays in rotation, and one left alone fades as a power law, the chance of revisiting
it falling like ``(tokens since last seen) ** -a``. This makes draws depend on earlier draws, so
with a rehearsal source the choices of a global batch are made one sequence at a time (every rank
replays the whole global batch, keeping the rank split exact); ``t_last`` is part of the state.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evertrain.data._rng import random_uint64, random_uniform, stream_key
from evertrain.data.errors import DataError
from evertrain.data.shards import PreparedDataset, check_same_tokenizer
from evertrain.schedules import from_spec

_CHOICE_STREAM = 1
_OFFSET_STREAM = 2
REHEARSAL_NAMES = ("rehearsal", "power_law_rehearsal")
_PLAN_TOKENS = 1 << 17  # draws planned ahead per block (without rehearsal)


class PowerLawRehearsal:
    """Weight ``w0 * (1 + (t - t_last) / scale_tokens) ** (-exponent)``; see the module docstring."""

    def __init__(
        self, weight: float, exponent: float = 0.5, scale_tokens: float = 1e6, last_seen: int = 0
    ) -> None:
        for field, value, low in (("weight", weight, 0.0), ("exponent", exponent, 0.0)):
            if not _is_number(value) or not math.isfinite(value) or value < low:
                raise DataError(f"rehearsal {field}={value!r} must be a finite number >= {low}")
        if not _is_number(scale_tokens) or not math.isfinite(scale_tokens) or scale_tokens <= 0:
            raise DataError(
                f"rehearsal scale_tokens={scale_tokens!r} must be a positive number of tokens"
            )
        if not isinstance(last_seen, int) or last_seen < 0:
            raise DataError(
                f"rehearsal last_seen={last_seen!r} must be a non-negative integer (tokens)"
            )
        self.weight = float(weight)
        self.exponent = float(exponent)
        self.scale_tokens = float(scale_tokens)
        self.last_seen = last_seen

    def __call__(self, tokens: float, last_seen: float) -> float:
        return self.weight * (1.0 + max(0.0, tokens - last_seen) / self.scale_tokens) ** (
            -self.exponent
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": "rehearsal",
            "weight": self.weight,
            "exponent": self.exponent,
            "scale_tokens": self.scale_tokens,
            "last_seen": self.last_seen,
        }


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


#: A source's weight once read: a number, a vectorised function of token progress, or rehearsal.
WeightFunction = float | Callable[[np.ndarray], np.ndarray] | PowerLawRehearsal


def weight_function(name: str, spec: Any) -> WeightFunction:
    """The weight of source ``name`` from its spec (validated; see :class:`MixtureSampler`)."""
    if _is_number(spec):
        if not math.isfinite(spec) or spec < 0:
            raise DataError(f"weights[{name!r}]={spec!r} must be a finite number >= 0")
        return float(spec)
    if isinstance(spec, PowerLawRehearsal):
        return spec
    if isinstance(spec, Mapping) and spec.get("name") in REHEARSAL_NAMES:
        params = {k: v for k, v in spec.items() if k != "name"}
        try:
            return PowerLawRehearsal(**params)
        except TypeError as error:
            raise DataError(
                f"weights[{name!r}] rehearsal spec {dict(spec)} is invalid ({error}): "
                "use keys weight, exponent, scale_tokens, last_seen"
            ) from None
    if isinstance(spec, str | Mapping | Path):
        try:
            schedule = from_spec(spec)
        except ValueError as error:
            raise DataError(f"weights[{name!r}]: {error}") from None
        return schedule
    if callable(spec):
        return spec
    raise DataError(
        f"weights[{name!r}] is a {type(spec).__name__}: use a number, an evertrain.schedules spec "
        "(dict or 'name:key=value,...' string) or a rehearsal spec {'name': 'rehearsal', ...}"
    )


def raw_weights(
    weights: Sequence[WeightFunction], t: np.ndarray, last_seen: Sequence[float] | None = None
) -> np.ndarray:
    """Unnormalised weights, one row per source, one column per progress in ``t`` (tokens).

    A rehearsal source is evaluated with its clock at ``last_seen[i]``; without ``last_seen``
    its row is 0, for a caller that fills it sequence by sequence as the clock moves.
    """
    raw = np.empty((len(weights), len(t)), dtype=np.float64)
    for i, weight in enumerate(weights):
        if isinstance(weight, float):
            raw[i] = weight
        elif isinstance(weight, PowerLawRehearsal):
            raw[i] = 0.0 if last_seen is None else [weight(float(tk), last_seen[i]) for tk in t]
        else:
            raw[i] = np.broadcast_to(np.asarray(weight(t), dtype=np.float64), t.shape)
    return raw


def initial_clocks(weights: Sequence[WeightFunction]) -> list[int]:
    """Each source's rehearsal clock before any draw: its ``last_seen`` (0 for the others)."""
    return [w.last_seen if isinstance(w, PowerLawRehearsal) else 0 for w in weights]


def _as_tokens(name: str, dataset: Any, split: str) -> np.ndarray:
    if isinstance(dataset, str | Path):
        dataset = PreparedDataset(dataset)
    if isinstance(dataset, PreparedDataset):
        tokens = dataset.train_tokens if split == "train" else dataset.val_tokens
    elif isinstance(dataset, np.ndarray):
        tokens = dataset
    else:
        raise DataError(
            f"datasets[{name!r}] is a {type(dataset).__name__}: pass a PreparedDataset, a prepared directory or a 1-D integer array"
        )
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise DataError(
            f"datasets[{name!r}] must be a 1-D integer token array, got shape {tokens.shape} dtype {tokens.dtype}"
        )
    # A plain ndarray view: slicing/indexing an np.memmap subclass is several times slower.
    return tokens.view(np.ndarray)


class MixtureSampler:
    """Draw ``(x, y)`` batches of token windows from several datasets by (changing) weights.

    Args:
        datasets: name -> :class:`PreparedDataset` (or its directory, or a 1-D token array).
            Prepared datasets must share one tokenizer (``check_same_tokenizer``).
        weights: name -> number | ``evertrain.schedules`` spec (dict, ``"name:k=v"`` string,
            Schedule) | callable of token progress | rehearsal spec. Evaluated at the tokens
            drawn so far (all ranks) and renormalised at every draw. None: equal weights.
        seq_len: tokens per sequence (each draw reads ``seq_len + 1`` tokens).
        batch_size: sequences per batch *per rank*.
        seed: selects the stream; same seed, same batches.
        rank, world_size: this process's share of the global batch of ``world_size * batch_size``.
        split: ``"train"`` (default) or ``"val"`` tokens of prepared datasets.

    ``next_batch()`` returns int64 arrays ``x, y`` of shape ``[batch_size, seq_len]`` with
    ``y[:, :-1] == x[:, 1:]``. ``tokens_seen`` and ``tokens_per_source`` count all ranks.
    """

    def __init__(
        self,
        datasets: Mapping[str, Any],
        weights: Mapping[str, Any] | None = None,
        *,
        seq_len: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        split: str = "train",
    ) -> None:
        for field, value, low in (
            ("seq_len", seq_len, 1),
            ("batch_size", batch_size, 1),
            ("world_size", world_size, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise DataError(f"{field}={value!r} must be an integer >= {low}")
        if (
            isinstance(rank, bool)
            or not isinstance(rank, numbers.Integral)
            or not 0 <= rank < world_size
        ):
            raise DataError(
                f"rank={rank!r} must be an integer in [0, world_size={world_size}): ranks are numbered from 0"
            )
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise DataError(f"seed={seed!r} must be a non-negative integer")
        if split not in ("train", "val"):
            raise DataError(f"split={split!r} must be 'train' or 'val'")
        if not isinstance(datasets, Mapping) or not datasets:
            raise DataError("datasets must be a non-empty dict name -> PreparedDataset")
        if not all(isinstance(name, str) for name in datasets):
            raise DataError(f"dataset names must be strings, got {list(datasets)}")
        self.names: list[str] = list(datasets)
        if weights is None:
            weights = {name: 1.0 for name in self.names}
        if not isinstance(weights, Mapping):
            raise DataError(f"weights must be a dict name -> weight, got {type(weights).__name__}")
        missing = [n for n in self.names if n not in weights]
        extra = [str(n) for n in weights if n not in datasets]
        if missing or extra:
            raise DataError(
                f"weights must name exactly the datasets {self.names}: missing {missing}, unknown {extra}"
            )
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.seed = int(seed)
        # Open directories once; then refuse a mixture whose token ids mean different text.
        opened = {
            name: PreparedDataset(d) if isinstance(d, str | Path) else d
            for name, d in datasets.items()
        }
        check_same_tokenizer(opened)
        self._tokens = [_as_tokens(name, opened[name], split) for name in self.names]
        for name, tokens in zip(self.names, self._tokens, strict=True):
            if len(tokens) < self.seq_len + 1:
                raise DataError(
                    f"dataset {name!r} has {len(tokens)} {split} tokens, fewer than seq_len + 1 = {self.seq_len + 1}: "
                    "lower seq_len or prepare more data"
                )
        self._n_starts = np.array([len(t) - self.seq_len for t in self._tokens], dtype=np.uint64)
        # Windows [start, start + seq_len + 1) as zero-copy views; fancy-indexing their first axis
        # gathers whole rows in one C loop.
        self._windows = [
            np.lib.stride_tricks.sliding_window_view(t, self.seq_len + 1) for t in self._tokens
        ]
        self._weights = [weight_function(name, weights[name]) for name in self.names]
        self._rehearsal = [
            i for i, w in enumerate(self._weights) if isinstance(w, PowerLawRehearsal)
        ]
        self._constant = all(isinstance(w, float) for w in self._weights)
        if self._constant:
            total = sum(self._weights)
            if total <= 0:
                raise DataError(
                    f"weights {dict(zip(self.names, self._weights, strict=True))} are all 0: give some source a positive weight"
                )
            self._constant_cumulative = np.cumsum(np.array(self._weights) / total)
        self._choice_key = stream_key(self.seed, _CHOICE_STREAM)
        self._offset_key = stream_key(self.seed, _OFFSET_STREAM)
        self.sequences_drawn = 0
        self._sequences_per_source = np.zeros(len(self.names), dtype=np.int64)
        self._last_seen = initial_clocks(self._weights)
        self._global_rows = self.world_size * self.batch_size
        self._row_slice = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        self._row_dtype = np.result_type(*self._tokens)
        self._plan_first, self._plan_choice = 0, np.zeros(0, dtype=np.intp)
        self._plan_starts = np.zeros(0, dtype=np.intp)
        # Fail at construction, not at the first batch, if the weights are unusable from the start.
        self.weights_at(0)

    # ----------------------------------------------------------------------------------------
    @property
    def tokens_seen(self) -> int:
        """Tokens drawn so far by all ranks (``sequences_drawn * seq_len``)."""
        return self.sequences_drawn * self.seq_len

    @property
    def tokens_per_source(self) -> dict[str, int]:
        """Tokens drawn so far from each source, all ranks together."""
        return {
            name: int(n) * self.seq_len
            for name, n in zip(self.names, self._sequences_per_source, strict=True)
        }

    def weights_at(self, tokens: float | np.ndarray) -> dict[str, np.ndarray | float]:
        """The normalised mixture probabilities at this progress (rehearsal at its current clock)."""
        t = np.atleast_1d(np.asarray(tokens, dtype=np.float64))
        raw = raw_weights(self._weights, t, self._last_seen)
        probabilities = raw / self._checked_totals(raw, t)
        scalar = np.ndim(tokens) == 0
        return {
            n: float(p[0]) if scalar else p for n, p in zip(self.names, probabilities, strict=True)
        }

    def _checked_totals(self, raw: np.ndarray, t: np.ndarray) -> np.ndarray:
        if not np.all(np.isfinite(raw)) or np.any(raw < 0):
            bad = np.argwhere(~np.isfinite(raw) | (raw < 0))[0]
            raise DataError(
                f"weight of {self.names[bad[0]]!r} is {float(raw[bad[0], bad[1]])!r} at tokens={int(t[bad[1]])}: "
                "weights must be finite and >= 0 at every point of training"
            )
        totals = raw.sum(axis=0)
        if np.any(totals <= 0):
            at = int(t[np.argmax(totals <= 0)])
            raise DataError(
                f"all mixture weights are 0 at tokens={at}: give some source a positive weight there"
            )
        return totals

    def _choose(self, first: int, count: int) -> np.ndarray:
        """Source index of global sequences first .. first + count - 1 (advances rehearsal clocks)."""
        index = np.arange(first, first + count, dtype=np.uint64)
        u = random_uniform(self._choice_key, index)
        if self._constant:
            choice = np.searchsorted(self._constant_cumulative, u, side="right")
            return np.minimum(choice, len(self.names) - 1)
        t = index.astype(np.float64) * self.seq_len
        raw = raw_weights(self._weights, t)
        if not self._rehearsal:
            totals = self._checked_totals(raw, t)
            cumulative = np.cumsum(raw, axis=0)
            choice = (cumulative <= u * totals).sum(axis=0)
            return np.minimum(choice, len(self.names) - 1)
        choice = np.empty(count, dtype=np.int64)
        for row in range(count):
            column = raw[:, row].copy()
            for i in self._rehearsal:
                column[i] = self._weights[i](t[row], self._last_seen[i])
            total = self._checked_totals(column[:, None], t[row : row + 1])[0]
            picked = min(
                int(np.searchsorted(np.cumsum(column), u[row] * total, side="right")),
                len(self.names) - 1,
            )
            choice[row] = picked
            if picked in self._rehearsal:
                self._last_seen[picked] = int(t[row]) + self.seq_len
        return choice

    def _plan(self, first: int) -> None:
        """Choices and window starts of global sequences ``first .. first + block - 1``.

        Without rehearsal both are pure functions of the sequence index, so they are computed
        for a block of ~128k tokens at once: schedule evaluation and the RNG cost a few numpy
        calls per block instead of per batch. The result is identical to per-batch drawing.
        """
        count = max(self._global_rows, -(-_PLAN_TOKENS // self.seq_len))
        try:
            choice = self._choose(first, count)
        except DataError:
            # Bad weights somewhere ahead (maybe past the end of training): plan just this
            # batch, so the error is raised only if and when a bad point is really drawn.
            count = self._global_rows
            choice = self._choose(first, count)
        raw = random_uint64(self._offset_key, np.arange(first, first + count, dtype=np.uint64))
        self._plan_first = first
        self._plan_choice = choice
        self._plan_starts = (raw % self._n_starts[choice]).astype(np.intp)

    def _next_choices(self) -> tuple[np.ndarray, np.ndarray]:
        """(sources of the whole global batch, window starts of this rank's rows)."""
        first = self.sequences_drawn
        mine = slice(first + self.rank * self.batch_size, first + (self.rank + 1) * self.batch_size)
        if self._rehearsal:
            choice = self._choose(first, self._global_rows)
            index = np.arange(mine.start, mine.stop, dtype=np.uint64)
            raw = random_uint64(self._offset_key, index)
            return choice, (raw % self._n_starts[choice[self._row_slice]]).astype(np.intp)
        offset = first - self._plan_first
        if offset < 0 or offset + self._global_rows > len(self._plan_choice):
            self._plan(first)
            offset = 0
        choice = self._plan_choice[offset : offset + self._global_rows]
        starts = self._plan_starts[mine.start - self._plan_first : mine.stop - self._plan_first]
        return choice, starts

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """The next ``(x, y)``: int64 arrays of shape ``[batch_size, seq_len]`` for this rank."""
        choice, starts = self._next_choices()
        if len(self.names) == 1:
            rows = self._windows[0][starts]
        else:
            mine = choice[self._row_slice]
            rows = np.empty((self.batch_size, self.seq_len + 1), dtype=self._row_dtype)
            for source, windows in enumerate(self._windows):
                selected = np.flatnonzero(mine == source)
                if len(selected):
                    rows[selected] = windows[starts[selected]]
        x = rows[:, :-1].astype(np.int64)
        y = rows[:, 1:].astype(np.int64)
        self._sequences_per_source += np.bincount(choice, minlength=len(self.names))
        self.sequences_drawn += self._global_rows
        return x, y

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            yield self.next_batch()

    # ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A few integers (and the source names, to catch a mismatched resume)."""
        return {
            "seed": self.seed,
            "seq_len": self.seq_len,
            "sequences_drawn": self.sequences_drawn,
            "names": list(self.names),
            "sequences_per_source": [int(n) for n in self._sequences_per_source],
            "last_seen": [int(v) for v in self._last_seen],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue exactly where ``state`` was taken (world_size may differ; the stream is global)."""
        required = (
            "seed",
            "seq_len",
            "sequences_drawn",
            "names",
            "sequences_per_source",
            "last_seen",
        )
        missing = [key for key in required if key not in state]
        if missing:
            raise DataError(
                f"sampler state lacks {missing}: pass a dict from MixtureSampler.state_dict()"
            )
        if list(state["names"]) != self.names:
            raise DataError(
                f"sampler state is for sources {list(state['names'])}, this sampler has {self.names}: use the same dataset names"
            )
        for field in ("seed", "seq_len"):
            if int(state[field]) != getattr(self, field):
                raise DataError(
                    f"sampler state has {field}={state[field]} but this sampler has {field}={getattr(self, field)}: "
                    f"construct the sampler with {field}={state[field]} to resume"
                )
        if int(state["sequences_drawn"]) < 0:
            raise DataError(
                f"sampler state sequences_drawn={state['sequences_drawn']} must be >= 0"
            )
        self.sequences_drawn = int(state["sequences_drawn"])
        self._sequences_per_source = np.array(state["sequences_per_source"], dtype=np.int64)
        self._last_seen = [int(v) for v in state["last_seen"]]


def iter_eval_batches(
    tokens: np.ndarray | PreparedDataset,
    seq_len: int,
    batch_size: int,
    max_tokens: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive, non-overlapping evaluation windows, always the same ones.

    Sequence i is ``tokens[i*seq_len : i*seq_len + seq_len + 1]`` (x its first seq_len tokens,
    y the last seq_len), for i < n with ``n = (len(tokens) - 1) // seq_len``, capped at
    ``max_tokens // seq_len`` sequences when ``max_tokens`` is given (at least one). Batches hold
    ``batch_size`` sequences; the last one may be smaller. A PreparedDataset means its val tokens.
    """
    if isinstance(tokens, PreparedDataset):
        tokens = tokens.val_tokens
    tokens = np.asarray(tokens)
    for field, value in (("seq_len", seq_len), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise DataError(f"{field}={value!r} must be an integer >= 1")
    if tokens.ndim != 1:
        raise DataError(f"tokens must be a 1-D array, got shape {tokens.shape}")
    if max_tokens is not None and (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, numbers.Integral)
        or max_tokens < 1
    ):
        raise DataError(f"max_tokens={max_tokens!r} must be a positive integer or None")
    n_sequences = (len(tokens) - 1) // seq_len
    if n_sequences < 1:
        raise DataError(
            f"{len(tokens)} tokens cannot fill one evaluation sequence of seq_len={seq_len} (+1): lower seq_len"
        )
    if max_tokens is not None:
        n_sequences = min(n_sequences, max(1, int(max_tokens) // seq_len))
    windows = np.lib.stride_tricks.as_strided(
        tokens.view(np.ndarray),
        shape=(n_sequences, seq_len + 1),
        strides=(seq_len * tokens.strides[0], tokens.strides[0]),
        writeable=False,
    )
    for start in range(0, n_sequences, batch_size):
        rows = windows[start : start + batch_size]
        yield rows[:, :-1].astype(np.int64), rows[:, 1:].astype(np.int64)
