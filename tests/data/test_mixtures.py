"""Mixture recipes: exact steps through the sampler, shapes of the curves, errors, plot, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.data import (
    DataError,
    MixtureSampler,
    cyclic,
    linear,
    mixture_table,
    plot_mixture,
    rehearsal,
    replay,
    stages,
)

SOURCES = {
    "a": np.arange(5000, dtype=np.uint32),
    "b": np.arange(10**6, 10**6 + 5000, dtype=np.uint32),
    "c": np.arange(2 * 10**6, 2 * 10**6 + 5000, dtype=np.uint32),
}


def sources_of(x: np.ndarray) -> np.ndarray:
    return x[:, 0] // 10**6  # 0 = a, 1 = b, 2 = c


def test_replay_after_warmup_switches_exactly_at_the_token() -> None:
    weights = replay("a", "b", fraction=1.0, after_tokens=800)  # all replay after 800 tokens
    sampler = MixtureSampler(
        {"a": SOURCES["a"], "b": SOURCES["b"]}, weights, seq_len=8, batch_size=50, seed=0
    )
    x = np.concatenate([sampler.next_batch()[0] for _ in range(4)])
    # sequence g starts at token 8g: g < 100 draws before 800 (all b), g >= 100 at/after (all a).
    assert np.all(sources_of(x[:100]) == 1) and np.all(sources_of(x[100:]) == 0)
    assert replay("a", "b", 0.25) == {"a": 0.25, "b": 0.75}


def test_stages_are_piecewise_constant_and_exact_at_boundaries() -> None:
    weights = stages(
        [
            (0, {"a": 1, "b": 0, "c": 0}),
            (400, {"a": 0, "b": 1, "c": 0}),
            (800, {"a": 0, "b": 0, "c": 1}),
        ]
    )
    sampler = MixtureSampler(
        {k: SOURCES[k] for k in "abc"}, weights, seq_len=8, batch_size=25, seed=0
    )
    x = np.concatenate([sampler.next_batch()[0] for _ in range(6)])
    assert list(np.unique(sources_of(x[:50]))) == [0]
    assert list(np.unique(sources_of(x[50:100]))) == [1]
    assert list(np.unique(sources_of(x[100:]))) == [2]


def test_linear_and_cyclic_curves() -> None:
    table = mixture_table(
        linear({"a": 0.9, "b": 0.1}, {"a": 0.1, "b": 0.9}, end_tokens=1000), 2000, points=5
    )
    assert table["tokens"] == [0, 500, 1000, 1500, 2000]
    np.testing.assert_allclose(table["a"], [0.9, 0.5, 0.1, 0.1, 0.1])
    table = mixture_table(
        cyclic("a", "b", low=0.1, high=0.5, period_tokens=100, total_tokens=300), 300, points=7
    )
    np.testing.assert_allclose(table["a"], [0.1, 0.5, 0.1, 0.5, 0.1, 0.5, 0.1])
    np.testing.assert_allclose(np.add(table["a"], table["b"]), 1.0)


def test_rehearsal_spec_round_trips_into_the_sampler() -> None:
    spec = rehearsal(0.5, exponent=1.0, scale_tokens=100)
    assert spec == {
        "name": "rehearsal",
        "weight": 0.5,
        "exponent": 1.0,
        "scale_tokens": 100.0,
        "last_seen": 0,
    }
    table = mixture_table({"a": spec, "b": 0.5}, 100, points=2)
    np.testing.assert_allclose(table["a"], [0.5, 0.25 / 0.75])  # w(100) = 0.5 / 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: replay("a", "b", 1.5), "fraction=1.5"),
        (lambda: replay("a", "b", 0.1, after_tokens=-1), "after_tokens=-1"),
        (lambda: linear({"a": 1}, {"b": 1}, end_tokens=10), "differ"),
        (lambda: linear({"a": 1}, {"a": 0}, end_tokens=0), "end_tokens=0"),
        (lambda: linear({"a": -1}, {"a": 0}, end_tokens=10), "weight of 'a' is -1"),
        (lambda: stages([]), "stages is empty"),
        (lambda: stages([(5, {"a": 1})]), "start at token 0"),
        (lambda: stages([(0, {"a": 1}), (0, {"a": 2})]), "strictly increase"),
        (lambda: stages([(0, {"a": 1}), (10, {"b": 2})]), "name the same sources"),
        (
            lambda: cyclic("a", "b", low=0.1, high=0.5, period_tokens=1, total_tokens=10),
            "period_tokens=1",
        ),
        (lambda: mixture_table({"a": 0.0, "b": 0.0}, 10), "all weights are 0"),
        (lambda: rehearsal(-1.0), "weight=-1.0"),
    ],
)
def test_bad_recipes_name_the_field(call, message: str) -> None:
    with pytest.raises(DataError, match=message):
        call()


def test_plot_is_written_atomically(tmp_path) -> None:
    path = plot_mixture(replay("a", "b", 0.05, after_tokens=100), 1000, tmp_path / "mix.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["mix.png"]


def test_mixture_command(tmp_path) -> None:
    runner = CliRunner()
    spec = tmp_path / "w.json"
    spec.write_text(json.dumps(replay("old", "new", 0.25, after_tokens=500)))
    result = runner.invoke(
        app,
        [
            "data",
            "mixture",
            str(spec),
            "--total-tokens",
            "1000",
            "--points",
            "3",
            "--plot",
            str(tmp_path / "m.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "0.2500" in result.output and (tmp_path / "m.png").exists()
    result = runner.invoke(
        app, ["data", "mixture", '{"old": -1, "new": 1}', "--total-tokens", "10"]
    )
    assert result.exit_code == 2 and "weights['old']=-1" in result.output
    result = runner.invoke(
        app, ["data", "mixture", str(tmp_path / "missing.yaml"), "--total-tokens", "10"]
    )
    assert result.exit_code == 2 and "does not exist" in result.output
