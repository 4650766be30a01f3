"""to_optax: numpy path always; JAX path (jit, vmap, inside an optax optimizer) where JAX is installed."""

from __future__ import annotations

import numpy as np
import pytest

from evertrain.adapters import AdapterError
from evertrain.adapters.optax import to_optax
from evertrain.schedules import from_spec

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
from evertrain.schedules import from_spec

SPEC = {spec!r}
schedule = from_spec(SPEC)
lr = to_optax(SPEC)
expected = schedule(np.arange(220)).astype(np.float32)
jitted = jax.jit(lr)
got = np.array([jitted(jnp.int32(k)) for k in range(0, 220, 11)])
np.testing.assert_array_equal(got, expected[::11])
np.testing.assert_array_equal(np.asarray(jax.vmap(lr)(jnp.arange(220))), expected)

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
