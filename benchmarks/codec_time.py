"""Encode and decode time of the learned codec on one image (Kodak's first when ../shared/data exists).

    python benchmarks/codec_time.py --workdir runs/comp_fi          # a trained run
    python benchmarks/codec_time.py --variant quick                 # fresh weights of a config variant
    python benchmarks/codec_time.py --variant ""                    # the default (CompressAI-sized) model

Encode = analysis (+ hyper-analysis/synthesis) and range coding to bytes;
decode = range decoding and synthesis back to 8 bits. Each is run `--repeat`
times after one warm-up call (which compiles for that size); the median is
printed, with the analysis networks' share of encode, and the JPEG (Pillow)
time at the same bpp for reference.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from common.data import imageio, pipeline  # noqa: E402
from common.train import xla  # noqa: E402
from configs import compression as cc  # noqa: E402
from methods.compression import codec as mcodec  # noqa: E402
from methods.compression import evaluate as ce  # noqa: E402
from methods.compression import model as mc  # noqa: E402


def _median_time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="", help="a trained compression run (else fresh weights of --variant)")
    p.add_argument("--variant", default="quick")
    p.add_argument("--image", default="", help="an image file (default: Kodak's first, else builtin astronaut)")
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    if a.workdir:
        cd, what = mcodec.load_codec(a.workdir), a.workdir
    else:
        cfg = cc.get_config(a.variant)
        nets = mc.Nets(cfg)
        cd, what = mcodec.Codec(nets.model, mc.init_state(jax.random.key(0), nets, cfg).params), f"fresh {a.variant!r}"
    if a.image:
        img, name = imageio.load_image(a.image), a.image
    else:
        kodak = pipeline.shared_data_dir("kodak")
        src = pipeline.FolderSource(kodak) if kodak else pipeline.BuiltinSource("astronaut")
        img, name = src[0]["image"], (src.paths[0] if kodak else "builtin astronaut")
    img = imageio.to_uint8(img).astype(np.float32) / 255.0
    h, w = img.shape[:2]
    blob, recon, _ = cd.encode(img)
    t_enc = _median_time(lambda: cd.encode_bytes(img), a.repeat)
    t_net = _median_time(lambda: cd.symbols(img), a.repeat)
    t_dec = _median_time(lambda: cd.decode(blob), a.repeat)
    bpp = len(blob) * 8 / (h * w)
    q = ce.matched_quality(imageio.to_uint8(img), bpp)
    t_jpeg = _median_time(lambda: ce.jpeg_fn(q)(imageio.to_uint8(img)), a.repeat)
    print(
        f"model {what} ({cd.prior}, N={cd.model.n}, M={cd.model.m})  "
        f"devices {jax.devices()}  cpu cores {os.cpu_count()}"
    )
    psnr = ce.psnr_u8(recon, imageio.to_uint8(img))
    print(f"image {name} {w}x{h}: {len(blob)} bytes = {bpp:.3f} bpp, PSNR {psnr:.2f} dB")
    print(f"encode {t_enc:.3f} s (of which the analysis networks {t_net:.3f} s)  decode {t_dec:.3f} s")
    print(f"JPEG q{q} (same bpp) encode+decode {t_jpeg:.3f} s")


if __name__ == "__main__":
    from common.errors import run_cli

    xla.set_cpu_flags()
    run_cli(main)
