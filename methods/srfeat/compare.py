"""Side-by-side crops of SRFeat runs on one image, labelled with each crop's PSNR (Y) and LPIPS.

    python -m methods.srfeat.compare runs/srfeat_m runs/srfeat_if --image ../shared/data/set14/baboon.png \\
        --box 100,100,96 --out runs/srfeat_crops.png [--labels "SRFeat_M,SRFeat_IF"]

The image is the HR reference: it is cropped to a multiple of the scale and
down-sampled with MATLAB bicubic (8-bit) exactly as in `--mode=eval`; each
run's latest generator upscales the whole LR image, then the same box
(y, x, size in HR pixels) is cut from bicubic, every run and the HR image.
The scores are those of the whole image, as in eval/metrics.json.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from common.data import imageio, resize
from common.errors import UserError
from common.quality import evaluation
from common.train import checkpoint
from methods.srfeat import evaluate, model


def upscaler(workdir: str):
    """x-scale function of a run's latest generator (its own config.json), and the scale."""
    run = checkpoint.load_run(workdir, what=workdir, method="srfeat", needs=("g", "g_stats"))
    m = run.config["model"]
    g = model.Generator(channels=m["channels"], blocks=m["blocks"], scale=m["scale"], long_skip=m["long_skip"])
    abstract = jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)), train=False))
    params, stats = model.load_generator(run, abstract["params"], abstract["batch_stats"], what=workdir)
    fn = jax.jit(lambda x: g.apply({"params": params, "batch_stats": stats}, x, train=False))
    return (lambda lr: evaluation.padded(fn, lr, 32, m["scale"])), m["scale"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--image", required=True)
    ap.add_argument("--box", default="", help="y,x,size of the HR crop (default: the centre 128)")
    ap.add_argument("--labels", default="", help="comma-separated names of the runs (default: folder names)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = a.labels.split(",") if a.labels else [os.path.basename(os.path.normpath(r)) for r in a.runs]
    try:
        fns = [upscaler(r) for r in a.runs]
        scale = fns[0][1]
        hr = resize.modcrop(imageio.load_image(a.image), scale)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    lr = resize.quantize(resize.imresize(hr, 1.0 / scale))
    outs = [("bicubic", resize.quantize(resize.imresize(lr, scale)))]
    outs += [(lab, resize.quantize(f(lr))) for lab, (f, _) in zip(labels, fns, strict=True)]
    h, w = hr.shape[:2]
    y, x, s = (int(v) for v in a.box.split(",")) if a.box else ((h - 128) // 2, (w - 128) // 2, 128)
    fig, axes = plt.subplots(1, len(outs) + 1, figsize=(2.6 * (len(outs) + 1), 3.0))
    for ax, (lab, img) in zip(axes, [*outs, ("HR", hr)], strict=True):
        ax.imshow(np.clip(img[y : y + s, x : x + s], 0, 1), interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        if lab != "HR":
            sc = evaluate.y_scores(img, hr, scale)
            lab = f"{lab}\n{sc['psnr']:.2f} dB  LPIPS {sc['lpips']:.3f}"
        ax.set_title(lab, fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
