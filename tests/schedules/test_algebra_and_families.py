"""Algebra (join, scale, stretch, clip, extend, rewarm) and the behaviour of each family."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evertrain.schedules import (
    ScheduleError,
    clip,
    extend,
    from_spec,
    get,
    join,
    rewarm,
    scale,
    stretch,
)

GRID = np.linspace(-5, 3000, 6011)


def test_scale_and_clip():
    base = get("cosine", peak=1.0, total=100, warmup=10)
    np.testing.assert_array_equal(scale(base, 0.5)(GRID), 0.5 * base(GRID))
    clipped = clip(base, low=0.1, high=0.8)
    assert clipped(0) == 0.1 and clipped(10) == 0.8 and clipped(1000) == 0.1
    with pytest.raises(ScheduleError, match="high=0.1 is below low=0.5"):
        clip(base, low=0.5, high=0.1)


def test_stretch_scales_time_and_optionally_keeps_warmup():
    base = get("wsd", peak=1.0, total=1000, warmup=100, decay=200)
    doubled = stretch(base, 2.0)
    assert doubled.total == 2000
    t = np.arange(0, 1000)
    np.testing.assert_array_equal(doubled(2.0 * t), base(t))
    kept = stretch(base, 3.0, keep_warmup=True)
    assert kept.total == 100 + 3 * 900
    np.testing.assert_array_equal(kept(np.arange(101)), base(np.arange(101)))
    # base decays linearly on [800, 1000]; stretched, that is [100 + 3*700, 100 + 3*900].
    assert kept(100 + 3 * 700) == 1.0 and kept(100 + 3 * 800) == pytest.approx(0.5, rel=1e-12)
    assert kept(100 + 3 * 900) == 0.0 and kept(100 + 3 * 850) == pytest.approx(0.25, rel=1e-12)


def test_join_of_joins_keeps_local_time_and_mixing_units_is_rejected():
    inner = join(["constant:value=1.0", "linear:peak=1.0,total=10"], [5])
    outer = join([inner, "constant:value=0.25"], [15])
    assert outer(4) == 1.0 and outer(10) == pytest.approx(0.5) and outer(15) == 0.25
    with pytest.raises(ScheduleError, match="mix units"):
        join(["constant:value=1", "constant:value=1,unit=tokens"], [5])
    with pytest.raises(ScheduleError, match="boundaries must increase"):
        join(["constant:value=1", "constant:value=1", "constant:value=1"], [5, 5])


def test_extend_wsd_before_the_decay_moves_the_decay_without_a_jump():
    base = get("wsd", peak=1.0, total=1000, warmup=100, decay=200, floor=0.01)
    longer = extend(base, 3000, at=500)
    np.testing.assert_array_equal(longer(np.arange(501)), base(np.arange(501)))
    assert longer(2799) == 1.0 and longer(2800) == 1.0 and longer(3000) == 0.01
    assert longer.to_spec()["name"] == "wsd" and longer.total == 3000


def test_extend_wsd_inside_the_decay_continues_from_the_current_value():
    base = get("wsd", peak=1.0, total=1000, warmup=100, decay=200, floor=0.01)
    at = 900
    longer = extend(base, 2000, at=at)
    steps = np.arange(0, at + 1)
    np.testing.assert_array_equal(longer(steps), base(steps))  # history unchanged
    assert longer(at) == base(at)  # no jump
    after = longer(np.arange(at, 2001))
    assert np.all(np.diff(after) <= 0) and longer(2000) == pytest.approx(0.01, rel=1e-12)
    assert from_spec(longer.to_spec())(1500) == longer(1500)


def test_extend_infinite_moves_the_anneal():
    base = get("infinite", peak=1.0, constant=0.3, warmup=10, cooldown=90, total=1000,
               anneal=100, floor=0.003)  # fmt: skip
    longer = extend(base, 5000, at=800)
    np.testing.assert_array_equal(longer(np.arange(801)), base(np.arange(801)))
    assert longer(4900) == 0.3 and longer(5000) == 0.003
    assert longer(4950) == pytest.approx(math.sqrt(0.3 * 0.003), rel=1e-12)  # geometric mid


def test_with_total_keeps_absolute_decay_and_reapplies_fraction():
    s = get("wsd", peak=1.0, total=1000, decay_fraction=0.1)
    assert s.with_total(2000)(1800) == 1.0 and s.with_total(2000)(1900) == pytest.approx(0.5)
    with pytest.raises(ScheduleError, match="horizon is its last point"):
        get("piecewise_linear", points=[[0, 1], [10, 0]]).with_total(20)


def test_rewarm_starts_where_the_previous_schedule_left_off():
    previous = get("wsd", peak=3e-4, total=1000, warmup=100, decay=200, floor=3e-5)
    stage = get("rewarm", previous=previous.to_spec(), at=1000, peak=1e-4, warmup=50, total=500)
    assert stage(0) == 3e-5 and stage(50) == 1e-4 and stage(500) == 0.0
    history = rewarm(previous, at=1000, peak=1e-4, warmup=50, total=500, floor=1e-6)
    assert history(999) == previous(999) and history(1000) == previous(1000)
    assert history(1050) == 1e-4 and history.total == 1500 and history(1500) == 1e-6
    # From the middle of a run (continual pre-training from a stable-phase checkpoint).
    mid = rewarm(previous, at=500, peak=2e-4, warmup=20, total=300, decay_shape="linear")
    assert mid(500) == 3e-4 and mid(520) == 2e-4 and mid(800) == 0.0
    given = get("rewarm", start=5e-5, peak=1e-4, warmup=10, total=100)
    assert given(0) == 5e-5 and from_spec(given.to_spec()) == given
    with pytest.raises(ScheduleError, match="give start"):
        get("rewarm", peak=1e-4, total=100)


def test_wsd_s_decays_at_every_checkpoint_and_resumes_at_peak():
    s = get("wsd_s", peak=1.0, checkpoints=[1000, 2000, 4000], decay_fraction=0.1, floor=0.0,
            warmup=100)  # fmt: skip
    assert s(900) == 1.0 and s(950) == pytest.approx(0.5) and s(1000) == 1.0
    assert s(999.999) < 1e-4
    assert s(1900) == 1.0 and s(3800) == 1.0 and s(3900) == pytest.approx(0.5) and s(4000) == 0.0
    rewarmed = get("wsd_s", peak=1.0, period=1000, total=3000, decay=100, rewarm=50)
    assert rewarmed(1000) == 0.0 and rewarmed(1025) == pytest.approx(0.5) and rewarmed(1050) == 1.0


def test_infinite_phases():
    s = get("infinite", peak=1.0, constant=0.25, warmup=100, cooldown=400, cooldown_shape="linear")
    assert s.total is None and s(100) == 1.0 and s(300) == pytest.approx(0.625) and s(500) == 0.25
    assert s(1e12) == 0.25
    with pytest.raises(ScheduleError, match="needs total"):
        get("infinite", peak=1.0, constant=0.25, anneal=100)
    sqrt_cool = get("infinite", peak=1.0, constant=0.1, cooldown=100, cooldown_shape="inverse_sqrt")
    values = sqrt_cool(np.arange(101))
    assert values[0] == 1.0 and values[-1] == 0.1 and np.all(np.diff(values) < 0)
    # inverse-sqrt cooldown drops fastest at first (convex), unlike cosine.
    assert sqrt_cool(10) < get("infinite", peak=1.0, constant=0.1, cooldown=100)(10)


def test_wsd_decay_shapes_hit_their_formulas():
    common = dict(peak=1.0, total=100, decay=40, floor=0.01)
    x = 0.25
    t = 60 + 40 * x
    expected = {
        "linear": 0.01 + 0.99 * (1 - x),
        "cosine": 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * x)),
        "1-sqrt": 0.01 + 0.99 * (1 - math.sqrt(x)),
        "exponential": 1.0 ** (1 - x) * 0.01**x,
        "power": 0.01 + 0.99 * (1 - x) ** 2,
        "exp2": 0.01 + 0.99 * (2 * 0.5**x - 1),
        "rex": 0.01 + 0.99 * (1 - x) / (0.5 + 0.5 * (1 - x)),
    }
    for shape, value in expected.items():
        assert get("wsd", decay_shape=shape, **common)(t) == pytest.approx(value, rel=1e-12), shape


def test_named_family_formulas():
    assert get("rex", peak=1.0, total=100)(50) == pytest.approx(0.5 / 0.75, rel=1e-12)
    cp = get("cosine_power", peak=1.0, total=100, power=10)
    c = 0.5 * (1 + math.cos(math.pi * 0.3))
    assert cp(30) == pytest.approx((10 ** (c + 1) - 10) / 90, rel=1e-12)
    damped = get("damped_cosine", peak=1.0, total=100, cycles=2)
    assert damped(25) == pytest.approx(0.75 * 0.5 * (1 + math.cos(math.pi)), abs=1e-15)
    assert damped(50) == pytest.approx(0.5, rel=1e-12)
    power = get("power", peak=0.02, a=4.6, b=-0.51, batch_size=4, unit="tokens")
    assert power(1e9) == pytest.approx(4 * 4.6 * 1e9**-0.51, rel=1e-12)
    assert power(10) == 0.02  # capped at the peak
    wsdc = get("wsdc", peak=1.0, total=1000, decay=200, constant=100, floor=0.1)
    assert (
        wsdc(700) == 1.0
        and wsdc(900) == 0.1
        and wsdc(1000) == 0.1
        and wsdc(800) == pytest.approx(0.55)
    )
    sgdr = get("sgdr", peak=1.0, period=10, period_mult=2, peak_decay=0.5)
    assert sgdr(10) == 0.5 and sgdr(30) == 0.25 and sgdr(20) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("onecycle:peak=1,total=100,pct_start=0.6,three_phase=true", "must fit in total"),
        ("sgdr:peak=1,period=0", "period=0 must be > 0"),
        ("step:peak=1,step_size=10,gamma=2", "gamma=2 must be in (0.0, 1.0]"),
        ("multistep:peak=1,milestones=[20,10]", "must be sorted"),
        ("infinite:peak=1,constant=2", "constant=2 is above peak=1"),
        # the floor of an infinite schedule is compared with its constant phase, and says so
        (
            "infinite:peak=1,constant=0.5,floor=0.6,total=10,anneal=1",
            "floor=0.6 is above constant=0.5",
        ),
        ("wsd_s:peak=1", "exactly one of checkpoints"),
        ("wsdc:peak=1,total=100,decay=95,constant=10", "runs past total=100"),
        ("cyclic:peak=1,step_up=10,mode=triangle", "did you mean 'triangular'"),
        ("power:peak=1,decay=10", "needs a total"),
        ("wsd:peak=1,total=100,warmup_shape=exponential,warmup=10", "warmup_start > 0"),
        ("join:schedules=[],boundaries=[]", "non-empty list"),
    ],
)
def test_family_validation_messages(spec, needle):
    with pytest.raises(ScheduleError) as info:
        from_spec(spec)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "wsd:peak=1,total=100,decay=10,decay_fraction=0.1",
            "wsd: give either decay (a length) or decay_fraction (of total), not both",
        ),
        (
            "wsdc:peak=1,total=100,decay=10,decay_fraction=0.1",
            "wsdc: give either decay (a length) or decay_fraction (of total), not both",
        ),
        (
            "wsdc:peak=1,total=100,constant=10,constant_fraction=0.1",
            "wsdc: give either constant (a length) or constant_fraction (of total), not both",
        ),
        (
            "wsd_s:peak=1,period=50,total=100,decay=5,decay_fraction=0.1",
            "wsd_s: give either decay (a length) or decay_fraction (of each segment), not both",
        ),
        (
            "rewarm:peak=1,total=100,start=0.1,decay=10,decay_fraction=0.1",
            "rewarm: give either decay (a length) or decay_fraction (of total), not both",
        ),
    ],
)
def test_a_length_and_its_fraction_together_are_refused_alike(spec, message):
    """One rule, one message, wherever a phase is given as a length or as a fraction."""
    with pytest.raises(ScheduleError) as info:
        from_spec(spec)
    assert str(info.value) == message


def test_a_length_or_a_fraction_gives_the_same_phase():
    for name, extra in (("wsd", ""), ("wsdc", ",constant=10"), ("rewarm", ",start=0.1")):
        by_length = from_spec(f"{name}:peak=1,total=100,decay=30{extra}")
        by_fraction = from_spec(f"{name}:peak=1,total=100,decay_fraction=0.3{extra}")
        grid = np.linspace(0, 100, 201)
        np.testing.assert_array_equal(by_length(grid), by_fraction(grid))
