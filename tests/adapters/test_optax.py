"""to_optax: numpy path always; JAX path (jit, vmap, inside an optax optimizer) where JAX is installed."""

from __future__ import annotations

import numpy as np
import pytest

from evertrain.adapters import AdapterError
from evertrain.adapters.optax import to_optax
from evertrain.schedules import ScheduleError, from_spec

SPEC = {
    "name": "wsd",
    "peak": 1e-3,
    "total": 200,
    "warmup": 20,
    "decay": 50,
    "decay_shape": "cosine",
    "floor": 1e-5,
}


def test_numpy_path_equals_the_schedule():
    schedule = from_spec(SPEC)
    lr = to_optax(SPEC)
    assert [lr(k) for k in range(0, 220, 7)] == [schedule(k) for k in range(0, 220, 7)]
    assert lr(np.int32(20)) == 1e-3 and isinstance(lr(5), float)
    counts = np.arange(220)
    np.testing.assert_array_equal(lr(counts), schedule(counts))


def test_token_units_scale_counts_and_require_tokens_per_step():
    token_spec = {
        **SPEC,
        "total": 200 * 512,
        "warmup": 20 * 512,
        "decay": 50 * 512,
        "unit": "tokens",
    }
    schedule = from_spec(token_spec)
    lr = to_optax(token_spec, tokens_per_step=512)
    assert [lr(k) for k in range(210)] == [schedule(k * 512) for k in range(210)]
    with pytest.raises(AdapterError, match="tokens_per_step"):
        to_optax(token_spec)
    with pytest.raises(AdapterError, match="tokens_per_step"):
        to_optax(token_spec, tokens_per_step=0)


# Runs in a child interpreter: importing JAX starts threads, and other areas' tests later
# os.fork() this pytest process (a fork of a multithreaded process can deadlock the child).
_JAX_CHECK = """
import jax, jax.numpy as jnp, numpy as np, optax
from evertrain.adapters.optax import to_optax
from evertrain.schedules import ScheduleError, from_spec

SPEC = {spec!r}
schedule = from_spec(SPEC)
lr = to_optax(SPEC)
expected = schedule(np.arange(220)).astype(np.float32)
jitted = jax.jit(lr)
got = np.array([jitted(jnp.int32(k)) for k in range(0, 220, 11)])
# Evaluated in float32 with jax.numpy (as optax's own schedules are): float32 tolerance.
np.testing.assert_allclose(got, expected[::11], rtol=1e-5, atol=1e-12)
np.testing.assert_allclose(np.asarray(jax.vmap(lr)(jnp.arange(220))), expected, rtol=1e-5, atol=1e-12)

optimizer = optax.sgd(learning_rate=lr)
params = jnp.zeros(())
state = optimizer.init(params)

@jax.jit
def update(params, state):
    # gradient 1.0: each SGD update moves the parameter by exactly -lr(count)
    updates, state = optimizer.update(jnp.ones(()), state, params)
    return optax.apply_updates(params, updates), state

steps = []
for _ in range(30):
    new_params, state = update(params, state)
    steps.append(float(params - new_params))
    params = new_params
np.testing.assert_allclose(steps, expected[:30], rtol=1e-6, atol=1e-12)
print("JAX-OK")
"""


