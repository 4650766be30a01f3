"""Property tests (hypothesis): for any valid spec and any progress value, a schedule never
returns NaN, infinity or a negative value; the scalar and vector paths agree; specs round-trip."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evertrain.schedules import ScheduleError, from_spec, names

lr = st.floats(1e-8, 1.0)
length = st.integers(1, 5000)
decay_shapes = st.sampled_from(
    [
        "linear",
        "cosine",
        "1-sqrt",
        "exponential",
        "power",
        "exp2",
        "rex",
        "cosine_power",
        "inverse_sqrt",
    ]
)
warmup_shapes = st.sampled_from(["linear", "cosine", "1-sqrt", "power", "exponential"])
unit = st.sampled_from(["steps", "tokens"])


@st.composite
def warmup_fields(draw, total: float, peak: float) -> dict:
    warmup = draw(st.integers(0, int(total * 0.3)))
    shape = draw(warmup_shapes)
    return {
        "warmup": warmup,
        "warmup_shape": shape,
        "warmup_start": peak * draw(st.floats(1e-6, 1.0)),
    }


@st.composite
def leaf_spec(draw) -> dict:
    name = draw(
        st.sampled_from(sorted(set(names()) - {"join", "scale", "stretch", "clip", "rewarm"}))
    )
    peak = draw(lr)
    floor = peak * draw(st.floats(1e-4, 0.5))
    total = draw(length) + 10
    warm = draw(warmup_fields(total, peak))
    spec: dict = {"name": name, "unit": draw(unit)}
    if name == "constant":
        spec.update(value=peak, total=total, **warm)
    elif name in ("linear", "cosine", "rex"):
        spec.update(peak=peak, total=total, floor=floor, **warm)
    elif name in ("polynomial", "cosine_power"):
        spec.update(peak=peak, total=total, floor=floor, power=draw(st.floats(1.1, 8.0)), **warm)
    elif name == "damped_cosine":
        spec.update(peak=peak, total=total, floor=floor, cycles=draw(st.floats(0.5, 10)), **warm)
    elif name in ("wsd", "wsdc"):
        spec.update(peak=peak, total=total, floor=floor, decay_shape=draw(decay_shapes), **warm)
        spec["decay"] = draw(st.integers(0, int(total * 0.5)))
        if name == "wsdc":
            spec["constant"] = draw(st.integers(0, int(total * 0.2)))
    elif name == "piecewise_linear":
        times = sorted(draw(st.lists(st.floats(0, 1e5), min_size=1, max_size=8)))
        spec = {"name": name, "points": [[t, draw(lr)] for t in times]}
    elif name == "step":
        spec.update(peak=peak, step_size=draw(length), gamma=draw(st.floats(0.01, 1.0)), **warm)
    elif name == "multistep":
        milestones = sorted(draw(st.lists(st.integers(0, 10000), max_size=5)))
        spec.update(peak=peak, milestones=milestones, gamma=draw(st.floats(0.01, 1.0)), **warm)
    elif name == "exponential":
        spec.update(peak=peak, gamma=draw(st.floats(0.5, 1.0)), floor=floor, **warm)
    elif name == "inverse_sqrt":
        spec.update(peak=peak, floor=floor, **warm)
    elif name == "power":
        spec.update(peak=peak, batch_size=draw(st.integers(1, 1024)), total=total * 1000,
                    decay=draw(st.integers(0, total * 300)), floor=floor, **warm)  # fmt: skip
        spec["unit"] = "tokens"
    elif name == "onecycle":
        spec = {"name": name, "peak": peak, "total": total, "pct_start": draw(st.floats(0, 0.5)),
                "anneal": draw(st.sampled_from(["cos", "linear"])),
                "three_phase": draw(st.booleans())}  # fmt: skip
    elif name == "sgdr":
        spec.update(peak=peak, period=draw(length), period_mult=draw(st.sampled_from([1, 1.5, 2, 3])),
                    peak_decay=draw(st.floats(0.1, 1.0)), floor=floor, **warm)  # fmt: skip
    elif name == "cyclic":
        spec = {"name": name, "peak": peak, "floor": floor, "step_up": draw(length),
                "step_down": draw(length),
                "mode": draw(st.sampled_from(["triangular", "triangular2", "exp_range"])),
                "gamma": draw(st.floats(0.9, 1.0))}  # fmt: skip
    elif name == "wsd_s":
        spec.update(peak=peak, period=draw(st.integers(100, 2000)), total=total * 3,
                    decay_fraction=draw(st.floats(0, 0.5)), decay_shape=draw(decay_shapes),
                    floor=floor, warmup=draw(st.integers(0, 50)))  # fmt: skip
    elif name == "infinite":
        spec.update(peak=peak, constant=peak * draw(st.floats(0.05, 1.0)),
                    cooldown=draw(st.integers(0, total)),
                    cooldown_shape=draw(st.sampled_from(["linear", "cosine", "inverse_sqrt"])),
                    floor=floor * 0.01, **warm)  # fmt: skip
        if draw(st.booleans()):
            spec.update(total=spec["warmup"] + spec["cooldown"] + 2 * total, anneal=total)
    elif name == "uba":
        spec.update(peak=peak, total=total, floor=floor, phi=draw(st.floats(1e-3, 100.0)), **warm)
    elif name == "refine":
        times = sorted(set(draw(st.lists(st.integers(0, 10**6), min_size=2, max_size=12))))
        if len(times) < 2:
            times = [0, total]
        spec = {"name": name, "peak": peak, "unit": spec["unit"],
                "knots": [[t, draw(st.floats(0.0, 1.0))] for t in times],
                **draw(warmup_fields(times[-1] - times[0], peak))}  # fmt: skip
        # The warmup rises to the refined value at its end, which may be low (even 0).
        spec.update(
            warmup_start=0.0,
            warmup_shape=draw(st.sampled_from(["linear", "cosine", "1-sqrt", "power"])),
        )
    else:  # a new family without a strategy must fail loudly here, not be skipped
        raise AssertionError(f"no hypothesis strategy for schedule {name!r}")
    return spec


@st.composite
def any_spec(draw, depth: int = 2) -> dict:
    if depth == 0 or draw(st.integers(0, 3)) > 0:
        spec = draw(leaf_spec())
        spec.pop("unit", None)  # children of composites must share a unit
        return spec
    kind = draw(st.sampled_from(["join", "scale", "stretch", "clip", "rewarm"]))
    child = draw(any_spec(depth=depth - 1))
    if kind == "join":
        other = draw(any_spec(depth=depth - 1))
        return {"name": "join", "schedules": [child, other], "boundaries": [draw(length)]}
    if kind == "scale":
        return {"name": "scale", "schedule": child, "factor": draw(st.floats(0, 10))}
    if kind == "stretch":
        return {"name": "stretch", "schedule": child, "factor": draw(st.floats(0.1, 10)),
                "keep_warmup": draw(st.booleans())}  # fmt: skip
    if kind == "clip":
        return {"name": "clip", "schedule": child, "low": 1e-6, "high": draw(st.floats(1e-6, 1))}
    return {"name": "rewarm", "previous": child, "at": draw(st.integers(0, 10000)),
            "peak": draw(lr), "total": draw(length), "warmup": 0,
            "decay_shape": draw(st.sampled_from(["linear", "cosine", "1-sqrt"]))}  # fmt: skip


progress = st.one_of(
    st.floats(-1e9, 1e9, allow_nan=False),
    st.floats(-1e300, 1e300, allow_nan=False),
    st.just(math.inf),
    st.just(-math.inf),
    st.integers(-(10**12), 10**15),
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _build(spec):
    try:
        return from_spec(spec)
    except ScheduleError:
        # Random draws can violate a cross-field rule (e.g. warmup + decay > total); the error
        # path is tested elsewhere. Everything else must build.
        return None


@SETTINGS
@given(spec=any_spec(), points=st.lists(progress, min_size=1, max_size=20))
def test_never_nan_inf_or_negative_and_scalar_equals_vector(spec, points):
    schedule = _build(spec)
    if schedule is None:
        return
    grid = np.asarray([float(p) for p in points], dtype=np.float64)
    vector = schedule(grid)
    scalar = np.asarray([schedule(p) for p in points])
    assert np.all(np.isfinite(vector)) and np.all(vector >= 0), (spec, grid, vector)
    assert np.all(np.isfinite(scalar)) and np.all(scalar >= 0), (spec, grid, scalar)
    np.testing.assert_allclose(scalar, vector, rtol=1e-12, atol=1e-300)


@SETTINGS
@given(spec=any_spec())
def test_spec_round_trip(spec):
    schedule = _build(spec)
    if schedule is None:
        return
    dumped = json.dumps(schedule.to_spec())
    rebuilt = from_spec(json.loads(dumped))
    assert rebuilt.to_spec() == schedule.to_spec()
    total = schedule.total or 10_000
    grid = np.linspace(-10, 2 * total, 257)
    np.testing.assert_array_equal(rebuilt(grid), schedule(grid))
    assert rebuilt.unit == schedule.unit and rebuilt.total == schedule.total


@settings(max_examples=60, deadline=None)
@given(spec=leaf_spec())
def test_leaf_specs_mostly_build(spec):
    # Guards the strategies above: most random draws must be valid, or the properties test nothing.
    schedule = _build(spec)
    if spec["name"] not in ("wsd", "wsdc", "power", "infinite", "wsd_s", "onecycle"):
        assert schedule is not None, spec


@SETTINGS
@given(spec=any_spec(), factor=st.floats(1.01, 4.0))
def test_with_total_gives_the_new_horizon_or_a_clear_error(spec, factor):
    schedule = _build(spec)
    if schedule is None or schedule.total is None:
        return
    new_total = schedule.total * factor
    try:
        longer = schedule.with_total(new_total)
    except ScheduleError:
        return  # e.g. piecewise_linear (its horizon is its last point): a clear message
    assert longer.total is not None
    assert math.isclose(longer.total, new_total, rel_tol=1e-9) or longer.total >= schedule.total
    values = longer(np.linspace(0, new_total * 1.5, 101))
    assert np.all(np.isfinite(values)) and np.all(values >= 0)
