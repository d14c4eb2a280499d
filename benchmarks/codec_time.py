"""Encode and decode time of the learned codec on one image (Kodak's first when ../shared/data exists).

    python benchmarks/codec_time.py --workdir runs/comp_fi          # a trained run
    python benchmarks/codec_time.py --variant quick                 # fresh weights of a config variant
    python benchmarks/codec_time.py --variant ""                    # the default (CompressAI-sized) model
    python benchmarks/codec_time.py --variant "" --compressai .venv-compressai/bin/python --rounds 5

Encode = analysis (+ hyper-analysis/synthesis) and range coding to bytes;
decode = range decoding and synthesis back to 8 bits. Each is run `--repeat`
times after one warm-up call (which compiles for that size); the median is
printed, with the analysis networks' share of encode, and the JPEG (Pillow)
time at the same bpp for reference.

``--compressai PYTHON`` (an interpreter with CompressAI installed; see `compressai_worker.py`) also times
CompressAI's ``compress``/``decompress`` of its own scale hyperprior at the same (N, M), random weights after
``update()``, on the same image with all cores, in a server process; the four steps (our encode and decode,
theirs) take turns in `--rounds` interleaved rounds (`benchmarks/timing.py`), so a drifting machine meets all
of them alike, and the ratios CompressAI / ours are taken within rounds.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import subprocess  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import timing  # noqa: E402  (benchmarks/timing.py)

from common.data import imageio, pipeline  # noqa: E402
from common.train import xla  # noqa: E402
from configs import compression as cc  # noqa: E402
from methods.compression import codec as mcodec  # noqa: E402
from methods.compression import evaluate as ce  # noqa: E402
from methods.compression import model as mc  # noqa: E402

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compressai_worker.py")


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
    p.add_argument("--compressai", default="", help="a Python with CompressAI: time its codec beside ours")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds with --compressai")
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
    if a.compressai:
        versus_compressai(cd, img, blob, name, a.compressai, a.rounds)


def versus_compressai(cd, img, blob, image_path: str, python: str, rounds: int) -> None:
    """Our encode/decode against CompressAI's of its ScaleHyperprior(N, M), interleaved (see the docstring)."""
    from common.errors import ConfigError

    if cd.prior != "hyperprior" or not os.path.isfile(image_path):
        raise ConfigError("--compressai compares the scale hyperprior on an image file (e.g. Kodak's first)")
    server = subprocess.Popen(
        [python, WORKER, "serve", str(cd.model.n), str(cd.model.m), image_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    first = server.stdout.readline().split()
    if not first or first[0] != "ready":
        server.kill()
        raise ConfigError(f"--compressai {python}: its CompressAI server did not start (see its error above)")

    def theirs(cmd):
        def step():
            server.stdin.write(cmd + "\n")
            server.stdin.flush()
            return server.stdout.readline()

        return step

    steps = {
        "ours encode": lambda: cd.encode_bytes(img),
        "ours decode": lambda: cd.decode(blob),
        "CompressAI encode": theirs("enc"),
        "CompressAI decode": theirs("dec"),
    }
    times = timing.interleaved(steps, rounds, settle=1)
    server.stdin.write("quit\n")
    server.stdin.flush()
    server.wait(timeout=60)
    h, w = img.shape[:2]
    print(f"CompressAI ScaleHyperprior(N={cd.model.n}, M={cd.model.m}), random weights: {first[1]} bytes "
          f"= {int(first[1]) * 8 / (h * w):.3f} bpp; {rounds} interleaved rounds, medians:")  # fmt: skip
    for what in ("encode", "decode"):
        med, lo, hi = timing.ratio(times[f"CompressAI {what}"], times[f"ours {what}"])
        print(
            f"  {what}: ours {np.median(times[f'ours {what}']):.3f} s, CompressAI "
            f"{np.median(times[f'CompressAI {what}']):.3f} s, CompressAI / ours {med:.2f}x (rounds {lo:.2f}-{hi:.2f})"
        )


if __name__ == "__main__":
    from common.errors import run_cli

    xla.set_cpu_flags()
    run_cli(main)
