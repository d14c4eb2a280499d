"""Training throughput of one config on this machine: steps/s, images/s, input pipeline images/s, and the
step's FLOPs, achieved FLOP/s, model FLOP utilisation and peak device memory.

    python benchmarks/train_throughput.py --config=configs/defocus.py:quick [--steps 5]
    python benchmarks/train_throughput.py --config=configs/srfeat.py:gan --config.init_from=scratch
    # on a GPU: bf16 compute, MFU against the device's dense bf16 peak (e.g. H100 SXM: 989 TFLOP/s)
    python benchmarks/train_throughput.py --config=configs/defocus.py --config.precision=bfloat16 --peak_tflops=989

``benchmarks/throughput_table.py`` runs this for every method (one process each, ``--json_out``) and
prints one table. The config and its ``--config.key=value`` overrides are read exactly as
`launch.py` reads them; run it once per variant to compare. Train steps are
timed on a fixed device-resident batch after compilation, so the figure is
the model's; the input pipeline (host-side example synthesis, grain threads)
is timed separately.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from common.errors import run_absl  # noqa: E402
from common.train import hostmem, sharding, trainer, xla  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/defocus.py:quick.", lock_config=True)
flags.DEFINE_integer("steps", 5, "Timed train steps (after the compiling one).")
flags.DEFINE_integer("data_batches", 20, "Batches drawn to time the input pipeline.")
flags.DEFINE_float("peak_tflops", 0.0, "The device's peak TFLOP/s in the compute dtype, for MFU (0: not printed).")
flags.DEFINE_string("json_out", "", "Also write the figures (and the device) to this JSON file.")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def bench(config, steps: int, data_batches: int) -> dict:
    trainer.check_run_settings(config)
    task = trainer.build_task(config)
    run = trainer.setup(task, config)
    state = run.fresh_state()
    it = iter(task.train_data(0))
    t0 = time.perf_counter()
    host = [next(it) for _ in range(data_batches)]
    data_s = time.perf_counter() - t0
    batch = sharding.to_global(host[0], run.mesh)
    t0 = time.perf_counter()
    step = run.step.lower(state, batch, run.key, run.frozen).compile()
    state, m = step(state, batch, run.key, run.frozen)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = step(state, batch, run.key, run.frozen)
    jax.block_until_ready(m)
    dt = (time.perf_counter() - t0) / steps
    stats = jax.local_devices()[0].memory_stats() or {}  # None on CPU
    flops = trainer.step_flops(task, run.mesh, state, batch, run.key, run.frozen)
    return {
        "gflop_per_step": flops / 1e9,  # per device, counted on the HLO before compiling (trainer.hlo_flops)
        "peak_memory_gib": stats.get("peak_bytes_in_use", 0) / 2**30 or None,
        "images_per_step": task.images_per_step,
        "first_step_s": compile_s,
        "step_s": dt,
        "steps_per_s": 1 / dt,
        "images_per_s": task.images_per_step / dt,
        "pipeline_images_per_s": data_batches * task.images_per_step / data_s,
    }


def main(argv):
    del argv
    print("args:", " ".join(sys.argv[1:]))
    print(f"devices: {jax.devices()}  cpu cores: {os.cpu_count()}")
    r = bench(FLAGS.config, FLAGS.steps, FLAGS.data_batches)
    print(f"{'img/step':>8} {'compile+1st s':>13} {'step s':>8} {'steps/s':>8} {'img/s':>8} {'pipeline img/s':>15}")
    print(
        f"{r['images_per_step']:8d} {r['first_step_s']:13.2f} {r['step_s']:8.3f} "
        f"{r['steps_per_s']:8.3f} {r['images_per_s']:8.2f} {r['pipeline_images_per_s']:15.1f}"
    )
    ratio = r["pipeline_images_per_s"] / r["images_per_s"]
    print(f"pipeline / model images/s (>1: the model is the bottleneck): {ratio:.2f}")
    achieved = r["gflop_per_step"] / r["step_s"]
    line = f"GFLOP/step (XLA, per device): {r['gflop_per_step']:.1f}   achieved: {achieved:.1f} GFLOP/s"
    if FLAGS.peak_tflops:
        line += f"   MFU: {achieved / (FLAGS.peak_tflops * 1e3):.1%} of {FLAGS.peak_tflops:g} TFLOP/s"
    mem = r["peak_memory_gib"]
    print(line + (f"   peak device memory: {mem:.2f} GiB" if mem else "   peak device memory: n/a on CPU"))
    if FLAGS.json_out:
        r |= {"device": jax.devices()[0].device_kind, "devices": jax.device_count(), "gflop_per_s": achieved}
        with open(FLAGS.json_out, "w") as f:
            json.dump(r, f)


if __name__ == "__main__":
    xla.set_cpu_flags()
    hostmem.reexec_with_tunables()
    run_absl(main)
