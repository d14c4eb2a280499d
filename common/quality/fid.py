"""Fréchet Inception Distance with user-supplied Inception-v3 weights.

The weights cannot be downloaded on the machines this project targets, so
FID is computed only when a weights file is given. Convert Keras'
``inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`` once:

    python -m common.quality.fid convert inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 inception_v3.npz

and pass the ``.npz`` (face SR: ``--config.eval.inception_weights=inception_v3.npz``).
The network is Keras' InceptionV3 without its top (94 conv + batch-norm
layers, the 2048-d global-average-pooled features), images resized
bilinearly to 299x299 and scaled to [−1, 1]. FID = ‖μ1 − μ2‖² +
Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½) over those features. Numbers from these Keras
weights are not identical to the TF-slim graph of the original FID code,
and with a few dozen images FID is strongly biased upwards: compare runs
evaluated on the same images only.
"""

from __future__ import annotations

import re
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import linalg

from common.nn import conv
from common.pretrained import weights
from common.pretrained.weights import WeightsError

NUM_LAYERS = 94
BN_EPS = 1e-3


class ConvBN(nn.Module):
    """Keras' conv2d_bn: conv (no bias) → batch norm (no scale, inference statistics) → ReLU."""

    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: str = "SAME"

    @nn.compact
    def __call__(self, x):
        x = conv.Conv(self.features, self.kernel, (self.strides,) * 2, self.padding, use_bias=False, name="conv")(x)
        beta = self.param("beta", nn.initializers.zeros, (self.features,))
        mean = self.param("mean", nn.initializers.zeros, (self.features,))
        var = self.param("var", nn.initializers.ones, (self.features,))
        return nn.relu((x - mean) * jax.lax.rsqrt(var + BN_EPS) + beta)


def _max(x):
    return nn.max_pool(x, (3, 3), (2, 2), "VALID")


def _avg(x):
    return nn.avg_pool(x, (3, 3), (1, 1), "SAME", count_include_pad=False)


