"""Writes a fixed synthetic DMENet dataset: image PNG, 16-bit label PNG and σ map (.npy) per pair.

python -m methods.defocus.dataset --out DIR --num 1000 [--variant quick] [--seed 0]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from common.data import imageio, pipeline
from methods.defocus.data import synthetic_example


def write_dataset(out: str, num: int, cfg, seed: int) -> None:
    """Writes `num` synthetic pairs: NNNNN_image.png, NNNNN_label16.png, NNNNN_sigma.npy."""
    source = pipeline.make_source(cfg.train, min_size=cfg.crop + 2 * cfg.lens.margin)
    os.makedirs(out, exist_ok=True)
    from tqdm.auto import tqdm

    for i in tqdm(range(num), desc="writing"):
        ex = synthetic_example(np.random.default_rng([seed, i]), source, cfg)
        imageio.save_png(os.path.join(out, f"{i:05d}_image.png"), ex["image"])
        imageio.save_png(os.path.join(out, f"{i:05d}_label16.png"), ex["label"][..., 0], bits=16)
        np.save(
            os.path.join(out, f"{i:05d}_sigma.npy"),
            ex["label"][..., 0] * (cfg.lens.coc_max - 1) / 4,
        )


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m methods.defocus.dataset",
        description="Write a fixed synthetic defocus dataset.",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", default="", help="configs/defocus.py variant, e.g. 'quick'")
    a = p.parse_args(argv)
    from configs import defocus as defocus_config

    cfg = defocus_config.get_config(a.variant).data
    write_dataset(a.out, a.num, cfg, a.seed)
    print(f"wrote {a.num} pairs to {a.out}")


if __name__ == "__main__":
    main()
