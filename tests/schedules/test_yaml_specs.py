"""Spec files go through evertrain._yaml: 3e-3 is a number at load, quoted strings stay strings."""

from __future__ import annotations

import pytest

from evertrain.schedules import ScheduleError, from_spec
from evertrain.schedules.registry import load_spec_file, parse_value


def test_yaml_spec_file_reads_exponent_numbers_as_floats(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text("name: wsd\npeak: 3e-3\ntotal: 1e5\nwarmup: 100\nfloor: 3E-5\n")
    spec = load_spec_file(path)
    assert spec == {"name": "wsd", "peak": 0.003, "total": 100000.0, "warmup": 100, "floor": 3e-5}
    assert type(spec["peak"]) is float and type(spec["warmup"]) is int
    assert from_spec(path)(100) == 0.003


def test_quoted_yaml_strings_stay_strings(tmp_path):
    """Coercion happens once, in the YAML reader: what the file quotes is a string."""
    path = tmp_path / "lr.yaml"
    path.write_text('schedule:\n  name: "wsd"\n  peak: "3e-3"\n  total: 100\n')
    assert load_spec_file(path) == {"name": "wsd", "peak": "3e-3", "total": 100}


def test_errors_show_the_number_not_the_yaml_text(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text("name: wsd\npeak: -3e-3\ntotal: 100\n")
    with pytest.raises(ScheduleError) as error:
        from_spec(path)
    assert "peak=-0.003 must be >= 0" in str(error.value)
    assert "'-3e-3'" not in str(error.value)
    with pytest.raises(ScheduleError, match=r"peak=-0\.003 must be >= 0"):
        from_spec("wsd:peak=-3e-3,total=100")


def test_inline_values_keep_parsing():
    assert parse_value("3e-3") == 0.003 and parse_value("24000") == 24000
    assert parse_value("true") is True and parse_value("null") is None
    assert parse_value("[[0, 1e-3], [100, 1e-4]]") == [[0, 0.001], [100, 0.0001]]  # JSON
    assert parse_value("[[0, 1e-3], [100, .5]]") == [[0, 0.001], [100, 0.5]]  # YAML flow
    assert parse_value("{a: 3e-3}") == {"a": 0.003}
    assert parse_value("cosine") == "cosine"
    with pytest.raises(ScheduleError, match="cannot parse inline value"):
        parse_value("[1, 2")
