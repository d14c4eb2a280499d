"""Bicubic resizing with MATLAB ``imresize`` semantics (the SR benchmark convention).

SR papers make their low-resolution inputs with MATLAB's ``imresize(HR, 1/s,
'bicubic')``: Keys' cubic kernel with a = −0.5, the kernel stretched by 1/s
when down-sampling (anti-aliasing), pixel-centre alignment
``u = x/s + ½(1 − 1/s)`` and symmetric (mirror) borders. Other libraries
differ at the borders (Pillow renormalises a truncated kernel) or skip the
anti-aliasing (OpenCV, ``jax.image.resize`` without antialias), which moves
PSNR by tenths of a dB, so the project uses this one function everywhere.

The resize of each axis is a dense (out × in) weight matrix applied with one
matmul; images are float arrays (H, W) or (H, W, C).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from common.data import imageio


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = −0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


@functools.lru_cache(maxsize=64)
def weight_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """(out_len, in_len) float64 matrix M with resized = M @ signal, as MATLAB computes it."""
    width = 4.0
    if scale < 1 and antialias:
        kernel = lambda x: scale * cubic(scale * x)  # noqa: E731
        width = width / scale
    else:
        kernel = cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)  # 1-based output coordinates
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # their position in input coordinates
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based input indices
    w = kernel(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])  # symmetric border
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    m = np.zeros((out_len, in_len))
    np.add.at(m, (np.repeat(np.arange(out_len), taps), idx.ravel()), w.ravel())
    return m


def imresize(img: np.ndarray, scale: float | None = None, *, output_shape: tuple[int, int] | None = None):
    """MATLAB ``imresize(img, scale, 'bicubic')`` of a float (H, W[, C]) array; not clipped.

    Give `scale` (output size = ceil(scale · input size), MATLAB's rule) or
    `output_shape` (then each axis uses its own out/in ratio).
    """
    img = np.asarray(img)
    h, w = img.shape[:2]
    if output_shape is None:
        if scale is None or scale <= 0:
            raise ValueError(f"imresize needs a positive scale or an output_shape, got scale={scale}")
        output_shape = (int(math.ceil(h * scale)), int(math.ceil(w * scale)))
        sh = sw = float(scale)
    else:
        sh, sw = output_shape[0] / h, output_shape[1] / w
    oh, ow = output_shape
    dtype = img.dtype if np.issubdtype(img.dtype, np.floating) else np.float32
    x = img.astype(np.float64)
    # MATLAB resizes the axis with the smaller scale first; with equal scales, rows first.
    order = (0, 1) if sh <= sw else (1, 0)
    for axis in order:
        n_in, n_out, s = (h, oh, sh) if axis == 0 else (w, ow, sw)
        if n_in == n_out and s == 1.0:
            continue
        m = weight_matrix(n_in, n_out, s)
        x = np.tensordot(m, x, axes=([1], [axis]))
        x = np.moveaxis(x, 0, axis)
    return x.astype(dtype)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crops H and W down to multiples of `scale` (bottom/right), as the SR benchmarks do."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def quantize(img: np.ndarray) -> np.ndarray:
    """Rounds float [0, 1] to the 8-bit grid (what saving and reloading a PNG does)."""
    return imageio.to_uint8(img).astype(np.float32) / 255.0
