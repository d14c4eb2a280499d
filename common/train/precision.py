"""Mixed precision: ``--config.precision=bfloat16`` runs the networks in bf16 and keeps the rest in float32.

What changes with ``bfloat16``:

* every network's convolutions, matmuls and activations run in bfloat16
  (parameters are cast on the way in, inside the jitted step, so the
  gradients are cast back and accumulate in float32);
* parameters, optimizer state, BatchNorm statistics, losses and metrics stay
  float32: a network's outputs are cast back to float32 before any loss sees
  them.

The methods wrap their networks with :func:`wrap`, which returns the module
itself under ``float32`` (the default), so nothing changes there. The
compression codec (integer tables, fixed-point h_s, entropy model) always runs
in float32; only its training transforms follow this switch.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from common.errors import ConfigError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config) -> Any:
    """The networks' compute dtype named by ``config.precision`` (float32 when the key is absent)."""
    name = config.get("precision", "float32")
    if name not in DTYPES:
        raise ConfigError(f"config precision={name!r}: use {' or '.join(map(repr, DTYPES))}")
    return DTYPES[name]


def cast(tree, dtype):
    """`tree` with its floating array leaves (jax or numpy; Python floats excluded) cast to `dtype`."""

    def one(x):
        dt = getattr(x, "dtype", None)
        return x.astype(dtype) if dt is not None and jnp.issubdtype(dt, jnp.floating) and dt != dtype else x

    return jax.tree.map(one, tree)


class Mixed:
    """A linen module whose ``apply`` computes in `dtype`: float "params" and float array arguments are cast to
    `dtype`, and float outputs (mutated collections included) come back as float32. ``init`` is unchanged, so
    parameters are created float32. Any other attribute is the module's."""

    def __init__(self, module, dtype):
        self.module = module
        self.dtype = dtype

    def init(self, *args, **kwargs):
        return self.module.init(*args, **kwargs)

    def apply(self, variables, *args, **kwargs):
        variables = dict(variables)
        if "params" in variables:
            variables["params"] = cast(variables["params"], self.dtype)
        args = cast(args, self.dtype)
        kwargs = cast(kwargs, self.dtype)  # RNG keys and flags are not floating: untouched
        return cast(self.module.apply(variables, *args, **kwargs), jnp.float32)

    def __getattr__(self, name):
        return getattr(self.module, name)


def wrap(module, config):
    """`module` computing in ``config.precision``: the module itself for float32, else a :class:`Mixed`."""
    dtype = compute_dtype(config)
    return module if dtype == jnp.float32 else Mixed(module, dtype)