def test_jax_jit_vmap_and_optax_optimizer():
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("jax") is None or importlib.util.find_spec("optax") is None:
        pytest.skip("jax/optax not installed (optional: pip install evertrain[jax])")
    out = subprocess.run(
        [sys.executable, "-c", _JAX_CHECK.format(spec=SPEC)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("JAX-OK")


# Parity with optax's own schedules (same float32 arithmetic, under jit), no callback in the
# jaxpr of a traceable schedule, and the documented host-callback fallback for the others.
_OPTAX_PARITY = """
import jax, jax.numpy as jnp, numpy as np, optax
from evertrain.adapters.optax import to_optax, is_traceable
from evertrain.schedules import from_spec, join

PAIRS = [
    ("cosine_decay_schedule", {"name": "cosine", "peak": 1e-3, "total": 300, "floor": 1e-4},
     optax.cosine_decay_schedule(1e-3, 300, alpha=0.1)),
    ("warmup_cosine_decay_schedule",
     {"name": "cosine", "peak": 1e-3, "total": 300, "warmup": 30, "floor": 1e-5, "warmup_start": 1e-6},
     optax.warmup_cosine_decay_schedule(1e-6, 1e-3, 30, 300, end_value=1e-5)),
    ("linear_schedule", {"name": "linear", "peak": 1e-3, "total": 200, "floor": 2e-4},
     optax.linear_schedule(1e-3, 2e-4, 200)),
    ("exponential_decay", {"name": "exponential", "peak": 1e-3, "gamma": 0.9, "every": 10},
     optax.exponential_decay(1e-3, transition_steps=10, decay_rate=0.9)),
    ("constant_schedule", {"name": "constant", "value": 3e-4}, optax.constant_schedule(3e-4)),
    ("piecewise_constant_schedule",
     {"name": "multistep", "peak": 1e-3, "milestones": [100, 200], "gamma": 0.1},
     optax.piecewise_constant_schedule(1e-3, {100: 0.1, 200: 0.1})),
    ("piecewise_interpolate_schedule",
     {"name": "piecewise_linear", "points": [[0, 1e-3], [100, 5e-4], [250, 1e-4]]},
     optax.piecewise_interpolate_schedule("linear", 1e-3, {100: 0.5, 250: 0.2})),
    ("join_schedules",
     join([{"name": "linear", "peak": 1e-3, "warmup_start": 0.0, "total": 50, "warmup": 50},
           {"name": "cosine", "peak": 1e-3, "total": 250}], [50]),
     optax.join_schedules([optax.linear_schedule(0.0, 1e-3, 50),
                           optax.cosine_decay_schedule(1e-3, 250)], [50])),
]
counts = jnp.arange(0, 400)
for label, spec, theirs in PAIRS:
    ours = to_optax(spec)
    assert is_traceable(spec), label
    jaxpr = str(jax.make_jaxpr(ours)(0))
    assert "callback" not in jaxpr, (label, jaxpr)
    got = np.asarray(jax.jit(jax.vmap(ours))(counts))
    want = np.asarray(jax.jit(jax.vmap(theirs))(counts))
    assert got.dtype == np.float32, (label, got.dtype)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-10, err_msg=label)
    # and still the schedule itself, to float32 tolerance
    ref = from_spec(spec.to_spec() if hasattr(spec, "to_spec") else spec)(np.arange(400.0))
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-10, err_msg=label)

# token units: count * tokens_per_step, traced too
tok = to_optax({"name": "cosine", "peak": 1e-3, "total": 300 * 256, "warmup": 30 * 256, "unit": "tokens"},
               tokens_per_step=256)
np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(tok))(counts)),
                           np.asarray(jax.vmap(optax.warmup_cosine_decay_schedule(0.0, 1e-3, 30, 300))(counts)),
                           rtol=2e-6, atol=1e-10)
assert "callback" not in str(jax.make_jaxpr(tok)(0))

# the fallback: sgdr has no xp formula, so it goes through the host and says so
fallback = to_optax("sgdr:peak=1e-3,period=50")
assert not is_traceable("sgdr:peak=1e-3,period=50")
assert "callback" in str(jax.make_jaxpr(fallback)(0))
np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(fallback))(counts)),
                           from_spec("sgdr:peak=1e-3,period=50")(np.arange(400.0)), rtol=1e-6)
print("PARITY-OK")
"""


def test_jax_path_is_traced_and_matches_optax_schedules():
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("jax") is None or importlib.util.find_spec("optax") is None:
        pytest.skip("jax/optax not installed (optional: pip install evertrain[jax])")
    out = subprocess.run(
        [sys.executable, "-c", _OPTAX_PARITY], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("PARITY-OK")


def test_schedules_package_does_not_import_jax():
    import subprocess
    import sys

    code = "import sys, evertrain.schedules; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_optax_binding_imports_neither_torch_nor_jax():
    """JAX users need no torch; evertrain.adapters itself loads frameworks lazily."""
    import subprocess
    import sys

    code = (
        "import sys, evertrain.adapters, evertrain.adapters.optax; "
        "print(sorted(m for m in ('torch', 'jax', 'transformers', 'lightning') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# The xp formulas (what JAX traces) must be the schedule: checked on numpy for any spec that
# the schedules' property tests generate, composites included.
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from evertrain.adapters.optax import is_traceable  # noqa: E402
from tests.schedules.test_properties import any_spec  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(spec=any_spec(), points=st.lists(st.floats(-10, 2e6), min_size=1, max_size=20))
def test_xp_formula_equals_the_numpy_schedule(spec, points):
    try:
        schedule = from_spec(spec)
    except ScheduleError:  # the strategy draws some invalid combinations; those are not the point
        return
    if not is_traceable(schedule):
        return
    t = np.asarray(points, dtype=np.float64)
    with np.errstate(all="ignore"):  # where() evaluates every branch before choosing
        got = schedule.evaluate_xp(t, np)
    np.testing.assert_allclose(got, schedule(t), rtol=1e-9, atol=1e-15, err_msg=str(spec))


def test_the_families_without_xp_formula_are_the_documented_ones():
    from evertrain.schedules import names

    samples = {
        "sgdr": "sgdr:peak=1e-3,period=10",
        "cyclic": "cyclic:peak=1e-3,floor=1e-4,step_up=10",
        "power": "power:peak=1e-3,total=100000",
    }
    for name, spec in samples.items():
        assert name in names() and not is_traceable(spec), name
