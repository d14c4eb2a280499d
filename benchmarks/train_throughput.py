"""Training throughput of any method on this machine: steps/s, images/s, input pipeline images/s.

    python benchmarks/train_throughput.py --method defocus [--variants default+quick] [--steps 5]
    python benchmarks/train_throughput.py --method srfeat --variants default+gan --set init_from=scratch

Variants are config arguments separated by '+' ('default' = no argument,
'quick,gan' = configs/<method>.py:quick,gan); `--set key=value` overrides a
config field in every variant. Train steps are timed on a fixed
device-resident batch after compilation, so the figure is the model's; the
input pipeline (host-side example synthesis, grain threads) is timed
separately.
"""

import argparse
import importlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from common import sharding, trainer  # noqa: E402


def bench(method: str, variant: str, overrides: list[str], steps: int, data_batches: int) -> dict:
    config = importlib.import_module(f"configs.{method}").get_config("" if variant == "default" else variant)
    for kv in overrides:
        key, value = kv.split("=", 1)
        node = config
        *parents, leaf = key.split(".")
        for k in parents:
            node = node[k]
        node[leaf] = type(node[leaf])(value) if not isinstance(node[leaf], bool) else value.lower() == "true"
    task = importlib.import_module(f"methods.{method}").build(config)
    mesh = sharding.make_mesh()
    repl = sharding.replicated(mesh)
    state = jax.jit(task.init, out_shardings=repl)(jax.random.key(0))
    frozen = jax.device_put(task.frozen, repl)
    key = jax.device_put(jax.random.key(1), repl)
    it = iter(task.train_data(0))
    t0 = time.perf_counter()
    host = [next(it) for _ in range(data_batches)]
    data_s = time.perf_counter() - t0
    batch = sharding.to_global(host[0], mesh)
    step = trainer.jit_train_step(task, mesh)
    t0 = time.perf_counter()
    state, m = step(state, batch, key, frozen)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = step(state, batch, key, frozen)
    jax.block_until_ready(m)
    dt = (time.perf_counter() - t0) / steps
    return {
        "variant": variant,
        "images_per_step": task.images_per_step,
        "first_step_s": compile_s,
        "step_s": dt,
        "steps_per_s": 1 / dt,
        "images_per_s": task.images_per_step / dt,
        "pipeline_images_per_s": data_batches * task.images_per_step / data_s,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--method", default="defocus")
    p.add_argument("--variants", default="default+quick")
    p.add_argument("--set", action="append", default=[], help="key=value config override (repeatable)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--data-batches", type=int, default=20)
    a = p.parse_args()
    print(f"method: {a.method}  devices: {jax.devices()}  cpu cores: {os.cpu_count()}")
    rows = [
        bench(a.method, v, a.set, a.steps if "quick" in v or "test" in v else max(1, a.steps // 2), a.data_batches)
        for v in a.variants.split("+")
    ]
    hdr = (
        f"{'variant':12} {'img/step':>8} {'compile+1st s':>13} {'step s':>8} "
        f"{'steps/s':>8} {'img/s':>8} {'pipeline img/s':>15}"
    )
    print(hdr)
    for r in rows:
        print(
            f"{r['variant']:12} {r['images_per_step']:8d} {r['first_step_s']:13.2f} {r['step_s']:8.3f} "
            f"{r['steps_per_s']:8.3f} {r['images_per_s']:8.2f} {r['pipeline_images_per_s']:15.1f}"
        )
    if len(rows) > 1:
        print(
            "pipeline / model images/s (>1 means the model is the bottleneck): "
            + ", ".join(f"{r['variant']}: {r['pipeline_images_per_s'] / r['images_per_s']:.2f}" for r in rows)
        )


if __name__ == "__main__":
    main()
