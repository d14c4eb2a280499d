"""CompressAI's own scale hyperprior trained on our budget, then evaluated on Kodak with real bitstreams.

    python -m venv .venv-compressai && .venv-compressai/bin/pip install 'compressai==1.2.8'
    python benchmarks/compressai_train.py --python .venv-compressai/bin/python --variant quick,plain --seed 0 \
        --out runs/compressai_quick_s0 [--ours runs/quick_plain_s0 ...]

Is the gap between our hyperprior and CompressAI's published bmshj2018-hyperprior curve training budget or
implementation? This trains CompressAI's ``ScaleHyperprior`` (its model, its ``RateDistortionLoss``, its
quantiles under their own auxiliary Adam) with what ``configs/compression.py:<variant>`` gives our model: the
same (N, M), steps, batch, crop size, learning rate and its decay step, gradient clipping and λ, on the same
photos (random crops, flips and 90° rotations of the variant's training folder, ../shared/data/sun_hays80's
``train`` subset). Then it codes every Kodak image with ``compress``/``decompress`` (padded to 64, cropped
back, 8-bit) and writes ``results.json`` in CompressAI's results layout, with the training wall time.
``--ours RUN`` prints our evaluated runs beside it, each as its PSNR gain over JPEG at its own rate (JPEG's
curve from the first run's evaluation), which compares points at slightly different rates fairly.

CompressAI 1.2.8 needs numpy < 2, which this project's JAX does not run with, so it lives in its own virtual
environment: this script (in ours) reads the config and the photo list and runs the training in that
interpreter (``--python``) as a subprocess. What differs by design: our models remove each image's mean colour
(24 bits in the header; ``--config.model.mean_removal=False`` trains the bare model) and compute σ's coding
index in fixed point; CompressAI's scale table, entropy coder and initialisation are its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compressai_worker.py")

# ----------------------------------------------------------------------------- driver (this project's environment)


def spec(variant: str, seed: int, out: str, steps: int = 0, images: str = "", threads: int = 0) -> dict:
    """What the worker needs, from ``configs/compression.py:<variant>``."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from common.data import imageio, pipeline
    from common.errors import ConfigError
    from configs.compression import get_config

    cfg = get_config(variant)
    if cfg.model.prior != "hyperprior" or cfg.loss.distortion != "mse":
        raise ConfigError(f"--variant {variant}: this compares the MSE scale hyperprior only")
    source = pipeline.make_source(cfg.data.train, min_size=cfg.data.crop)
    if not getattr(source, "paths", None):
        raise ConfigError(f"--variant {variant}: its training photos are not a folder (is ../shared/data there?)")
    folder = images or pipeline.shared_data_dir("kodak")
    if not folder:
        raise ConfigError("no evaluation images: give --images or put Kodak under ../shared/data/kodak")
    return {
        "name": f"compressai-bmshj2018-hyperprior-{variant.replace(',', '-')}-s{seed}",
        "what": f"configs/compression.py:{variant}'s budget and photos",
        "seed": seed,
        "threads": threads or os.cpu_count() or 1,
        "n": cfg.model.n,
        "m": cfg.model.m,
        "steps": steps or cfg.total_steps,
        "batch": cfg.batch_size,
        "crop": cfg.data.crop,
        "lr": cfg.optim.lr,
        "aux_lr": cfg.optim.aux_lr,
        "decay_step": int(cfg.optim.decay_at * cfg.total_steps),
        "decay": cfg.optim.decay,
        "clip": cfg.optim.clip,
        "lmbda": cfg.loss.lambda1 / 255.0**2,
        "photos": list(source.paths),
        "eval_images": imageio.list_images(folder),
        "out": os.path.abspath(out),
    }


def beside(result: dict, ours: list[str]) -> str:
    """Markdown: CompressAI's point and our runs', each with its gain over JPEG at its own rate."""
    from methods.compression.evaluate import jpeg_psnr_at

    runs = {
        os.path.basename(os.path.normpath(w)): json.load(open(os.path.join(w, "eval", "metrics.json"))) for w in ours
    }
    jpeg = next(iter(runs.values()))["jpeg_rd"] if runs else None

    def gain(bpp, psnr):
        j = jpeg_psnr_at(jpeg, bpp) if jpeg else None
        return "—" if j is None else f"{psnr - j:+.2f}"

    r = result["results"]
    lines = [
        "| model | bpp | PSNR | over JPEG at that bpp | encode / decode s | train s |",
        "|---|---|---|---|---|---|",
        f"| {result['name']} | {r['bpp'][0]:.3f} | {r['psnr-rgb'][0]:.2f} | {gain(r['bpp'][0], r['psnr-rgb'][0])} | "
        f"{r['encoding_time'][0]:.3f} / {r['decoding_time'][0]:.3f} | {result['train_seconds']:.0f} |",
    ]
    for name, m in runs.items():
        rd = m["rd"]
        lines.append(
            f"| {name} | {rd['bpp']:.3f} | {rd['psnr']:.2f} | {gain(rd['bpp'], rd['psnr'])} | "
            f"{rd.get('encode_seconds', float('nan')):.3f} / {rd.get('decode_seconds', float('nan')):.3f} | |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", required=True, help="the interpreter of an environment with CompressAI installed")
    ap.add_argument("--variant", default="quick,plain", help="configs/compression.py variant whose budget to use")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: one per CPU core)")
    ap.add_argument("--images", default="", help="evaluation folder (default ../shared/data/kodak)")
    ap.add_argument("--steps", type=int, default=0, help="override the variant's steps (a smoke run)")
    ap.add_argument("--ours", nargs="*", default=[], help="our evaluated runs to print beside it")
    a = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from common.errors import ConfigError, run_cli

    def run():
        s = spec(a.variant, a.seed, a.out, a.steps, a.images, a.threads)
        os.makedirs(a.out, exist_ok=True)
        path = os.path.join(a.out, "spec.json")
        with open(path, "w") as f:
            json.dump(s, f, indent=1)
        if not os.path.isfile(os.path.join(a.out, "results.json")):
            check = subprocess.run([a.python, "-c", "import compressai, torch"], capture_output=True, text=True)
            if check.returncode:
                raise ConfigError(
                    f"--python {a.python}: cannot import compressai and torch ({check.stderr.strip()[-300:]})"
                )
            subprocess.run([a.python, WORKER, "train", path], check=True)
        result = json.load(open(os.path.join(a.out, "results.json")))
        print(beside(result, a.ours))

    run_cli(run)


if __name__ == "__main__":
    main()
