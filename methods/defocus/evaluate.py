"""DMENet evaluation, samples and prediction.

Evaluation (``--mode=eval`` and the end of training) writes ``eval/metrics.json``:

* ``synthetic``: MSE / MAE of the σ-map on a held-out synthetic set (other
  images and seeds than training) for B, for a constant predictor (the mean
  training label) and for a no-learning blur measure (log local Laplacian
  energy, mapped to σ by a least-squares line fitted on training samples);
* ``masked``: blur detection on photos with binary masks (the disk-PSF proxy
  by default, or a CUHK-style folder): pixel accuracy at ``eval.threshold``
  and average precision, for B and the blur measure, with ``pr_curve.png``;
* ``eval/samples.png``: input | ground truth | blur measure | B rows.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from common.data import imageio, pipeline
from common.quality import evaluation, metrics, validation
from methods.defocus import data as defocus_data

# ----------------------------------------------------------------------------- no-learning baseline


def blur_measure(img: np.ndarray, window: float = 3.0) -> np.ndarray:
    """Sharpness feature per pixel: log of the locally averaged |Laplacian| of the grey image."""
    gray = img.mean(axis=-1)
    lap = np.abs(ndimage.laplace(ndimage.gaussian_filter(gray, 0.5)))
    return np.log(ndimage.gaussian_filter(lap, window) + 1e-4)


def fit_blur_measure(examples) -> tuple[float, float]:
    """Least-squares line label ≈ a·measure + b over training examples."""
    xs = np.concatenate([blur_measure(e["image"]).ravel() for e in examples])
    ys = np.concatenate([e["label"][..., 0].ravel() for e in examples])
    a, b = np.polyfit(xs, ys, 1)
    return float(a), float(b)


def apply_blur_measure(img, ab):
    return np.clip(ab[0] * blur_measure(img) + ab[1], 0.0, 1.0)


# ----------------------------------------------------------------------------- evaluator


class Evaluator:
    """Evaluation, samples and prediction of B, given its test-time function `predict_maps(state, images)`."""

    def __init__(self, config, predict_maps):
        self.config = config
        self._predict = jax.jit(predict_maps)
        self._sources = {}

    def _source(self, which: str):
        """The eval or train image source, built (and decoded) once per evaluator."""
        if which not in self._sources:
            cfg = self.config.eval.source if which == "eval" else self.config.data.train
            lens = self.config.data.lens
            self._sources[which] = pipeline.make_source(cfg, min_size=self.config.eval.crop + 2 * lens.margin)
        return self._sources[which]

    def maps(self, state, images: np.ndarray) -> np.ndarray:
        bs = self.config.eval.batch_size
        out = []
        for i in range(0, len(images), bs):
            out.append(np.asarray(self._predict(state, jnp.asarray(images[i : i + bs]))))
        return np.concatenate(out)

    def whole_map(self, state, img: np.ndarray) -> np.ndarray:
        """(H, W) map of one image of any size ≥ 16 (reflect-padded to a multiple of 16, cropped back; a large one
        in overlapping windows, `eval.tile`)."""
        e = self.config.eval
        fn = lambda x: self.maps(state, x)  # noqa: E731
        return evaluation.padded(fn, img, 16, mode="reflect", tile=e.tile, overlap=e.tile_overlap)[..., 0]

    def train_samples(self, state, batch) -> np.ndarray:
        x, y = batch["syn_image"][:3], batch["syn_label"][:3]
        p = np.asarray(self._predict(state, jnp.asarray(x)))
        rows = [[x[i], y[i, ..., 0], p[i, ..., 0]] for i in range(len(x))]
        if "masked_image" in batch:
            xm, mm = batch["masked_image"][:3], batch["masked_mask"][:3]
            pm = np.asarray(self._predict(state, jnp.asarray(xm)))
            rows += [[xm[i], mm[i, ..., 0], pm[i, ..., 0]] for i in range(len(xm))]
        return imageio.grid(rows)

    def validator(self) -> validation.Validator:
        """MSE and MAE of the σ maps (÷ σ_max) of synthetic crops rendered from the validation photos."""

        def pairs():
            dcfg = self._eval_cfg()
            src = validation.photos(self.config)
            n = int(self.config.eval.val_images)
            ex = [
                defocus_data.synthetic_example(
                    np.random.default_rng([self.config.eval.seed, 7, i]), src, dcfg, photo=i % len(src)
                )
                for i in range(n)
            ]
            return {"x": np.stack([e["image"] for e in ex]), "y": np.stack([e["label"] for e in ex])}

        def score(state, p):
            err = self.maps(state, p["x"]) - p["y"]
            return {"mse": float(np.mean(err**2)), "mae": float(np.mean(np.abs(err)))}

        return validation.Validator(self.config, pairs, score)

    # -- held-out sets
    def _eval_cfg(self):
        c = self.config.data.copy_and_resolve_references()
        with c.unlocked():
            c.crop = self.config.eval.crop
        return c

    def synthetic_set(self):
        """`eval.num_synthetic` crops, crop i from photo i mod (number of photos): every photo used alike."""
        dcfg = self._eval_cfg()
        source = self._source("eval")
        seed = self.config.eval.seed
        return [
            defocus_data.synthetic_example(np.random.default_rng([seed, i]), source, dcfg, photo=i % len(source))
            for i in range(self.config.eval.num_synthetic)
        ]

    def photo_names(self) -> list[str]:
        source = self._source("eval")
        return [evaluation.image_name(source[i]) for i in range(len(source))]

    def masked_set(self):
        dcfg = self._eval_cfg()
        if dcfg.masked.kind == "folder":
            folder = defocus_data.MaskedFolder(dcfg.masked.path, invert=dcfg.masked.invert)
            out = []
            for i in range(len(folder)):  # whole images, padded to a multiple of 16
                img, mask = folder.load(i)
                out.append({"image": img, "mask": mask[..., None]})
            return out, "folder:" + dcfg.masked.path
        source = self._source("eval")
        seed = self.config.eval.seed + 1
        out = [
            defocus_data.proxy_real_example(np.random.default_rng([seed, i]), source, dcfg, photo=i % len(source))
            for i in range(self.config.eval.num_masked)
        ]
        return out, "proxy (disk PSF + noise + JPEG)"

    def _train_reference(self, n=32):
        dcfg = self._eval_cfg()
        source = self._source("train")
        fn = lambda rng: defocus_data.synthetic_example(rng, source, dcfg)
        return pipeline.fixed_set(fn, n, self.config.seed + 777)

    def evaluate(self, state, outdir: str) -> dict:
        train_ref = self._train_reference()
        const = float(np.mean([e["label"].mean() for e in train_ref]))
        ab = fit_blur_measure(train_ref)

        syn = self.synthetic_set()
        names = self.photo_names()
        photos = np.arange(len(syn)) % len(names)  # the photo each crop came from: the bootstrap's groups
        x = np.stack([e["image"] for e in syn])
        y = np.stack([e["label"] for e in syn])
        pred = self.maps(state, x)
        meas = np.stack([apply_blur_measure(im, ab) for im in x])[..., None]
        per_crop = {
            k: ((np.asarray(v, np.float64) - y) ** 2).mean(axis=(1, 2, 3))
            for k, v in (("model", pred), ("blur_measure", meas), ("constant", const))
        }  # per crop, in float64 (so that a mean and its interval come from the same numbers)
        maes = {
            "model": np.abs(pred - y).mean(),
            "blur_measure": np.abs(meas - y).mean(),
            "constant": np.abs(const - y).mean(),
        }
        syn_results = {"num_images": len(syn), "num_photos": len(names), "photos": names}
        for k, v in per_crop.items():
            syn_results[k] = {
                "mse": float(v.mean()),
                "mse_ci95": metrics.bootstrap_mean_ci(v, photos),
                "mae": float(maes[k]),
            }
        syn_results["constant"]["value"] = const
        syn_results["blur_measure"]["fit"] = list(ab)
        diff = per_crop["model"] - per_crop["blur_measure"]  # paired, crop by crop
        syn_results["model_minus_blur_measure"] = {
            "mse": float(diff.mean()),
            "mse_ci95": metrics.bootstrap_mean_ci(diff, photos),
            "relative": float(diff.mean() / per_crop["blur_measure"].mean()),
        }
        syn_results["model_beats_blur_measure"] = syn_results["model_minus_blur_measure"]["mse_ci95"][1] < 0
        syn_results["model_beats_constant"] = syn_results["model"]["mse"] < syn_results["constant"]["mse"]
        results = {"synthetic": syn_results}

        masked, kind = self.masked_set()
        per_image = [[], [], []]
        for e in masked:
            per_image[0].append(self.whole_map(state, e["image"]).ravel())
            per_image[1].append(apply_blur_measure(e["image"], ab).ravel())
            per_image[2].append(e["mask"][..., 0].ravel())
        scores, meas_scores, labels = map(np.concatenate, per_image)
        t = self.config.eval.threshold
        results["masked"] = {
            "set": kind,
            "num_images": len(masked),
            "positive_fraction": float(labels.mean()),
            "threshold": t,
            "model": {
                "accuracy": float(np.mean((scores > t) == (labels > 0.5))),
                "ap": metrics.average_precision(scores, labels),
            },
            "blur_measure": {
                "accuracy": float(np.mean((meas_scores > t) == (labels > 0.5))),
                "ap": metrics.average_precision(meas_scores, labels),
            },
            "model_minus_blur_measure_ap_ci95": _ap_difference_ci(
                per_image, 0 if kind.startswith("folder") else len(names)
            ),
        }
        self._plots(outdir, scores, meas_scores, labels, x, y, meas, pred)
        return results

    def _plots(self, outdir, scores, meas_scores, labels, x, y, meas, pred):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.5, 4))
        for name, s in (("DMENet (B)", scores), ("blur measure", meas_scores)):
            p, r, _ = metrics.precision_recall(s, labels)
            ax.plot(r, p, label=f"{name}  AP={metrics.average_precision(s, labels):.3f}")
        ax.axhline(labels.mean(), color="gray", ls=":", label="chance")
        ax.set(
            xlabel="recall",
            ylabel="precision",
            title="blur detection (masked set)",
            xlim=(0, 1),
            ylim=(0, 1.02),
        )
        ax.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "pr_curve.png"), dpi=120)
        plt.close(fig)
        n = min(6, len(x))
        evaluation.save_samples(
            outdir,
            [[x[i], y[i, ..., 0], meas[i, ..., 0], pred[i, ..., 0]] for i in range(n)],
            columns=("input", "true σ map", "blur measure", "DMENet"),
            map_range=(defocus_data.sigma_max(self.config.data.lens), "σ (pixels)"),
        )

    # -- prediction
    def predict(self, state, input_path: str, output_path: str) -> list[str]:
        """Defocus map(s) of an image or a folder: the colour-mapped map (in the output's format) and beside it
        NAME_raw16.png, σ/7 as a 16-bit PNG."""
        import matplotlib

        pairs = imageio.predict_pairs(input_path, output_path)
        cmap = matplotlib.colormaps["inferno"]
        written = []
        for src, dst in imageio.progress(pairs, "predict"):
            img = imageio.load_image(src)
            h, w = img.shape[:2]
            if min(h, w) < 16:
                raise imageio.ImageError(f"{src}: image is {h}x{w}; DMENet needs at least 16x16 pixels")
            m = self.whole_map(state, img)
            imageio.save_image(dst, cmap(m)[..., :3])
            raw = os.path.splitext(dst)[0] + "_raw16.png"
            imageio.save_png(raw, m, bits=16)
            written += [dst, raw]
        return written


def _ap_difference_ci(per_image, n_photos: int, n: int = 300, stride: int = 4, seed: int = 0) -> list[float]:
    """95 % bootstrap interval of AP(model) − AP(blur measure), resampling whole photos (image i of the proxy set
    is from photo i mod `n_photos`; 0: every image its own group), on every `stride`-th pixel for speed."""
    scores, meas, labels = ([a[::stride] for a in arrays] for arrays in per_image)
    groups = np.arange(len(labels)) % n_photos if n_photos else np.arange(len(labels))
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        pick = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        lab = np.concatenate([labels[i] for i in pick])
        diffs.append(
            metrics.average_precision(np.concatenate([scores[i] for i in pick]), lab)
            - metrics.average_precision(np.concatenate([meas[i] for i in pick]), lab)
        )
    return [float(v) for v in np.percentile(diffs, [2.5, 97.5])]
