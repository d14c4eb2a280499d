"""SRFeat evaluation, samples and prediction.

``eval/metrics.json`` follows the SR benchmark protocol: each HR image is
cropped to a multiple of the scale, LR = MATLAB-bicubic down-sampling rounded
to 8 bits, and SR (rounded to 8 bits) is compared with HR on the luma Y
(BT.601) after shaving `scale` pixels on every side. PSNR and SSIM are given
per image and as the set mean, for bicubic up-sampling and for the model,
with LPIPS (v0.1, AlexNet; lower is better) on the RGB images with the same
border shaved. ``fd`` holds FD-VGG16 and FD-Alex (`common.quality.fd`: Fréchet
distances on ImageNet pooled features; not FID) of bicubic and of the model
against HR, over every evaluated image together.
``eval/samples.png`` rows: bicubic | SRFeat | HR (centre crops).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from common.data import imageio, resize
from common.quality import evaluation, fd, lpips, metrics, validation

FALLBACK_EVAL = "builtin:grace_hopper"  # not a training image
SHARED_SETS = ("set5", "set14")
METRICS = ("psnr", "ssim", "lpips")


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
    """Evaluation, samples and prediction, given the test-time generator `upscale(state, lr)`."""

    def __init__(self, config, upscale):
        self.config = config
        self.scale = config.model.scale
        self._g = jax.jit(upscale)

    def upscale(self, state, lr: np.ndarray) -> np.ndarray:
        """G on one LR image of any size (reflect-padded to the bucket, output cropped; a large one in
        overlapping tiles, `eval.tile`), clipped to [0, 1]."""
        e = self.config.eval
        return evaluation.padded(
            lambda x: self._g(state, x), lr, e.bucket, self.scale, tile=e.tile, overlap=e.tile_overlap
        )

    def validator(self) -> validation.Validator:
        """PSNR/SSIM/LPIPS (RGB) of x{scale} SR of the validation crops (LR: bicubic, 8 bits)."""
        s = self.scale

        def pairs():
            hr = validation.crops(self.config, s)
            return {"lr": np.stack([resize.quantize(resize.imresize(h, 1.0 / s)) for h in hr]), "hr": hr}

        return validation.Validator(
            self.config, pairs, lambda state, p: validation.image_scores(self._g(state, p["lr"]), p["hr"])
        )

    def train_samples(self, state, batch) -> np.ndarray:
        rows = []
        for lr, hr in zip(batch["lr"][:3], batch["hr"][:3], strict=True):
            bic = np.clip(resize.imresize(lr, self.scale), 0, 1)
            rows.append([bic, self.upscale(state, lr), hr])
        return imageio.grid(rows)

    def evaluate(self, state, outdir: str) -> dict:
        s = self.scale
        results = {"scale": s, "border": s, "channel": "Y (BT.601)", "lpips_net": "alex", "sets": {}}
        pooled = fd.Accumulator()  # over every evaluated image: a distribution of 5 images says little

        def score(i, item):
            hr = resize.modcrop(item["image"], s)
            lr = resize.quantize(resize.imresize(hr, 1.0 / s))
            bic = resize.quantize(resize.imresize(lr, s))
            sr = resize.quantize(self.upscale(state, lr))
            record = {
                "image": evaluation.image_name(item),
                "bicubic": y_scores(bic, hr, s),
                "model": y_scores(sr, hr, s),
            }
            for k, img in (("bicubic", bic), ("model", sr), ("hr", hr)):
                pooled.add(k, img)
            return record, [_crop_centre(x, 192) for x in (bic, sr, hr)]

        rows = []
        least = lpips.MIN_SIDE["alex"] + 3 * s  # after the modcrop (up to s - 1) and the shave (s a side)
        for name, source in evaluation.eval_sets(self.config.eval.data, SHARED_SETS, FALLBACK_EVAL, least):
            per, set_rows = evaluation.score_images(
                source, score, num_samples=self.config.eval.num_samples - len(rows), desc=f"eval {name}"
            )
            rows += set_rows
            summary = evaluation.means(per, ("bicubic", "model"), METRICS)
            results["sets"][name] = {
                "num_images": len(per),
                **summary,
                "psnr_gain_over_bicubic": summary["model"]["psnr"] - summary["bicubic"]["psnr"],
                "images": per,
            }
        results["fd"] = {"images": "every evaluated image", **pooled.distances("hr")}
        evaluation.save_samples(outdir, rows, columns=("bicubic", "SRFeat", "ground truth"))
        return results

    def predict(self, state, input_path: str, output_path: str) -> list[str]:
        """Upscales an image (→ PNG file) or every image of a folder (→ PNGs under a folder) by the scale."""
        return imageio.predict_images(input_path, output_path, lambda img: self.upscale(state, img))
