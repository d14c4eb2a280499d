"""``--config.precision=bfloat16``: bf16 compute inside every method's step, float32 state, and it trains."""

import importlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.errors import ConfigError
from common.train import precision, trainer
from methods import checked_specs

METHODS = checked_specs()


def build(spec: str, prec: str, **overrides):
    method, variant = spec.split(":")
    config = importlib.import_module(f"configs.{method}").get_config(variant)
    config.precision = prec
    config.update_from_flattened_dict(overrides)
    return config, trainer.build_task(config)


def first_batch(task, config):
    return jax.tree.map(jnp.asarray, next(iter(task.train_data(config.seed))))


def test_mixed_computes_in_bf16_and_returns_float32():
    dense = nn.Dense(5)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 7)), jnp.float32)
    params = dense.init(jax.random.key(0), x)
    mixed = precision.Mixed(dense, jnp.bfloat16)
    y = mixed.apply(params, x)
    assert y.dtype == jnp.float32
    # the direct transcription: bf16-rounded operands, products summed, result rounded to bf16
    bf = lambda a: np.asarray(jnp.asarray(a, jnp.bfloat16), np.float64)  # noqa: E731
    p = params["params"]
    want = bf(bf(x) @ bf(p["kernel"]) + bf(p["bias"]))
    np.testing.assert_allclose(np.asarray(y), want, rtol=2**-7, atol=1e-6)
    assert not np.allclose(np.asarray(y), np.asarray(dense.apply(params, x)), rtol=1e-6, atol=0)
    grads = jax.grad(lambda q: jnp.sum(mixed.apply(q, x) ** 2))(params)
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    assert "bf16" in jax.jit(lambda q: mixed.apply(q, x)).lower(params).as_text()
    assert precision.wrap(dense, {"precision": "float32"}) is dense


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="precision='fp16'"):
        build("tone:test", "fp16")


@pytest.mark.parametrize("spec", METHODS)
def test_bf16_step_convolves_in_bf16_and_keeps_float32_state(spec):
    config, task = build(spec, "bfloat16")
    state = jax.eval_shape(task.init, jax.random.key(0))
    args = (state, first_batch(task, config), jax.random.key(1), task.frozen)
    convs = re.findall(r"stablehlo\.convolution.*", jax.jit(task.train_step).lower(*args).as_text())
    f32 = [c.split(" : ")[-1] for c in convs if "bf16" not in c]
    assert convs and not f32, f"{len(f32)} of {len(convs)} convolutions (forward and gradients) not in bf16: {f32[:3]}"
    new_state, metrics = jax.eval_shape(task.train_step, *args)
    dtypes = lambda t: [x.dtype for x in jax.tree.leaves(t)]  # noqa: E731
    assert dtypes(new_state) == dtypes(state)
    assert jnp.dtype(jnp.bfloat16) not in dtypes(new_state) + dtypes(metrics)


@pytest.mark.parametrize("spec,loss", [("compression:test", "loss/total"), ("srfeat:test", "loss/pixel")])
def test_bf16_trains_like_float32(spec, loss):
    """Twelve steps on one repeated batch from the same init: bf16 lowers the loss as float32 does."""
    curves = {}
    for prec in ("float32", "bfloat16"):
        config, task = build(spec, prec)
        state = jax.jit(task.init)(jax.random.key(0))
        batch = first_batch(task, config)
        step = jax.jit(task.train_step)
        curve = []
        for i in range(12):
            state, m = step(state, batch, jax.random.key(i), task.frozen)
            curve.append(float(m[loss]))
        curves[prec] = np.asarray(curve)
        floats = [x.dtype for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
        assert floats and set(floats) == {jnp.dtype(jnp.float32)}
    f32, b16 = curves["float32"], curves["bfloat16"]
    drop = f32[0] - f32[-1]
    assert np.all(np.isfinite(b16)) and drop > 0, (f32, b16)
    assert b16[0] - b16[-1] > 0.75 * drop, (f32, b16)
    assert abs(b16[-1] - f32[-1]) < 0.25 * drop, (f32, b16)
    assert not np.array_equal(f32, b16)  # the switch changed the arithmetic
