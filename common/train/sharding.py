"""Data parallelism as `jax.jit` over a `Mesh` with `NamedSharding`.

The batch is split along the mesh axis ``data``; the state is replicated.
With global arrays a plain mean over the batch is the cross-device mean and
BatchNorm statistics are global, so no step ever calls `pmean`.
"""

from __future__ import annotations

import ipaddress
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from common.errors import ConfigError

DATA = "data"
_coordinator: str | None = None  # the address `initialize_distributed` joined, when it was given one
_pinned = False  # whether `initialize_distributed` bound this process to its share of the machine's cores


# The process-group settings, read from these environment variables when not given as flags.
DISTRIBUTED_ENV = {
    "coordinator_address": "JAX_COORDINATOR_ADDRESS",
    "num_processes": "JAX_NUM_PROCESSES",
    "process_id": "JAX_PROCESS_ID",
}


def initialize_distributed(
    *, coordinator_address: str | None = None, num_processes=None, process_id=None, auto: bool = False
) -> bool:
    """Joins this process to a multi-process run with `jax.distributed.initialize` (JAX's own runtime).

    Explicit settings (or the `DISTRIBUTED_ENV` variables) describe the group by hand, e.g. several
    processes on one machine; with `auto` (``--config.distributed=True``) and no settings JAX detects TPU
    pods, Slurm and Open MPI itself. Returns whether a group was joined. On CPU the cross-process
    collectives are gloo's (JAX's default).
    """
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}
    for name, var in DISTRIBUTED_ENV.items():
        if given[name] in (None, "") and os.environ.get(var):
            given[name] = os.environ[var]
    if not auto and all(v in (None, "") for v in given.values()):
        return False
    kwargs = {}
    for name in ("num_processes", "process_id"):
        v = given[name]
        if v in (None, ""):
            continue
        try:
            kwargs[name] = int(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}={v!r} ({DISTRIBUTED_ENV[name]}) is not an integer") from None
    if given["coordinator_address"]:
        kwargs["coordinator_address"] = str(given["coordinator_address"])
    if kwargs and set(kwargs) != set(DISTRIBUTED_ENV) and not auto:
        missing = [f"--{n} / {DISTRIBUTED_ENV[n]}" for n in DISTRIBUTED_ENV if n not in kwargs]
        raise ConfigError(
            f"a multi-process run needs all of coordinator address, process count and id; missing: "
            f"{', '.join(missing)} (or --config.distributed=True on a TPU pod or Slurm)"
        )
    if "num_processes" in kwargs and not 0 <= kwargs.get("process_id", 0) < kwargs["num_processes"]:
        raise ConfigError(f"process_id {kwargs['process_id']} is not in [0, num_processes={kwargs['num_processes']})")
    if _is_loopback(kwargs.get("coordinator_address", "")) and {"num_processes", "process_id"} <= set(kwargs):
        _take_share_of_cores(kwargs["num_processes"], kwargs["process_id"])  # before any thread of JAX starts
    try:
        jax.distributed.initialize(**kwargs, shutdown_timeout_seconds=3600)
    except (ValueError, RuntimeError) as e:
        hint = "" if kwargs else " (no TPU pod, Slurm or Open MPI found: give the coordinator, count and id)"
        raise ConfigError(f"jax.distributed.initialize({kwargs or ''}) failed: {type(e).__name__}: {e}{hint}") from e
    global _coordinator
    _coordinator = kwargs.get("coordinator_address")
    return True


def _is_loopback(address: str) -> bool:
    """Whether a ``host:port`` address is this machine's loopback (``localhost``, 127.x.x.x, ``::1``): then every
    process that joined it runs here. (This host's name would not say so: processes elsewhere reach it too.)"""
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def share_of_cores(cores, num_processes: int, process_id: int) -> set[int]:
    """Process `process_id`'s contiguous slice of `cores` when `num_processes` split them (one core, shared
    round-robin, when there are fewer cores than processes)."""
    cores = sorted(cores)
    if len(cores) < num_processes:
        return {cores[process_id % len(cores)]}
    k = len(cores)
    return set(cores[process_id * k // num_processes : (process_id + 1) * k // num_processes])


def _take_share_of_cores(num_processes: int, process_id: int) -> None:
    """Binds this process to its share of the machine's cores, so that XLA's thread pool and the input
    pipeline's threads (both sized from the CPU affinity when they start, and started later from this thread)
    stop competing with the other processes' for every core. Left alone when a launcher or the user already
    narrowed the affinity (``taskset``, Slurm, ``mpirun --bind-to``, a container's cpuset) or off Linux."""
    global _pinned
    if num_processes < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores = os.sched_getaffinity(0)
    if len(cores) != os.cpu_count():
        return
    try:
        os.sched_setaffinity(0, share_of_cores(cores, num_processes, process_id))
    except OSError:  # a sandbox that forbids it: share the cores as before
        return
    _pinned = True


def processes_on_this_host() -> int:
    """How many processes of the run share this machine's cores, as far as this process can tell.

    All of them when the coordinator it joined by hand is a loopback address (``--coordinator_address=localhost:…``,
    several processes started on one host); otherwise 1. Launchers that bind each task to its own cores (Slurm,
    ``mpirun --bind-to``) already shrink the CPU affinity that `cpu_cores` counts."""
    if not (_coordinator and _is_loopback(_coordinator)):
        return 1  # (and without touching JAX's backend, which a process not yet joined must not start)
    return max(1, jax.process_count())


def cpu_cores() -> int:
    """How many CPU cores this process should keep busy: its affinity, which `initialize_distributed` narrowed
    to its share when processes of one run share this machine; where it could not, the affinity divided
    between those processes. At least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores if _pinned else cores // processes_on_this_host())


def host_local(tree):
    """A replicated state as single-device arrays on this process's own device.

    Host-side work that one process does alone (sample grids, evaluation, prediction) reads this, so it
    launches no computation on other processes' devices. In one process it is the tree itself.
    """
    if jax.process_count() == 1:
        return tree
    return jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over `devices` (default: every device of every process)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def replicate(tree, mesh: Mesh):
    """Host values (numpy or single-device arrays, no PRNG keys) as arrays replicated over `mesh`.

    Every process passes the same values; across processes `device_put` cannot reach the other devices.
    """
    repl = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, repl)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(repl, np.asarray(x)), tree)


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
