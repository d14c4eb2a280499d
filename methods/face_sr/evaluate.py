"""Face SR evaluation (the paper's Tables 1-2 protocol), samples and prediction.

For each high-resolution face (CelebA-HQ 1024 from ../shared/data when
present): LR = MATLAB-bicubic ↓4 (1024 → 256, rounded to 8 bits), then G
and bicubic x4 back to 1024, compared with the true face: RGB PSNR, SSIM and
``sharpness`` = var(Laplacian(Y_out)) / var(Laplacian(Y_true)), a
no-reference-free sharpness proxy (1 = as much fine detail as the truth; bicubic
is well below 1, over-sharpening or noise goes above), and LPIPS (v0.1,
AlexNet; lower is better). The first
``eval.train_count`` faces are the ones the model was trained on (as 256
inputs: the paper's Table 1); the rest are unseen (Table 2). Each group gets
``fd_vgg16`` and ``fd_alex`` of bicubic and of the model against the true
faces: Fréchet distances on ImageNet VGG-16 / AlexNet pooled features
(`common.quality.fd`), offline, not FID and not comparable with published
FIDs. FID itself is computed only with user-supplied Inception-v3 weights
(``eval.inception_weights``, converted by ``python -m common.quality.fid convert``):
then each group also gets ``fid`` of bicubic and of the model against the
true faces (few images: biased upwards, comparable only on the same faces).
"""

from __future__ import annotations

import jax
import numpy as np
from scipy import ndimage

from common.data import imageio, pipeline, resize
from common.quality import evaluation, fd, fid, metrics, validation

FALLBACK_EVAL = "builtin:astronaut+grace_hopper"


def sharpness(out: np.ndarray, ref: np.ndarray) -> float:
    y = lambda im: np.asarray(metrics.rgb_to_y(im))[..., 0]  # noqa: E731
    return float(np.var(ndimage.laplace(y(out))) / max(np.var(ndimage.laplace(y(ref))), 1e-12))


def scores(out, ref) -> dict:
    return {**evaluation.rgb_scores(out, ref), "sharpness": sharpness(out, ref)}


METRICS = ("psnr", "ssim", "sharpness", "lpips")


class Evaluator:
    """Evaluation, samples and prediction, given the generator `upscale(state, lr)`."""

    def __init__(self, config, upscale):
        self.config = config
        self._g = jax.jit(upscale)

    def upscale(self, state, lr: np.ndarray) -> np.ndarray:
        """x4 of one image (reflect-padded to the generator's multiple, output cropped), clipped."""
        return evaluation.padded(lambda x: self._g(state, x), lr, 2**self.config.model.n_down, 4)

    def validator(self) -> validation.Validator:
        """PSNR/SSIM/LPIPS of x4 SR of the validation crops (LR: bicubic, 8 bits)."""

        def pairs():
            hr = validation.crops(self.config, 4 * 2**self.config.model.n_down)
            return {"lr": np.stack([resize.quantize(resize.imresize(h, 0.25)) for h in hr]), "hr": hr}

        return validation.Validator(
            self.config, pairs, lambda state, p: validation.image_scores(self._g(state, p["lr"]), p["hr"])
        )

    def train_samples(self, state, batch) -> np.ndarray:
        rows = []
        for lr, gt in zip(batch["lr0"][:3], batch["gt0"][:3], strict=True):
            rows.append([np.clip(resize.imresize(lr, 4), 0, 1), self.upscale(state, lr), gt])
        return imageio.grid(rows)

    def evaluate(self, state, outdir: str) -> dict:
        ev = self.config.eval
        spec = evaluation.eval_spec(ev.data, ("celeba_hq",), FALLBACK_EVAL)
        (_, source), *_ = pipeline.image_sets(spec)  # the first set
        fid_net = fid.FID(ev.inception_weights) if ev.inception_weights else None
        feats = {g: {"bicubic": [], "model": [], "truth": []} for g in ("train_inputs", "held_out")}
        pooled = {g: fd.Accumulator() for g in feats}  # FD-VGG16 / FD-Alex: offline, no Inception weights

        def score(i, item):
            hr = item["image"]
            if ev.hr_size and hr.shape[:2] != (ev.hr_size, ev.hr_size):
                hr = np.clip(resize.imresize(hr, output_shape=(ev.hr_size, ev.hr_size)), 0, 1)
            hr = resize.modcrop(hr, 4 * 2**self.config.model.n_down)
            lr = resize.quantize(resize.imresize(hr, 0.25))
            bic = resize.quantize(resize.imresize(lr, 4))
            sr = resize.quantize(self.upscale(state, lr))
            group = "train_inputs" if i < ev.train_count else "held_out"
            record = {"image": evaluation.image_name(item), "group": group}
            record.update(bicubic=scores(bic, hr), model=scores(sr, hr))
            for k, img in (("bicubic", bic), ("model", sr), ("truth", hr)):
                pooled[group].add(k, img)
                if fid_net is not None:
                    feats[group][k].append(fid_net.features([img])[0])
            c = min(256, hr.shape[0])
            y0 = (hr.shape[0] - c) // 2
            return record, [x[y0 : y0 + c, y0 : y0 + c] for x in (bic, sr, hr)]

        records, rows = evaluation.score_images(source, score, limit=ev.max_images, num_samples=ev.num_samples)
        results = {"faces": spec, "hr_size": ev.hr_size, "lpips_net": "alex"}
        if fid_net is None:
            results["fid"] = "not computed (set eval.inception_weights; see common/quality/fid.py)"
        for name in ("train_inputs", "held_out"):
            recs = [{k: v for k, v in r.items() if k != "group"} for r in records if r["group"] == name]
            if not recs:
                continue
            results[name] = {
                "num_images": len(recs),
                **evaluation.means(recs, ("bicubic", "model"), METRICS),
                "images": recs,
            }
            for k, d in pooled[name].distances("truth").items():
                results[name][k].update(d)
            if fid_net is not None:
                truth = np.stack(feats[name]["truth"])
                for k in ("bicubic", "model"):
                    results[name][k]["fid"] = fid.feature_distance(np.stack(feats[name][k]), truth)
        evaluation.save_samples(outdir, rows, columns=("bicubic", "model", "true face"))
        return results

    def predict(self, state, input_path: str, output_path: str) -> list[str]:
        """x4 of a face image or a folder (256 → 1024)."""
        return imageio.predict_images(input_path, output_path, lambda img: self.upscale(state, img))
