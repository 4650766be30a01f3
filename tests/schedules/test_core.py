"""Core contract of evertrain.schedules: call semantics, key values, specs, factory errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evertrain.schedules import Schedule, ScheduleError, from_spec, get, join

WSD_KWARGS = dict(
    peak=3e-4, total=24000, warmup=2160, decay_fraction=0.2, decay_shape="linear", floor=3e-5
)


def test_scalar_returns_python_float_and_array_returns_float64_same_shape():
    s = get("wsd", **WSD_KWARGS)
    assert type(s(100)) is float
    assert type(s(np.int64(100))) is float
    assert type(s(np.float32(100.0))) is float
    grid = np.arange(24000).reshape(120, 200)
    values = s(grid)
    assert isinstance(values, np.ndarray) and values.dtype == np.float64
    assert values.shape == grid.shape
    assert s([0, 1, 2]).shape == (3,)


def test_wsd_key_points_are_exact():
    s = get("wsd", **WSD_KWARGS)
    assert s(0) == 0.0
    assert s(2160) == 3e-4  # end of warmup == peak exactly
    assert s(1080) == pytest.approx(1.5e-4, rel=1e-15)
    assert s(19200) == 3e-4  # decay starts at total - 0.2 * total
    assert s(21600) == pytest.approx(3e-5 + 0.5 * (3e-4 - 3e-5), rel=1e-14)
    assert s(24000) == 3e-5
    assert s(10**9) == 3e-5
    assert s(-100) == 0.0  # negative progress is clamped to the start
    assert s.total == 24000 and s.unit == "steps"


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "constant", "value": 1e-3},
        {"name": "constant", "value": 1e-3, "warmup": 10, "total": 100},
        {"name": "linear", "peak": 1e-3, "total": 100, "warmup": 10, "floor": 1e-5},
        {"name": "cosine", "peak": 1e-3, "total": 100, "warmup": 10, "warmup_shape": "cosine"},
        {"name": "wsd", "peak": 1e-3, "total": 100, "decay": 30, "decay_shape": "1-sqrt"},
        {
            "name": "wsd",
            "peak": 1e-3,
            "total": 100,
            "decay": 30,
            "decay_shape": "exponential",
            "floor": 1e-5,
            "unit": "tokens",
        },
        {
            "name": "wsd",
            "peak": 1e-3,
            "total": 100,
            "decay": 30,
            "decay_shape": "power",
            "decay_power": 3,
        },
        {"name": "piecewise_linear", "points": [[0, 0], [10, 1e-3], [50, 1e-3], [100, 1e-4]]},
        {
            "name": "join",
            "schedules": [
                {
                    "name": "join",
                    "schedules": ["constant:value=1e-3", "linear:peak=1e-3,total=10"],
                    "boundaries": [5],
                },
                {"name": "cosine", "peak": 5e-4, "total": 50},
            ],
            "boundaries": [15],
        },
    ],
)
def test_spec_round_trip_through_json_evaluates_identically(spec):
    s = from_spec(spec)
    rebuilt = from_spec(json.loads(json.dumps(s.to_spec())))
    grid = np.linspace(-10, 250, 2001)
    np.testing.assert_array_equal(s(grid), rebuilt(grid))
    assert rebuilt.to_spec() == s.to_spec()
    assert rebuilt.to_spec()["name"] == spec["name"]


def test_inline_string_parses_numbers_and_lists():
    s = from_spec("wsd:peak=3e-4,total=24000,warmup=2160,decay_shape=1-sqrt")
    assert s.to_spec()["peak"] == 3e-4 and s.to_spec()["total"] == 24000
    assert s.to_spec()["decay_shape"] == "1-sqrt"
    p = from_spec("piecewise_linear:points=[[0,1e-3],[100,1e-4]]")
    assert p(50) == pytest.approx(5.5e-4, rel=1e-15)


def test_yaml_and_json_files(tmp_path):
    yaml_path = tmp_path / "lr.yaml"
    # YAML 1.1 reads 3e-4 as a string: it must still become a number.
    yaml_path.write_text("name: wsd\npeak: 3e-4\ntotal: 24000\nwarmup: 2160\n")
    nested = tmp_path / "run.yaml"
    nested.write_text("schedule:\n  name: cosine\n  peak: 1.0e-3\n  total: 100\n")
    json_path = tmp_path / "lr.json"
    json_path.write_text(json.dumps({"name": "linear", "peak": 1e-3, "total": 10}))
    assert from_spec(yaml_path)(2160) == 3e-4
    assert from_spec(str(yaml_path)) == from_spec(yaml_path)
    assert from_spec(nested)(0) == 1e-3
    assert from_spec(json_path)(5) == pytest.approx(5e-4, rel=1e-15)


def test_join_children_see_local_time():
    j = join(["constant:value=1.0", "linear:peak=1.0,total=10"], [100])
    assert j(99) == 1.0
    assert j(100) == 1.0
    assert j(105) == pytest.approx(0.5, rel=1e-15)
    assert j(110) == 0.0 and j.total == 110


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (
            lambda: get("wsd", peak=1e-3, total=1000, warmup=5000),
            "warmup=5000 is longer than total=1000",
        ),
        (lambda: get("cosine", peak=-1e-3, total=10), "peak=-0.001 must be >= 0"),
        (lambda: get("wsd", peak=1e-3, total=100, warmup=50, decay=60), "runs past total=100"),
        (lambda: get("wsd", peak=1e-3, total=100, decay_shape="sqrt"), "known: linear, cosine"),
        (lambda: get("cosin", peak=1e-3, total=10), "did you mean 'cosine'"),
        (lambda: get("wsd", peak=1e-3, total=10, warmpu=3), "did you mean 'warmup'"),
        (lambda: get("wsd", peak=1e-3, total=10, warmpu=3), "accepted: peak, total"),
        (lambda: get("linear", peak=1e-3), "missing required parameter 'total'"),
        (lambda: get("wsd", peak=1e-3, total=10, decay_shape="exponential"), "needs floor > 0"),
        (lambda: from_spec("wsd:peak"), "is not key=value"),
        (lambda: from_spec({"peak": 1}), "has no 'name'"),
        (lambda: get("wsd", peak=1e-3, total=10, unit="epochs"), "unknown unit='epochs'"),
        (lambda: get("wsd", peak="abc", total=10), "peak='abc' is not a number"),
    ],
)
def test_validation_errors_name_the_field_and_the_fix(call, needle):
    with pytest.raises(ScheduleError) as info:
        call()
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_with_total_keeps_absolute_lengths_and_reapplies_fractions():
    s = get("wsd", peak=1.0, total=1000, warmup=100, decay=200)
    longer = s.with_total(2000)
    assert isinstance(longer, Schedule)
    assert longer(1799) == 1.0 and longer(1900) == pytest.approx(0.5, rel=1e-15)
    grid = np.arange(0, 800)
    np.testing.assert_array_equal(s(grid), longer(grid))  # identical before the old decay
    f = get("wsd", peak=1.0, total=1000, decay_fraction=0.1).with_total(2000)
    assert f(1799) == 1.0 and f(1800) == 1.0 and f(1900) == pytest.approx(0.5, rel=1e-15)


@pytest.mark.parametrize(
    "spec",
    [
        "wsd:peak=1,total=100,warmup=10,decay_shape=cosine,floor=0.1",
        "onecycle:peak=1,total=100,three_phase=true",
        "infinite:peak=1,constant=0.3,warmup=5,cooldown=50,total=90,anneal=20,floor=0.01",
        "wsd_s:peak=1,checkpoints=[30,60,100],decay=10,rewarm=5",
    ],
)
def test_sorted_fast_path_equals_the_masked_path(spec):
    s = from_spec(spec)
    grid = np.linspace(-20, 150, 20001)  # sorted and large: binary-search slices
    shuffled = np.random.default_rng(0).permutation(grid.size)
    np.testing.assert_array_equal(s(grid)[shuffled], s(grid[shuffled]))  # masks
    np.testing.assert_allclose(s(grid), [s(float(t)) for t in grid], rtol=1e-12, atol=0)


def test_zero_d_array_and_lists():
    s = get("piecewise_linear", points=[[0, 1.0], [10, 2.0]])
    value = s(np.array(5.0))
    assert isinstance(value, np.ndarray) and value.shape == () and float(value) == 1.5
    assert isinstance(s([1, 2]), np.ndarray)


def test_console_script_exits_2_on_a_bad_spec():
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "evertrain.cli",
            "schedule",
            "show",
            "wsd:peak=1,total=10,warmup=50",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "warmup=50 is longer than total=10" in result.stderr
    assert "Traceback" not in result.stderr


def test_warmup_can_start_from_the_floor():
    s = from_spec("wsd:peak=1,total=100,warmup=10,floor=0.1,warmup_start=floor")
    assert s(0) == 0.1 and s(5) == pytest.approx(0.55) and s(10) == 1.0
    assert from_spec(s.to_spec())(3) == s(3)
    with pytest.raises(ScheduleError, match="has no floor"):
        get("constant", value=1.0, warmup=10, warmup_start="floor")


def test_names_are_case_insensitive_with_aliases_and_serialise_canonically():
    assert get("WSD", peak=1.0, total=10).to_spec()["name"] == "wsd"
    assert get("wsd-s", peak=1.0, period=5, total=10).to_spec()["name"] == "wsd_s"
    assert from_spec("warmup_stable_decay:peak=1,total=10").to_spec()["name"] == "wsd"
