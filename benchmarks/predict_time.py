"""Wall time of --mode=predict on one generated image of a given size (freshly initialised weights).

    python benchmarks/predict_time.py --method tone --variant quick --size 4000x3000
    python benchmarks/predict_time.py --method srfeat --variant quick --size 128x128

Times the whole predict call (decode, model, encode) twice: the first includes
compilation for that size, the second is the steady-state figure.
"""

import argparse
import importlib
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from common.train import trainer  # noqa: E402
from methods import METHODS  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--variant", default="")
    p.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT of the input")
    a = p.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    config = importlib.import_module(f"configs.{a.method}").get_config(a.variant)
    task = trainer.build_task(config)
    state = jax.jit(task.init)(jax.random.key(0))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.png"), os.path.join(tmp, "out.png")
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(src)
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            task.predict(state, src, dst)
            times.append(time.perf_counter() - t0)
        with Image.open(dst) as im:
            out = im.size
    mp = w * h / 1e6
    print(f"method {a.method}:{a.variant or 'default'}  devices {jax.devices()}  cpu cores {os.cpu_count()}")
    print(f"input {w}x{h} ({mp:.1f} MP) -> output {out[0]}x{out[1]}")
    print(f"first call (with compilation) {times[0]:.2f} s, second call {times[1]:.2f} s ({mp / times[1]:.2f} MP/s)")


if __name__ == "__main__":
    from common.errors import run_cli
    from common.train import hostmem, xla

    xla.set_cpu_flags()
    hostmem.reexec_with_tunables()
    run_cli(main)
