"""MixtureSampler and iter_eval_batches: determinism, resume, rank split, proportions, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evertrain.data import DataError, MixtureSampler, PowerLawRehearsal, iter_eval_batches

# Sources whose token values tell where a row came from: "old" holds 0..N-1, "new" 10^6..10^6+N-1.
N = 20_000
OLD = np.arange(N, dtype=np.uint32)
NEW = np.arange(1_000_000, 1_000_000 + N, dtype=np.uint32)


def arrays() -> dict[str, np.ndarray]:
    return {"old": OLD, "new": NEW}


def draw(sampler: MixtureSampler, batches: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*(sampler.next_batch() for _ in range(batches)), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def is_old(x: np.ndarray) -> np.ndarray:
    return x[:, 0] < 1_000_000


def binomial_ok(observed: int, probabilities: np.ndarray, sigmas: float = 4.5) -> bool:
    """|observed - sum p| within `sigmas` standard deviations of a sum of Bernoulli(p)."""
    expected = probabilities.sum()
    sd = np.sqrt((probabilities * (1 - probabilities)).sum())
    return abs(observed - expected) <= sigmas * max(sd, 0.5)


# --------------------------------------------------------------------------------------------
# Shapes, windows, determinism.


def test_batch_shapes_dtypes_and_shift(english, code) -> None:
    sampler = MixtureSampler({"en": english, "code": code}, seq_len=32, batch_size=8, seed=3)
    x, y = sampler.next_batch()
    assert x.shape == y.shape == (8, 32)
    assert x.dtype == y.dtype == np.int64
    assert np.array_equal(x[:, 1:], y[:, :-1])
    assert x.max() < english.vocab_size
    assert sampler.tokens_seen == 8 * 32
    assert sum(sampler.tokens_per_source.values()) == 8 * 32


def test_rows_are_contiguous_windows_of_the_chosen_source() -> None:
    sampler = MixtureSampler(arrays(), seq_len=16, batch_size=64, seed=1)
    x, y = draw(sampler, 20)
    # Every row is 16 consecutive integers from one source, and y continues it by one.
    assert np.all(np.diff(x, axis=1) == 1)
    assert np.array_equal(y, x + 1)
    old = is_old(x)
    assert np.all(x[old] < N) and np.all((x[~old] >= 1_000_000) & (x[~old] < 1_000_000 + N))
    # Window starts cover the source (first and last possible window both reachable in principle).
    starts = x[old, 0]
    assert starts.min() >= 0 and starts.max() <= N - 17
    assert len(np.unique(starts)) > 0.9 * len(starts)  # essentially no repeats: random, not a cycle


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a = draw(MixtureSampler(arrays(), seq_len=8, batch_size=4, seed=7), 10)
    b = draw(MixtureSampler(arrays(), seq_len=8, batch_size=4, seed=7), 10)
    c = draw(MixtureSampler(arrays(), seq_len=8, batch_size=4, seed=8), 10)
    assert np.array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("weights", ["constant", "schedule", "rehearsal"])
def test_resume_is_bit_identical(weights: str) -> None:
    spec = {
        "constant": {"old": 0.3, "new": 0.7},
        "schedule": {
            "old": {"name": "piecewise_linear", "points": [[0, 1.0], [4000, 0.0]]},
            "new": 0.5,
        },
        "rehearsal": {
            "old": {"name": "rehearsal", "weight": 1.0, "exponent": 1.0, "scale_tokens": 64},
            "new": 1.0,
        },
    }[weights]
    uninterrupted = MixtureSampler(arrays(), spec, seq_len=8, batch_size=16, seed=5)
    expected = [uninterrupted.next_batch() for _ in range(40)]

    first = MixtureSampler(arrays(), spec, seq_len=8, batch_size=16, seed=5)
    for _ in range(17):
        first.next_batch()
    state = json.loads(json.dumps(first.state_dict()))  # survives a JSON checkpoint
    assert all(isinstance(v, int | str | list) for v in state.values())
    resumed = MixtureSampler(arrays(), spec, seq_len=8, batch_size=16, seed=5)
    resumed.load_state_dict(state)
    assert resumed.tokens_seen == 17 * 16 * 8
    assert resumed.tokens_per_source == first.tokens_per_source
    for k in range(17, 40):
        x, y = resumed.next_batch()
        assert np.array_equal(x, expected[k][0]) and np.array_equal(y, expected[k][1])
    assert resumed.tokens_per_source == uninterrupted.tokens_per_source


# --------------------------------------------------------------------------------------------
# Rank split.


@pytest.mark.parametrize(
    "weights",
    [
        None,
        {"old": {"name": "piecewise_linear", "points": [[0, 0.9], [3000, 0.1]]}, "new": 0.5},
        {"old": PowerLawRehearsal(1.0, exponent=1.0, scale_tokens=40), "new": 1.0},
    ],
)
def test_ranks_concatenate_to_the_single_process_stream(weights) -> None:
    world, per_rank = 3, 4
    single = MixtureSampler(arrays(), weights, seq_len=8, batch_size=world * per_rank, seed=2)
    ranks = [
        MixtureSampler(
            arrays(), weights, seq_len=8, batch_size=per_rank, seed=2, rank=r, world_size=world
        )
        for r in range(world)
    ]
    for _ in range(30):
        x, y = single.next_batch()
        parts = [sampler.next_batch() for sampler in ranks]
        assert np.array_equal(np.concatenate([p[0] for p in parts]), x)
        assert np.array_equal(np.concatenate([p[1] for p in parts]), y)
        # Each rank's share is disjoint: the rows differ between ranks (random windows).
        assert not np.array_equal(parts[0][0], parts[1][0])
    for sampler in ranks:
        assert sampler.tokens_seen == single.tokens_seen
        assert sampler.tokens_per_source == single.tokens_per_source


def test_resume_with_another_world_size_continues_the_same_stream() -> None:
    reference = MixtureSampler(arrays(), seq_len=8, batch_size=8, seed=4)
    expected = [reference.next_batch()[0] for _ in range(6)]
    before = MixtureSampler(arrays(), seq_len=8, batch_size=8, seed=4)
    for _ in range(3):
        before.next_batch()
    state = before.state_dict()
    halves = [
        MixtureSampler(arrays(), seq_len=8, batch_size=4, seed=4, rank=r, world_size=2)
        for r in (0, 1)
    ]
    for sampler in halves:
        sampler.load_state_dict(state)
    for k in range(3, 6):
        assert np.array_equal(np.concatenate([s.next_batch()[0] for s in halves]), expected[k])


# --------------------------------------------------------------------------------------------
# Proportions.


def test_constant_weights_match_binomial_tolerance() -> None:
    sampler = MixtureSampler(arrays(), {"old": 1.0, "new": 3.0}, seq_len=4, batch_size=500, seed=0)
    x, _ = draw(sampler, 40)
    old = int(is_old(x).sum())
    assert binomial_ok(old, np.full(len(x), 0.25))
    assert sampler.tokens_per_source == {"old": old * 4, "new": (len(x) - old) * 4}


@pytest.mark.parametrize(
    "recipe",
    ["linear_a_to_b", "replay_after_warmup", "cyclic", "quality_ascending"],
)
def test_changing_mixture_matches_weights_at_every_stage(recipe: str) -> None:
    seq_len, batch, batches = 4, 400, 40
    total = seq_len * batch * batches  # 64_000 tokens
    specs = {
        # Linear A -> B: 90/10 to 10/90 over training.
        "linear_a_to_b": (
            {"name": "piecewise_linear", "points": [[0, 0.9], [total, 0.1]]},
            {"name": "piecewise_linear", "points": [[0, 0.1], [total, 0.9]]},
        ),
        # 5% replay of old data after a warm-up of new data only (first quarter).
        "replay_after_warmup": (
            {
                "name": "piecewise_linear",
                "points": [[0, 0.0], [total / 4 - 1, 0.0], [total / 4, 0.05]],
            },
            0.95,
        ),
        # A cyclical curriculum: the old fraction cycles 0.1 -> 0.6 -> 0.1 four times.
        "cyclic": (
            {
                "name": "piecewise_linear",
                "points": [[k * total / 8, 0.1 if k % 2 == 0 else 0.6] for k in range(9)],
            },
            {
                "name": "piecewise_linear",
                "points": [[k * total / 8, 0.9 if k % 2 == 0 else 0.4] for k in range(9)],
            },
        ),
        # Quality-ascending: low-quality "old" fades out in three steps as "new" (high) takes over.
        "quality_ascending": (
            {
                "name": "piecewise_linear",
                "points": [
                    [0, 0.8],
                    [total / 3, 0.8],
                    [total / 3 + 1, 0.4],
                    [2 * total / 3, 0.4],
                    [2 * total / 3 + 1, 0.0],
                ],
            },
            {
                "name": "piecewise_linear",
                "points": [
                    [0, 0.2],
                    [total / 3, 0.2],
                    [total / 3 + 1, 0.6],
                    [2 * total / 3, 0.6],
                    [2 * total / 3 + 1, 1.0],
                ],
            },
        ),
    }
    old_w, new_w = specs[recipe]
    sampler = MixtureSampler(
        arrays(), {"old": old_w, "new": new_w}, seq_len=seq_len, batch_size=batch, seed=11
    )
    for b in range(batches):
        progress = (b * batch + np.arange(batch)) * seq_len
        p_old = np.asarray(sampler.weights_at(progress)["old"])
        before = sampler.tokens_per_source["old"]
        x, _ = sampler.next_batch()
        observed = int(is_old(x).sum())
        assert (sampler.tokens_per_source["old"] - before) // seq_len == observed
        assert binomial_ok(observed, p_old), (recipe, b, observed, p_old.sum())
        if recipe == "replay_after_warmup" and progress[-1] < total / 4 - 1:
            assert observed == 0  # no replay during the warm-up, exactly
    if recipe == "quality_ascending":
        assert observed == 0  # the last stage has no low-quality data at all


def test_power_law_rehearsal_revisit_chance_decays_with_time_since_seen() -> None:
    seq_len, scale = 4, 16.0
    rehearsal = PowerLawRehearsal(weight=0.3, exponent=0.75, scale_tokens=scale)
    sampler = MixtureSampler(
        arrays(), {"old": rehearsal, "new": 1.0}, seq_len=seq_len, batch_size=1000, seed=9
    )
    x, _ = draw(sampler, 30)
    old = is_old(x)
    # Replay the definition: gap = tokens since the end of the last "old" sequence.
    last_end, gaps = 0, np.empty(len(old))
    for g, drawn in enumerate(old):
        gaps[g] = g * seq_len - last_end
        if drawn:
            last_end = (g + 1) * seq_len
    weight = (1 + gaps / scale) ** -0.75
    p_old = 0.3 * weight / (0.3 * weight + 1.0)
    edges = [0, 1, 9, 41, 161, np.inf]
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (gaps >= low) & (gaps < high)
        assert in_bin.sum() > 300, (low, high, in_bin.sum())
        assert binomial_ok(int(old[in_bin].sum()), p_old[in_bin]), (low, high)
    # The chance right after a visit is far above the chance after a long absence.
    assert old[gaps == 0].mean() > 5 * old[gaps >= 161].mean()
    assert sampler.state_dict()["last_seen"][0] == last_end


def test_rehearsal_with_zero_exponent_equals_constant_weight() -> None:
    flat = MixtureSampler(
        arrays(),
        {"old": PowerLawRehearsal(0.25, exponent=0.0), "new": 0.75},
        seq_len=8,
        batch_size=64,
        seed=3,
    )
    constant = MixtureSampler(
        arrays(), {"old": 0.25, "new": 0.75}, seq_len=8, batch_size=64, seed=3
    )
    assert np.array_equal(draw(flat, 5)[0], draw(constant, 5)[0])


def test_callable_weights_are_functions_of_tokens() -> None:
    sampler = MixtureSampler(
        arrays(),
        {"old": lambda t: (t < 800).astype(float), "new": lambda t: (t >= 800).astype(float)},
        seq_len=8,
        batch_size=50,
        seed=0,
    )
    x, _ = draw(sampler, 4)
    assert is_old(x)[:100].all() and not is_old(x)[100:].any()


# --------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seq_len": 0}, "seq_len=0"),
        ({"batch_size": -1}, "batch_size=-1"),
        ({"world_size": 2, "rank": 2}, "rank=2"),
        ({"seed": -1}, "seed=-1"),
        ({"seq_len": N}, "fewer than seq_len + 1"),
        ({"weights": {"old": 1.0}}, "missing ['new']"),
        ({"weights": {"old": 1.0, "new": 1.0, "other": 1.0}}, "unknown ['other']"),
        ({"weights": {"old": -0.5, "new": 1.0}}, "weights['old']=-0.5"),
        ({"weights": {"old": 0.0, "new": 0.0}}, "are all 0"),
        (
            {
                "weights": {
                    "old": {"name": "piecewise_linear", "points": [[0, 0.0], [9, 1.0]]},
                    "new": 0.0,
                }
            },
            "all mixture weights are 0 at tokens=0",
        ),
        (
            {"weights": {"old": lambda t: -np.ones_like(t), "new": 1.0}},
            "weight of 'old' is -1.0 at tokens=0",
        ),
        ({"weights": {"old": "nonsense:peak=1", "new": 1.0}}, "weights['old']"),
        ({"weights": {"old": [1, 2], "new": 1.0}}, "weights['old'] is a list"),
        (
            {"weights": {"old": {"name": "rehearsal", "weight": 1, "speed": 3}, "new": 1.0}},
            "rehearsal spec",
        ),
        ({"weights": {"old": PowerLawRehearsal(1.0), "new": 1.0}, "split": "test"}, "split='test'"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict, message: str) -> None:
    options = {"seq_len": 8, "batch_size": 4, **kwargs}
    weights = options.pop("weights", None)
    with pytest.raises(DataError, match=__import__("re").escape(message)):
        MixtureSampler(arrays(), weights, **options)


def test_bad_datasets_and_rehearsal_parameters() -> None:
    with pytest.raises(DataError, match="names must be strings"):
        MixtureSampler({0: OLD}, seq_len=8, batch_size=4)
    with pytest.raises(DataError, match="non-empty dict"):
        MixtureSampler({}, seq_len=8, batch_size=4)
    with pytest.raises(DataError, match="1-D integer"):
        MixtureSampler({"a": np.zeros((10, 10), dtype=np.int32)}, seq_len=2, batch_size=1)
    with pytest.raises(DataError, match="not a prepared dataset"):
        MixtureSampler({"a": "/nonexistent/dir"}, seq_len=2, batch_size=1)
    with pytest.raises(DataError, match="scale_tokens"):
        PowerLawRehearsal(1.0, scale_tokens=0)
    with pytest.raises(DataError, match="exponent"):
        PowerLawRehearsal(1.0, exponent=-1)


def test_weight_that_turns_negative_or_all_zero_mid_run_is_reported_with_the_tokens() -> None:
    sampler = MixtureSampler(
        arrays(), {"old": lambda t: 1.0 - t / 100.0, "new": 0.0}, seq_len=8, batch_size=4, seed=0
    )
    sampler.next_batch()  # t = 0..24: fine
    sampler.next_batch()  # t = 32..56: fine
    with pytest.raises(DataError, match=r"weight of 'old' is .* at tokens=104"):
        for _ in range(3):
            sampler.next_batch()


def test_load_state_dict_rejects_a_mismatched_state() -> None:
    sampler = MixtureSampler(arrays(), seq_len=8, batch_size=4, seed=1)
    state = sampler.state_dict()
    with pytest.raises(DataError, match="seq_len=8"):
        MixtureSampler(arrays(), seq_len=16, batch_size=4, seed=1).load_state_dict(state)
    with pytest.raises(DataError, match="seed=1"):
        MixtureSampler(arrays(), seq_len=8, batch_size=4, seed=2).load_state_dict(state)
    with pytest.raises(DataError, match="sources"):
        MixtureSampler({"a": OLD, "b": NEW}, seq_len=8, batch_size=4, seed=1).load_state_dict(state)
    with pytest.raises(DataError, match="lacks"):
        sampler.load_state_dict({"seed": 1})


# --------------------------------------------------------------------------------------------
# Evaluation batches.


def test_eval_batches_are_consecutive_windows_in_order() -> None:
    tokens = np.arange(1001, dtype=np.uint16)
    batches = list(iter_eval_batches(tokens, seq_len=10, batch_size=32))
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    assert [len(b[0]) for b in batches] == [32, 32, 32, 4]  # 100 sequences, last batch partial
    assert np.array_equal(x.ravel(), np.arange(1000))
    assert np.array_equal(y, x + 1)
    assert x.dtype == np.int64
    again = np.concatenate([b[0] for b in iter_eval_batches(tokens, 10, 32)])
    assert np.array_equal(x, again)


def test_eval_batches_max_tokens_and_prepared_dataset(english) -> None:
    batches = list(iter_eval_batches(english, seq_len=16, batch_size=8, max_tokens=100))
    assert sum(len(b[0]) for b in batches) == 100 // 16
    assert np.array_equal(batches[0][0][0], np.asarray(english.val_tokens[:16], dtype=np.int64))
    # max_tokens below one sequence still yields one sequence.
    assert sum(len(b[0]) for b in iter_eval_batches(english.val_tokens, 16, 8, max_tokens=3)) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.arange(5), 8, 4), "cannot fill one evaluation sequence"),
        ((np.arange(50), 0, 4), "seq_len=0"),
        ((np.arange(50), 8, 0), "batch_size=0"),
        ((np.zeros((5, 5)), 2, 4), "1-D"),
    ],
)
def test_eval_batches_bad_input(args, message: str) -> None:
    with pytest.raises(DataError, match=message):
        list(iter_eval_batches(*args))
    with pytest.raises(DataError, match="max_tokens=0"):
        list(iter_eval_batches(np.arange(50), 8, 4, max_tokens=0))


def test_weights_that_end_after_the_budget_fail_only_when_drawn_there() -> None:
    # Only "old", and only until 1000 tokens: a stage whose budget ends there must run cleanly
    # even though the sampler plans draws ahead in blocks.
    old = {"name": "piecewise_linear", "points": [[0, 1.0], [1000, 1.0], [1001, 0.0]]}
    sampler = MixtureSampler(arrays(), {"old": old, "new": 0.0}, seq_len=8, batch_size=4, seed=0)
    x, _ = draw(sampler, 31)  # sequences start at t = 0 .. 984
    assert is_old(x).all() and sampler.tokens_seen == 992
    with pytest.raises(DataError, match="all mixture weights are 0 at tokens=1008"):
        sampler.next_batch()


def test_stream_does_not_depend_on_batch_size() -> None:
    big = draw(
        MixtureSampler(arrays(), {"old": 0.4, "new": 0.6}, seq_len=8, batch_size=96, seed=6), 3
    )
    small = draw(
        MixtureSampler(arrays(), {"old": 0.4, "new": 0.6}, seq_len=8, batch_size=7, seed=6), 42
    )
    assert np.array_equal(big[0], small[0][: len(big[0])])


@settings(max_examples=25, deadline=None)
@given(
    world_size=st.integers(1, 4),
    per_rank=st.integers(1, 6),
    seq_len=st.integers(1, 12),
    checkpoint_after=st.integers(0, 6),
    seed=st.integers(0, 2**40),
    weight=st.floats(0.0, 1.0),
)
def test_rank_split_and_resume_hold_for_any_shape(
    world_size, per_rank, seq_len, checkpoint_after, seed, weight
):
    weights = {
        "old": {"name": "piecewise_linear", "points": [[0, weight], [200, 1 - weight]]},
        "new": 0.5,
    }
    single = MixtureSampler(
        arrays(), weights, seq_len=seq_len, batch_size=world_size * per_rank, seed=seed
    )
    expected = [single.next_batch()[0] for _ in range(8)]
    ranks = [
        MixtureSampler(
            arrays(),
            weights,
            seq_len=seq_len,
            batch_size=per_rank,
            seed=seed,
            rank=r,
            world_size=world_size,
        )
        for r in range(world_size)
    ]
    for k in range(8):
        if k == checkpoint_after:  # every rank restarts from its own state_dict
            states = [json.loads(json.dumps(s.state_dict())) for s in ranks]
            ranks = [
                MixtureSampler(
                    arrays(),
                    weights,
                    seq_len=seq_len,
                    batch_size=per_rank,
                    seed=seed,
                    rank=r,
                    world_size=world_size,
                )
                for r in range(world_size)
            ]
            for sampler, state in zip(ranks, states, strict=True):
                sampler.load_state_dict(state)
        assert np.array_equal(np.concatenate([s.next_batch()[0] for s in ranks]), expected[k])
    assert ranks[0].tokens_per_source == single.tokens_per_source


def test_weights_at_reports_the_normalised_schedule_values() -> None:
    from evertrain.schedules import from_spec

    spec = {"name": "piecewise_linear", "points": [[0, 3.0], [1000, 1.0]]}
    sampler = MixtureSampler(arrays(), {"old": spec, "new": 1.0}, seq_len=8, batch_size=2)
    t = np.array([0.0, 250.0, 1000.0, 5000.0])
    raw = from_spec(spec)(t)
    np.testing.assert_allclose(sampler.weights_at(t)["old"], raw / (raw + 1.0), rtol=0, atol=1e-15)
    assert sampler.weights_at(0) == {"old": 0.75, "new": 0.25}


def test_prepared_dataset_paths_and_the_val_split(english, code) -> None:
    sampler = MixtureSampler(
        {"en": str(english.path), "code": code.path}, seq_len=16, batch_size=8, split="val"
    )
    x, _ = sampler.next_batch()
    val = {
        bytes(np.asarray(english.val_tokens).tobytes()),
        bytes(np.asarray(code.val_tokens).tobytes()),
    }
    for row in x.astype(english.dtype):
        assert any(row.tobytes() in blob for blob in val)  # every window lies inside a val split


def test_datasets_of_two_tokenizers_are_refused_naming_both(tmp_path, english, code) -> None:
    from evertrain.data import check_same_tokenizer, prepare, train_tokenizer

    (tmp_path / "docs").mkdir()
    for i in range(20):
        (tmp_path / "docs" / f"{i}.txt").write_text(f"other text number {i} " * 30)
    other_tokenizer = train_tokenizer([tmp_path / "docs"], tmp_path / "other.json", vocab_size=300)
    other = prepare(
        [tmp_path / "docs"], tmp_path / "other", tokenizer=other_tokenizer, progress=False
    )
    assert (
        check_same_tokenizer({"old": english, "new": code})
        == english.manifest["tokenizer"]["sha256"]
    )
    shas = (english.manifest["tokenizer"]["sha256"], other.manifest["tokenizer"]["sha256"])
    assert shas[0] != shas[1]
    for datasets in ({"old": english, "new": other}, {"old": str(english.path), "new": other}):
        with pytest.raises(DataError, match="different tokenizers") as caught:
            MixtureSampler(datasets, seq_len=16, batch_size=2)
        message = str(caught.value)
        assert "'old'" in message and "'new'" in message and "\n" not in message
        assert shas[0][:12] in message and shas[1][:12] in message
        assert str(other.tokenizer_path) in message and "same tokenizer" in message
    # Token arrays carry no tokenizer: they mix with anything.
    MixtureSampler({"old": english, "raw": np.arange(100)}, seq_len=16, batch_size=2)
