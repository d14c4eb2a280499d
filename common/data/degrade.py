"""Host-side (numpy/scipy/Pillow) degradations shared by the methods."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage, signal


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of (H, W) or (H, W, C) with std `sigma` pixels (reflect borders)."""
    if sigma <= 0:
        return img
    s = (sigma, sigma) + (0,) * (img.ndim - 2)
    return ndimage.gaussian_filter(img, s, mode="reflect", truncate=3.0)


def disk_kernel(radius: float) -> np.ndarray:
    """Normalised anti-aliased disk (lens-aperture PSF) of the given radius in pixels."""
    r = max(radius, 0.5)
    n = int(np.ceil(r)) + 1
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1].astype(np.float64)
    # supersample 4x4 per pixel for a smooth edge
    o = (np.arange(4) + 0.5) / 4 - 0.5
    cover = np.zeros_like(yy)
    for dy in o:
        for dx in o:
            cover += (yy + dy) ** 2 + (xx + dx) ** 2 <= r * r
    k = cover / cover.sum()
    return k.astype(np.float32)


def disk_blur(img: np.ndarray, radius: float) -> np.ndarray:
    """Convolution with `disk_kernel(radius)` (reflect-padded), for (H, W) or (H, W, C)."""
    if radius <= 0.5:
        return img
    k = disk_kernel(radius)
    p = k.shape[0] // 2
    if img.ndim == 2:
        padded = np.pad(img, p, mode="reflect")
        return signal.fftconvolve(padded, k, mode="valid").astype(img.dtype)
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="reflect")
    return signal.fftconvolve(padded, k[..., None], mode="valid", axes=(0, 1)).astype(img.dtype)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip through Pillow at `quality` (1..95) of float RGB in [0, 1]."""
    return jpeg_with_size(img, quality)[0]


def jpeg_with_size(img: np.ndarray, quality: int) -> tuple[np.ndarray, int]:
    """(JPEG round trip of float RGB in [0, 1] through Pillow at `quality`, the file's size in bytes)."""
    u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(quality))
    size = buf.tell()
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), np.float32) / 255.0, size


def gaussian_noise(rng: np.random.Generator, img: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(img + rng.normal(0.0, sigma, img.shape).astype(np.float32), 0.0, 1.0)


def random_tone_curve(rng: np.random.Generator, img: np.ndarray) -> tuple[np.ndarray, dict]:
    """A known random tone degradation of RGB [0, 1]: one or more of dark / low-contrast / desaturated.

    dark: gamma γ ∈ [1.6, 2.6] (x^γ); low contrast: x → m + a·(x − m), a ∈ [0.4, 0.7],
    m = 0.5; desaturated: mix with luma by s ∈ [0.2, 0.6]. Returns (degraded, params).
    """
    kinds = [k for k in ("dark", "low_contrast", "desaturated") if rng.random() < 0.5]
    if not kinds:
        kinds = [("dark", "low_contrast", "desaturated")[int(rng.integers(3))]]
    out = np.clip(img, 0.0, 1.0).astype(np.float32)
    params: dict = {}
    for k in kinds:
        if k == "dark":
            params["gamma"] = float(rng.uniform(1.6, 2.6))
            out = out ** params["gamma"]
        elif k == "low_contrast":
            params["contrast"] = float(rng.uniform(0.4, 0.7))
            out = 0.5 + params["contrast"] * (out - 0.5)
        else:
            params["saturation"] = float(rng.uniform(0.2, 0.6))
            luma = out @ np.array([0.299, 0.587, 0.114], np.float32)
            out = luma[..., None] + params["saturation"] * (out - luma[..., None])
    return np.clip(out, 0.0, 1.0).astype(np.float32), params
