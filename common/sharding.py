"""Data parallelism as `jax.jit` over a `Mesh` with `NamedSharding`.

The batch is split along the mesh axis ``data``; the state is replicated.
With global arrays a plain mean over the batch is the cross-device mean and
BatchNorm statistics are global, so no step ever calls `pmean`.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from common.errors import ConfigError

DATA = "data"


def maybe_initialize_distributed(config) -> None:
    """Multi-host: `jax.distributed.initialize()` when `config.distributed` is set."""
    if config.get("distributed", False):
        jax.distributed.initialize()


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over `devices` (default: every device of every process)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA))


def check_batch(batch_size: int, mesh: Mesh, what: str = "batch size") -> None:
    n = mesh.devices.size
    if batch_size % n:
        raise ConfigError(f"{what} {batch_size} is not divisible by the {n} devices of the mesh")


def to_global(batch: dict, mesh: Mesh) -> dict:
    """Host-local numpy batch -> global arrays sharded on the data axis."""
    sharding = batch_sharded(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
