"""Peak memory and time of decoding and encoding large images, whole against in windows (the codec's default).

    python benchmarks/codec_memory.py [--variant ''] [--sizes 2048x2048,3840x2160,7680x4320] [--kodak 6]

A header may announce up to 33.5 megapixels, and a flat image of that size is a file of a few kilobytes. For
each size, a fresh subprocess builds the variant's model (fresh weights: memory and time do not depend on
training), packs the all-zero symbols of that size into a valid bitstream (the file a flat image, or a forger,
gives) and decodes it; printed: the file's bytes, the decode's wall seconds and the process's peak RSS.
`--whole` sizes are also decoded in one piece, for comparison (only sizes that fit the machine).
`--encode` sizes are also encoded, in windows and (the `--whole` ones) whole, from a synthetic photo-like
image (a colour gradient with noise; the float32 image itself is 12 bytes a pixel of the peak).
`--kodak N` decodes the first N Kodak images (../shared/data/kodak) whole and windowed with a small window
(`--kodak_tile`) and prints how many pixels differ and by how much.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def codec(variant: str, tile: int):
    import jax

    from configs.compression import get_config
    from methods.compression import codec as mcodec
    from methods.compression import model as mc

    cfg = get_config(variant)
    nets = mc.Nets(cfg)
    params = mc.init_state(jax.random.key(0), nets, cfg).params
    return mcodec.Codec(nets.model, params, decode_tile=tile, encode_tile=tile, whole_pixels=0), cfg


def child_encode(variant: str, height: int, width: int, tile: int) -> dict:
    import numpy as np

    cd, _ = codec(variant, tile)
    img = np.empty((height, width, 3), np.float32)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.1, 0.9, width, dtype=np.float32)
    for r in range(0, height, 256):  # in bands: no full-size float64 temporaries
        band = img[r : r + 256]
        band[:] = ramp[None, :, None] * np.float32([1.0, 0.8, 0.6])
        band += rng.normal(0.0, 0.05, band.shape).astype(np.float32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    blob = cd.encode_bytes(img)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"bytes": len(blob), "seconds": seconds, "peak_rss_gb": peak / 2**20, "before_gb": base / 2**20}


def child(variant: str, height: int, width: int, tile: int) -> dict:
    import numpy as np

    cd, cfg = codec(variant, tile)
    m = cd.model.multiple
    hp, wp = height + (-height) % m, width + (-width) % m
    syms = {"y": np.zeros((1, hp // 16, wp // 16, cfg.model.m), np.int32), "dc": np.full((1, 3), 128, np.int32)}
    if cd.model.hyper:
        syms["z"] = np.zeros((1, hp // 64, wp // 64, cfg.model.n), np.int32)
    blob = cd.pack(syms, height, width)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = cd.decode(blob)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert out.shape == (height, width, 3)
    return {"bytes": len(blob), "seconds": seconds, "peak_rss_gb": peak / 2**20, "before_gb": base / 2**20}


def kodak(variant: str, n: int, tile: int) -> None:
    import numpy as np

    from common.data import imageio, pipeline

    folder = pipeline.shared_data_dir("kodak")
    if not folder:
        print("kodak: ../shared/data/kodak is absent; skipped")
        return
    whole, _ = codec(variant, 0)
    tiled, _ = codec(variant, tile)
    total = differ = worst = 0
    for path in imageio.list_images(folder)[:n]:
        img = imageio.load_image(path)
        syms = whole.symbols(img)
        a = whole.reconstruct(syms, *img.shape[:2]).astype(int)
        b = tiled.reconstruct(syms, *img.shape[:2]).astype(int)
        total += a.size
        differ += int((a != b).sum())
        worst = max(worst, int(np.abs(a - b).max()))
    print(
        f"kodak, first {n} images, window {tile} px vs whole: {differ} of {total} values differ "
        f"({differ / total:.2e}), by at most {worst} level(s)"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="")
    p.add_argument("--sizes", default="2048x2048,3840x2160,7680x4320")
    p.add_argument("--whole", default="2048x2048", help="sizes also decoded in one piece ('' for none)")
    p.add_argument("--encode", default="", help="sizes also encoded (e.g. 7680x4320; '' for none)")
    p.add_argument("--tile", type=int, default=0, help="decode window in pixels (0: the codec's default)")
    p.add_argument("--kodak", type=int, default=6)
    p.add_argument("--kodak_tile", type=int, default=256)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    from methods.compression import codec as mcodec

    tile = a.tile or mcodec.DECODE_TILE
    if a.child:
        h, w, t, enc = (int(v) for v in a.child.split(","))
        print(json.dumps((child_encode if enc else child)(a.variant, h, w, t)))
        return
    from common.train import xla

    xla.set_cpu_flags()
    print(
        f"variant {a.variant!r} (fresh weights), windows of {tile} px + {mcodec.DECODE_OVERLAP} px overlap "
        f"(decode) / {mcodec.ENCODE_OVERLAP} px (encode)"
    )
    print("| size | mode | file bytes | seconds | peak RSS GB |\n|---|---|---|---|---|")
    runs = [(s, tile, "decode, windows", 0) for s in a.sizes.split(",") if s]
    runs += [(s, 0, "decode, whole", 0) for s in a.whole.split(",") if s]
    encoded = [s for s in a.encode.split(",") if s]
    runs += [(s, tile, "encode, windows", 1) for s in encoded]
    runs += [(s, 0, "encode, whole", 1) for s in a.whole.split(",") if s and encoded]
    for size, t, mode, enc in runs:
        w, h = (int(v) for v in size.split("x"))  # WIDTHxHEIGHT
        r = subprocess.run(
            [sys.executable, __file__, "--variant", a.variant, "--child", f"{h},{w},{t},{enc}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if r.returncode:
            print(f"| {w}x{h} | {mode} | - | - | failed: {(r.stderr.strip().splitlines() or ['?'])[-1][:80]} |")
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"| {w}x{h} | {mode} | {res['bytes']} | {res['seconds']:.1f} | {res['peak_rss_gb']:.2f} |")
    if a.kodak:
        kodak(a.variant, a.kodak, a.kodak_tile)


if __name__ == "__main__":
    main()
