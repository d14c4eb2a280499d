"""SRFeat evaluation, samples and prediction.

``eval/metrics.json`` follows the SR benchmark protocol: each HR image is
cropped to a multiple of the scale, LR = MATLAB-bicubic down-sampling rounded
to 8 bits, and SR (rounded to 8 bits) is compared with HR on the luma Y
(BT.601) after shaving `scale` pixels on every side. PSNR and SSIM are given
per image and as the set mean, for bicubic up-sampling and for the model,
with LPIPS (v0.1, AlexNet; lower is better) on the RGB images with the same
border shaved.
``eval/samples.png`` rows: bicubic | SRFeat | HR (centre crops).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from common import data, imageio, lpips, metrics, resize

FALLBACK_EVAL = "builtin:grace_hopper"


def eval_spec(config) -> str:
    """The configured evaluation sets, or Set5 + Set14 from ../shared/data, or a builtin photo."""
    if config.eval.data:
        return config.eval.data
    found = [p for p in (data.shared_data_dir("set5"), data.shared_data_dir("set14")) if p]
    return ",".join(found) if found else FALLBACK_EVAL


def y_scores(sr: np.ndarray, hr: np.ndarray, border: int) -> dict:
    """Y-channel PSNR and SSIM, and RGB LPIPS, of one (H, W, 3) pair with `border` pixels shaved."""
    a = metrics.shave(metrics.rgb_to_y(jnp.asarray(sr)[None]), border)
    b = metrics.shave(metrics.rgb_to_y(jnp.asarray(hr)[None]), border)
    crop = (slice(border, -border or None),) * 2
    return {
        "psnr": float(metrics.psnr(a, b)[0]),
        "ssim": float(metrics.ssim(a, b)[0]),
        "lpips": lpips.score(sr[crop], hr[crop]),
    }


def _crop_centre(img, size):
    h, w = img.shape[:2]
    s = min(size, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return img[y : y + s, x : x + s]


class Evaluator:
    def __init__(self, config, nets):
        self.config = config
        self.nets = nets
        self.scale = config.model.scale
        self._g = jax.jit(nets.upscale)

    def upscale(self, state, lr: np.ndarray) -> np.ndarray:
        """G on one LR image of any size (reflect-padded to the bucket, output cropped), clipped to [0, 1]."""
        return imageio.apply_padded(lambda x: self._g(state, x), lr, self.config.eval.bucket, self.scale)

    def train_samples(self, state, frozen, batch) -> np.ndarray:
        del frozen
        rows = []
        for lr, hr in zip(batch["lr"][:3], batch["hr"][:3], strict=True):
            bic = np.clip(resize.imresize(lr, self.scale), 0, 1)
            rows.append([bic, self.upscale(state, lr), hr])
        return imageio.grid(rows)

    def evaluate(self, state, frozen, outdir: str) -> dict:
        del frozen
        s = self.scale
        results = {"scale": s, "border": s, "channel": "Y (BT.601)", "lpips_net": "alex", "sets": {}}
        rows = []
        for name, source in data.image_sets(eval_spec(self.config)):
            per = []
            for i in range(len(source)):
                item = source[i]
                hr = resize.modcrop(item["image"], s)
                lr = resize.quantize(resize.imresize(hr, 1.0 / s))
                bic = resize.quantize(resize.imresize(lr, s))
                sr = resize.quantize(self.upscale(state, lr))
                per.append(
                    {
                        "image": os.path.basename(item["name"]),
                        "bicubic": y_scores(bic, hr, s),
                        "model": y_scores(sr, hr, s),
                    }
                )
                if len(rows) < self.config.eval.num_samples:
                    rows.append([_crop_centre(x, 192) for x in (bic, sr, hr)])
            summary = {
                k: {m: float(np.mean([p[k][m] for p in per])) for m in ("psnr", "ssim", "lpips")}
                for k in ("bicubic", "model")
            }
            results["sets"][name] = {
                "num_images": len(per),
                **summary,
                "psnr_gain_over_bicubic": summary["model"]["psnr"] - summary["bicubic"]["psnr"],
                "images": per,
            }
        if rows:
            imageio.save_png(os.path.join(outdir, "samples.png"), imageio.grid(rows))
        return results

    def predict(self, state, frozen, input_path: str, output_path: str) -> list[str]:
        """Upscales an image (→ PNG file) or every image of a folder (→ PNGs under a folder) by the scale."""
        del frozen
        return imageio.predict_images(input_path, output_path, lambda img: self.upscale(state, img))
