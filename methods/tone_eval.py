"""Tone enhancement evaluation, samples and prediction.

No retouched ground truth exists, so evaluation degrades held-out real photos
(Kodak from ../shared/data when present, else builtin grace_hopper) by a
known random tone curve (`common.degrade.random_tone_curve`: dark / low
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

import os

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from common import data, degrade, imageio, lpips, metrics, resize

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


def _scores(img, ref) -> dict:
    a, b = jnp.asarray(img)[None], jnp.asarray(ref)[None]
    return {
        "psnr": float(metrics.psnr(a, b)[0]),
        "ssim": float(metrics.ssim(a, b)[0]),
        "delta_e": delta_e(img, ref),
        "halo": halo(img, ref),
        "lpips": lpips.score(img, ref),
    }


class Evaluator:
    def __init__(self, config, nets):
        from methods import tone

        self.config = config
        self.nets = nets
        self._tone = tone
        self._g = jax.jit(nets.enhance)
        self._c = jax.jit(lambda c, y: nets.c.apply({"params": c}, y))
        self._fixed_c = None

    def inverse_params(self, state):
        """C used for inverse_mse: this run's, or the one of `eval.inverse_from` (loaded once)."""
        src = self.config.eval.inverse_from
        if not src:
            return state.c
        if self._fixed_c is None:
            from common import checkpoint
            from common.errors import ConfigError

            path = os.path.join(os.path.abspath(src), "checkpoints")
            if not os.path.isdir(path):
                raise ConfigError(f"config eval.inverse_from={src!r}: no checkpoint under {path}")
            ck = checkpoint.Checkpointer(path)
            try:
                if ck.latest_step() is None:
                    raise ConfigError(f"config eval.inverse_from={src!r}: no checkpoint under {path}")
                raw = ck.restore_raw()
            finally:
                ck.close()
            if "c" not in raw:
                raise ConfigError(f"config eval.inverse_from={src!r}: not a tone checkpoint (no inverse network C)")
            self._fixed_c = jax.tree.map(jnp.asarray, raw["c"])
        return self._fixed_c

    def enhance(self, state, x: np.ndarray) -> np.ndarray:
        """G on one image of any size ≥ 8x8 (reflect-padded to a multiple of 4), clipped to [0, 1]."""
        return imageio.apply_padded(lambda xp: self._g(state, xp), x, 4)

    def train_samples(self, state, frozen, batch) -> np.ndarray:
        del frozen
        return imageio.grid(
            [[x, t, self.enhance(state, x)] for x, t in zip(batch["x"][:3], batch["target"][:3], strict=True)]
        )

    def _spec(self):
        if self.config.eval.data:
            return self.config.eval.data
        return data.shared_data_dir("kodak") or FALLBACK_EVAL

    def evaluate(self, state, frozen, outdir: str) -> dict:
        del frozen
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
        rows = []
        for name, source in data.image_sets(self._spec()):
            per = []
            for i in range(len(source)):
                item = source[i]
                orig = item["image"]
                scale = min(1.0, ev.max_side / max(orig.shape[:2]))
                if scale < 1.0:
                    orig = np.clip(resize.imresize(orig, scale), 0, 1)
                x, curve = degrade.random_tone_curve(np.random.default_rng([ev.seed, i]), orig)
                a = self._tone.enhance(x, self.config.data.algorithm, params)
                g = self.enhance(state, x)
                c = np.asarray(self._c(c_params, jnp.asarray(g[None])))[0]
                per.append(
                    {
                        "image": os.path.basename(item["name"]),
                        "curve": curve,
                        "input": _scores(x, orig),
                        "algorithm": _scores(a, orig),
                        "model": _scores(g, orig),
                        "model_psnr_to_algorithm": float(metrics.psnr(g[None], a[None])[0]),
                        "inverse_mse": float(np.mean((c - x) ** 2)),
                    }
                )
                if len(rows) < ev.num_samples:
                    rows.append([orig, x, a, g])
            summary = {
                k: {m: float(np.mean([p[k][m] for p in per])) for m in ("psnr", "ssim", "delta_e", "halo", "lpips")}
                for k in ("input", "algorithm", "model")
            }
            results["sets"][name] = {
                "num_images": len(per),
                **summary,
                "model_psnr_to_algorithm": float(np.mean([p["model_psnr_to_algorithm"] for p in per])),
                "inverse_mse": float(np.mean([p["inverse_mse"] for p in per])),
                "images": per,
            }
        if rows:
            imageio.save_png(os.path.join(outdir, "samples.png"), imageio.grid(rows))
        return results

    def predict(self, state, frozen, input_path: str, output_path: str) -> list[str]:
        """Enhances an image or a folder at full resolution (any size ≥ 8x8)."""
        del frozen
        return imageio.predict_images(
            input_path, output_path, lambda img: self.enhance(state, img), min_side=8, what="tone enhancement"
        )
