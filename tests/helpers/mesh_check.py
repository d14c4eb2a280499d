"""Run in a process with 4 CPU devices: N train steps on a 4-device mesh vs 1 device.

    python tests/helpers/mesh_check.py [--save DIR] METHOD:VARIANT [METHOD:VARIANT ...]

Prints one JSON line, per METHOD:VARIANT: max abs state difference, state
scale, trace counts and the last step's scalar metrics on 1 and on 4 devices.
With --save, the 4-device state is written to DIR/METHOD_VARIANT.npz (leaves
keyed by path: the reference of the multi-process checks).
"""

import importlib
import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from common.train import sharding, trainer, xla  # noqa: E402
from tests.helpers.leaves import local_leaves  # noqa: E402


def run(method: str, variant: str, devices, steps: int):
    config = importlib.import_module(f"configs.{method}").get_config(variant)
    task = trainer.build_task(config)
    traces = {"n": 0}
    inner = task.train_step

    def counted(*a):
        traces["n"] += 1  # runs only while tracing
        return inner(*a)

    task.train_step = counted
    run = trainer.setup(task, config, sharding.make_mesh(devices))
    state = run.fresh_state()
    it = iter(task.train_data(config.seed))
    for _ in range(steps):
        state, metrics = run.step(state, sharding.to_global(next(it), run.mesh), run.key, run.frozen)
    return jax.device_get(state), jax.device_get(metrics), traces["n"]


def check(method: str, variant: str, save: str | None = None) -> dict:
    s1, m1, t1 = run(method, variant, jax.devices()[:1], 3)
    s4, m4, t4 = run(method, variant, jax.devices(), 3)
    if save:
        np.savez(os.path.join(save, f"{method}_{variant}.npz"), **local_leaves(s4))
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(s1)]
    diffs = jax.tree.leaves(
        jax.tree.map(
            lambda a, b: (
                float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0
            ),
            s1,
            s4,
        )
    )
    scale = max(float(np.max(np.abs(np.asarray(a)))) for a in jax.tree.leaves(s1) if np.size(a))
    return {
        "max_diff": max(diffs),
        "worst_leaf": paths[int(np.argmax(diffs))],
        "param_scale": scale,
        "traces_1": t1,
        "traces_4": t4,
        "metrics_1": {k: float(v) for k, v in m1.items()},
        "metrics_4": {k: float(v) for k, v in m4.items()},
    }


if __name__ == "__main__":
    xla.set_cpu_flags()
    assert jax.device_count() == 4, jax.devices()
    args = sys.argv[1:]
    save = None
    if args[:1] == ["--save"]:
        save, args = args[1], args[2:]
    pairs = [a.split(":", 1) for a in args]
    print(json.dumps({f"{m}:{v}": check(m, v, save) for m, v in pairs}))
