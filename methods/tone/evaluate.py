"""Tone enhancement evaluation, samples and prediction.

No retouched ground truth exists, so evaluation degrades held-out real photos
(Kodak from ../shared/data when present, else builtin grace_hopper) by a
known random tone curve (`common.data.degrade.random_tone_curve`: dark / low
contrast / desaturated, seeded per image) and measures, against the original:

* PSNR, SSIM, LPIPS (v0.1, AlexNet) and mean ΔE (CIE76 in CIELAB) for the
  input x, the fixed algorithm A(x) and the model G(x); also PSNR(G(x), A(x));
* ``inverse_mse``: MSE(C(G(x)), x), inverse consistency, with the run's own C
  or, with ``eval.inverse_from=WORKDIR``, with the C of another run, so that
  ablations can be compared with one fixed C;
* ``halo``: mean |hp(L_out) − hp(L_orig)| over the band within 8 px of the
  original's strong edges (Sobel magnitude above its 90th percentile), where
  L is CIELAB lightness / 100 and hp(L) = L − Gaussian(L, σ = 6). It is 0
  when the output's local contrast around edges matches the original; halos
  and over-sharpening raise it.

``eval/samples.png`` rows: original | degraded x | A(x) | G(x).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from common.data import degrade, imageio, resize
from common.quality import evaluation, lpips, metrics, validation
from common.train import checkpoint
from methods.tone import data as tone_data
from methods.tone import model as tone_model

FALLBACK_EVAL = "builtin:grace_hopper"


def delta_e(a: np.ndarray, b: np.ndarray) -> float:
    """Mean CIE76 colour difference of two RGB [0, 1] images."""
    from skimage import color

    return float(np.mean(np.linalg.norm(color.rgb2lab(a) - color.rgb2lab(b), axis=-1)))


def halo(out: np.ndarray, ref: np.ndarray, sigma: float = 6.0, band: int = 8) -> float:
    """Edge-band high-pass difference (module docstring)."""
    from skimage import color

    lo, lr = color.rgb2lab(out)[..., 0] / 100.0, color.rgb2lab(ref)[..., 0] / 100.0
    hp = lambda v: v - ndimage.gaussian_filter(v, sigma)  # noqa: E731
    mag = np.hypot(ndimage.sobel(lr, 0), ndimage.sobel(lr, 1))
    edges = ndimage.binary_dilation(mag > np.percentile(mag, 90), iterations=band)
    return float(np.mean(np.abs(hp(lo) - hp(lr))[edges]))


METRICS = ("psnr", "ssim", "delta_e", "halo", "lpips")


def _scores(img, ref) -> dict:
    return {**evaluation.rgb_scores(img, ref), "delta_e": delta_e(img, ref), "halo": halo(img, ref)}


class Evaluator:
    """Evaluation, samples and prediction, given G at test time `enhance(state, x)` and C `invert(c, y)`."""

    def __init__(self, config, *, enhance, invert):
        self.config = config
        self._g = jax.jit(enhance)
        self._c = jax.jit(invert)
        self._fixed_c = None

    def inverse_params(self, state):
        """C used for inverse_mse: this run's, or the one of `eval.inverse_from` (loaded once)."""
        src = self.config.eval.inverse_from
        if not src:
            return state.c
        if self._fixed_c is None:
            run = checkpoint.load_run(src, what=f"config eval.inverse_from={src!r}", method="tone", needs=("c",))
            self._fixed_c = jax.tree.map(jnp.asarray, run.state["c"])
        return self._fixed_c

    def enhance(self, state, x: np.ndarray) -> np.ndarray:
        """G on one image of any size ≥ 8x8 (reflect-padded to G's multiple), clipped to [0, 1]."""
        return evaluation.padded(lambda xp: self._g(state, xp), x, tone_model.ARCHS[self.config.model.arch])

    def validator(self) -> validation.Validator:
        """PSNR/SSIM/LPIPS of G on the validation crops under seeded random tone curves, against the crops."""

        def pairs():
            ref = validation.crops(self.config, tone_model.ARCHS[self.config.model.arch])
            rng = lambda i: np.random.default_rng([self.config.eval.seed, 1_000 + i])  # noqa: E731
            x = np.stack([degrade.random_tone_curve(rng(i), r)[0] for i, r in enumerate(ref)]).astype(np.float32)
            return {"x": x, "ref": ref}

        return validation.Validator(
            self.config, pairs, lambda state, p: validation.image_scores(self._g(state, p["x"]), p["ref"])
        )

    def train_samples(self, state, batch) -> np.ndarray:
        return imageio.grid(
            [[x, t, self.enhance(state, x)] for x, t in zip(batch["x"][:3], batch["target"][:3], strict=True)]
        )

    def evaluate(self, state, outdir: str) -> dict:
        ev = self.config.eval
        params = dict(self.config.data.algorithm_params)
        c_params = self.inverse_params(state)
        results = {
            "algorithm": self.config.data.algorithm,
            "max_side": ev.max_side,
            "inverse_from": ev.inverse_from or "this run",
            "lpips_net": "alex",
            "sets": {},
        }

        def score(i, item):
            orig = item["image"]
            scale = min(1.0, ev.max_side / max(orig.shape[:2]))
            if scale < 1.0:
                orig = np.clip(resize.imresize(orig, scale), 0, 1)
            x, curve = degrade.random_tone_curve(np.random.default_rng([ev.seed, i]), orig)
            a = tone_data.enhance(x, self.config.data.algorithm, params)
            g = self.enhance(state, x)
            c = np.asarray(self._c(c_params, jnp.asarray(g[None])))[0]
            record = {
                "image": evaluation.image_name(item),
                "curve": curve,
                "input": _scores(x, orig),
                "algorithm": _scores(a, orig),
                "model": _scores(g, orig),
                "model_psnr_to_algorithm": float(metrics.psnr(g[None], a[None])[0]),
                "inverse_mse": float(np.mean((c - x) ** 2)),
            }
            return record, [orig, x, a, g]

        rows = []
        for name, source in evaluation.eval_sets(ev.data, ("kodak",), FALLBACK_EVAL, lpips.MIN_SIDE["alex"]):
            per, set_rows = evaluation.score_images(
                source, score, num_samples=ev.num_samples - len(rows), desc=f"eval {name}"
            )
            rows += set_rows
            results["sets"][name] = {
                "num_images": len(per),
                **evaluation.means(per, ("input", "algorithm", "model"), METRICS),
                "model_psnr_to_algorithm": float(np.mean([p["model_psnr_to_algorithm"] for p in per])),
                "inverse_mse": float(np.mean([p["inverse_mse"] for p in per])),
                "images": per,
            }
        evaluation.save_samples(outdir, rows, columns=("original", "degraded input x", "algorithm A(x)", "model G(x)"))
        return results

    def predict(self, state, input_path: str, output_path: str) -> list[str]:
        """Enhances an image or a folder at full resolution (any size ≥ 8x8)."""
        return imageio.predict_images(
            input_path, output_path, lambda img: self.enhance(state, img), min_side=8, what="tone enhancement"
        )