class InceptionV3(nn.Module):
    """Keras' InceptionV3 (include_top=False, pooling='avg'): RGB [0, 1] → 2048 features.

    Layers are named cbn0 … cbn93 in Keras' creation order, which is how the
    converter maps the weights file onto them.
    """

    @nn.compact
    def __call__(self, x):
        count = iter(range(NUM_LAYERS))

        def cbn(h, f, kh, kw, strides=1, padding="SAME"):
            return ConvBN(f, (kh, kw), strides, padding, name=f"cbn{next(count)}")(h)

        x = jax.image.resize(x, (x.shape[0], 299, 299, x.shape[-1]), "bilinear") * 2.0 - 1.0
        x = cbn(x, 32, 3, 3, 2, "VALID")
        x = cbn(x, 32, 3, 3, padding="VALID")
        x = _max(cbn(x, 64, 3, 3))
        x = cbn(x, 80, 1, 1, padding="VALID")
        x = _max(cbn(x, 192, 3, 3, padding="VALID"))
        for pool in (32, 64, 64):  # mixed 0-2
            b1 = cbn(x, 64, 1, 1)
            b5 = cbn(cbn(x, 48, 1, 1), 64, 5, 5)
            b3 = cbn(cbn(cbn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3)
            x = jnp.concatenate([b1, b5, b3, cbn(_avg(x), pool, 1, 1)], -1)
        b3 = cbn(x, 384, 3, 3, 2, "VALID")  # mixed 3
        bd = cbn(cbn(cbn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3, 2, "VALID")
        x = jnp.concatenate([b3, bd, _max(x)], -1)
        for c in (128, 160, 160, 192):  # mixed 4-7
            b1 = cbn(x, 192, 1, 1)
            b7 = cbn(cbn(cbn(x, c, 1, 1), c, 1, 7), 192, 7, 1)
            bd = cbn(cbn(cbn(cbn(cbn(x, c, 1, 1), c, 7, 1), c, 1, 7), c, 7, 1), 192, 1, 7)
            x = jnp.concatenate([b1, b7, bd, cbn(_avg(x), 192, 1, 1)], -1)
        b3 = cbn(cbn(x, 192, 1, 1), 320, 3, 3, 2, "VALID")  # mixed 8
        b7 = cbn(cbn(cbn(cbn(x, 192, 1, 1), 192, 1, 7), 192, 7, 1), 192, 3, 3, 2, "VALID")
        x = jnp.concatenate([b3, b7, _max(x)], -1)
        for _ in range(2):  # mixed 9-10
            b1 = cbn(x, 320, 1, 1)
            h = cbn(x, 384, 1, 1)
            b3 = jnp.concatenate([cbn(h, 384, 1, 3), cbn(h, 384, 3, 1)], -1)
            h = cbn(cbn(x, 448, 1, 1), 384, 3, 3)
            bd = jnp.concatenate([cbn(h, 384, 1, 3), cbn(h, 384, 3, 1)], -1)
            x = jnp.concatenate([b1, b3, bd, cbn(_avg(x), 192, 1, 1)], -1)
        return jnp.mean(x, axis=(1, 2))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½) (an ε·I offset when the product is singular)."""
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    with warnings.catch_warnings():  # singular with fewer images than features: expected, see the docstring
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def feature_distance(features1: np.ndarray, features2: np.ndarray) -> float:
    """The FID of two feature sets (rows), as `frechet_distance` of their statistics, without a d x d sqrtm
    when each set has fewer rows than features (d = 2048; an evaluation of a few dozen images).

    With centred features A_i (n_i x d) and Σ_i = A_iᵀA_i / (n_i − 1), the nonzero eigenvalues of Σ1Σ2 are
    the squared singular values of M = A1 A2ᵀ / √((n1 − 1)(n2 − 1)), so Tr (Σ1Σ2)^½ is M's nuclear norm:
    exact, and an n1 x n2 SVD instead of scipy's 2048² sqrtm (seconds per call on 2 cores).
    """
    f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    (n1, d), n2 = f1.shape, len(f2)
    if max(n1, n2) >= d:
        return frechet_distance(*statistics(f1), *statistics(f2))
    a1, a2 = f1 - f1.mean(axis=0), f2 - f2.mean(axis=0)
    diff = f1.mean(axis=0) - f2.mean(axis=0)
    c1, c2 = max(n1 - 1, 1), max(n2 - 1, 1)  # one row: a zero covariance, as in `statistics`
    cross = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt(c1 * c2)
    return float(diff @ diff + np.sum(a1 * a1) / c1 + np.sum(a2 * a2) / c2 - 2.0 * cross)


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, np.float64)
    cov = np.cov(f, rowvar=False) if len(f) > 1 else np.zeros((f.shape[1], f.shape[1]))
    return f.mean(axis=0), cov


class FID:
    """Features of image lists and the FID between two lists (weights from a converted .npz)."""

    def __init__(self, path: str):
        self.variables = load(path)
        net = InceptionV3()
        self._features = jax.jit(lambda v, x: net.apply(v, x))

    def features(self, images) -> np.ndarray:
        return np.concatenate([np.asarray(self._features(self.variables, jnp.asarray(im)[None])) for im in images])

    def __call__(self, images_a, images_b) -> float:
        return feature_distance(self.features(images_a), self.features(images_b))


# ----------------------------------------------------------------------------- weights


def _layer_index(name: str, prefix: str) -> int | None:
    m = re.fullmatch(rf"{prefix}(?:_(\d+))?", name)
    return None if m is None else int(m.group(1) or 0)


def convert(src: str, dst: str) -> None:
    """Keras InceptionV3 notop .h5 → the project's .npz (cbn{i}/{kernel,beta,mean,var})."""
    import h5py

    try:
        f = h5py.File(src, "r")
    except OSError as e:
        raise WeightsError(f"{src}: not an HDF5 file ({e})") from e
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        convs = sorted((i, n) for n in root if (i := _layer_index(n, "conv2d")) is not None)
        bns = sorted((i, n) for n in root if (i := _layer_index(n, "batch_normalization")) is not None)
        if len(convs) != NUM_LAYERS or len(bns) != NUM_LAYERS:
            raise WeightsError(
                f"{src}: expected {NUM_LAYERS} conv2d and batch_normalization layer groups (Keras InceptionV3), "
                f"found {len(convs)} and {len(bns)}"
            )
        out = {}
        for k, ((_, cname), (_, bname)) in enumerate(zip(convs, bns, strict=True)):
            found = {}
            root[cname].visititems(
                lambda n, o, d=found: d.__setitem__(n, np.asarray(o)) if hasattr(o, "shape") else None
            )
            kern = [a for a in found.values() if a.ndim == 4]
            bn = {}
            root[bname].visititems(lambda n, o, d=bn: d.__setitem__(n, np.asarray(o)) if hasattr(o, "shape") else None)
            pick = {
                key: [a for n, a in bn.items() if key in n.split("/")[-1]]
                for key in ("beta", "moving_mean", "moving_variance")
            }
            if len(kern) != 1 or any(len(v) != 1 for v in pick.values()):
                raise WeightsError(
                    f"{src}: layers {cname!r}/{bname!r} are not a conv kernel and a scale-free batch norm"
                )
            out[f"cbn{k}/kernel"] = kern[0].astype(np.float32)
            out[f"cbn{k}/beta"] = pick["beta"][0].astype(np.float32)
            out[f"cbn{k}/mean"] = pick["moving_mean"][0].astype(np.float32)
            out[f"cbn{k}/var"] = pick["moving_variance"][0].astype(np.float32)
    _check(out, src)
    np.savez(dst, **out)


def _expected_shapes() -> dict:
    v = jax.eval_shape(InceptionV3().init, jax.random.key(0), jnp.zeros((1, 75, 75, 3)))["params"]
    out = {}
    for i in range(NUM_LAYERS):
        p = v[f"cbn{i}"]
        out[f"cbn{i}/kernel"] = p["conv"]["kernel"].shape
        for k in ("beta", "mean", "var"):
            out[f"cbn{i}/{k}"] = p[k].shape
    return out


def _check(arrays: dict, path: str) -> None:
    weights.check_shapes(arrays, _expected_shapes(), path)


def load(path: str) -> dict:
    """Flax variables of InceptionV3 from a converted .npz."""
    arrays = weights.load_npz(
        path,
        what="Inception-v3",
        hint="convert Keras' notop .h5 with `python -m common.quality.fid convert SRC OUT.npz`",
    )
    _check(arrays, path)
    params = {
        f"cbn{i}": {
            "conv": {"kernel": arrays[f"cbn{i}/kernel"]},
            **{k: arrays[f"cbn{i}/{k}"] for k in ("beta", "mean", "var")},
        }
        for i in range(NUM_LAYERS)
    }
    return {"params": params}


def main(argv=None):
    weights.convert_cli(
        argv,
        prog="python -m common.quality.fid",
        description=__doc__.split("\n\n")[0],
        what="Keras InceptionV3 notop .h5",
        convert=convert,
    )


if __name__ == "__main__":
    main()
