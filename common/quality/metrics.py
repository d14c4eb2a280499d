"""Image-quality and detection metrics.

Image metrics are pure jnp functions over NHWC batches in [0, 1] that return
one value per image; the caller reduces. Ranking metrics (precision/recall,
average precision) run on the host in numpy because they sort.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def mse(a, b):
    """Per-image mean squared error over all but the batch axis."""
    return jnp.mean(jnp.square(a - b), axis=tuple(range(1, a.ndim)))


def mae(a, b):
    return jnp.mean(jnp.abs(a - b), axis=tuple(range(1, a.ndim)))


def psnr(a, b, *, data_range: float = 1.0):
    """Per-image PSNR in dB."""
    return 10.0 * jnp.log10(data_range**2 / jnp.maximum(mse(a, b), 1e-12))


def rgb_to_y(img):
    """Luma Y of ITU-R BT.601 as MATLAB's ``rgb2ycbcr`` computes it, scaled to [0, 1] (16/255..235/255)."""
    return (16.0 + img[..., 0:1] * 65.481 + img[..., 1:2] * 128.553 + img[..., 2:3] * 24.966) / 255.0


def shave(img, border: int):
    """Drops `border` pixels on every side of NHWC (or HWC) images, as SR benchmarks do."""
    if border <= 0:
        return img
    return img[..., border:-border, border:-border, :]


def _gaussian_window(size: int = 11, sigma: float = 1.5):
    x = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
    g = jnp.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x, g):
    """Separable 'valid' filtering of NHWC `x` with 1-D window `g`, per channel."""
    c = x.shape[-1]
    k = g.shape[0]
    kh = jnp.tile(g.reshape(k, 1, 1, 1), (1, 1, 1, c))
    kw = jnp.tile(g.reshape(1, k, 1, 1), (1, 1, 1, c))
    dn = ("NHWC", "HWIO", "NHWC")
    x = jax.lax.conv_general_dilated(x, kh, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=c)
    return jax.lax.conv_general_dilated(x, kw, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=c)


def _ssim_cs(a, b, data_range: float, size: int, sigma: float):
    """Per-image mean SSIM and mean contrast-structure term (valid region, channels averaged)."""
    g = _gaussian_window(size, sigma)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    saa = _filter_valid(a * a, g) - mu_a**2
    sbb = _filter_valid(b * b, g) - mu_b**2
    sab = _filter_valid(a * b, g) - mu_a * mu_b
    cs = (2 * sab + c2) / (saa + sbb + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return jnp.mean(lum * cs, axis=(1, 2, 3)), jnp.mean(cs, axis=(1, 2, 3))


def ssim(a, b, *, data_range: float = 1.0, size: int = 11, sigma: float = 1.5):
    """Per-image SSIM (Wang et al. 2004), Gaussian window, averaged over channels.

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, channel_axis=-1)`` on the valid
    region.
    """
    return _ssim_cs(a, b, data_range, size, sigma)[0]


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_min_side(size: int = 11) -> int:
    """The least side MS-SSIM takes: after four 2x2 poolings (each flooring) the window must still fit."""
    return 16 * size


def ms_ssim(a, b, *, data_range: float = 1.0, size: int = 11, sigma: float = 1.5, floor: float = 0.0):
    """Per-image multi-scale SSIM (Wang et al. 2003): Π_j cs_j^w_j · ssim_5^w_5 over 5 dyadic scales
    (2x2 average pooling between scales; negative cs clamped to `floor`, 0 for the metric; a training loss
    passes a small positive floor, where x^w has a finite gradient). Needs sides ≥ 16·size (`ms_ssim_min_side`)."""
    if min(a.shape[1:3]) < ms_ssim_min_side(size):
        raise ValueError(
            f"ms_ssim: images of {a.shape[1]}x{a.shape[2]} are too small for 5 scales (>= {ms_ssim_min_side(size)} px)"
        )
    out = jnp.ones(a.shape[0])
    for j, w in enumerate(MS_SSIM_WEIGHTS):
        s, cs = _ssim_cs(a, b, data_range, size, sigma)
        out = out * jnp.maximum(s if j == len(MS_SSIM_WEIGHTS) - 1 else cs, floor) ** w
        if j < len(MS_SSIM_WEIGHTS) - 1:
            a, b = _avg_pool2(a), _avg_pool2(b)
    return out


def _avg_pool2(x):
    n, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def precision_recall(scores: np.ndarray, labels: np.ndarray):
    """Precision and recall at every distinct score threshold (descending)."""
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if labels.sum() == 0:
        raise ValueError("precision/recall needs at least one positive label")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.nonzero(np.diff(s))[0], y.size - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / labels.sum()
    return precision, recall, s[last]


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP = Σ_n (R_n − R_{n−1}) P_n over descending thresholds (scikit-learn's definition)."""
    p, r, _ = precision_recall(scores, labels)
    return float(np.sum(np.diff(np.r_[0.0, r]) * p))


def bootstrap_mean_ci(
    values: np.ndarray, groups: np.ndarray | None = None, *, level: float = 0.95, n: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (one per item). With `groups` (one label per item,
    e.g. the photo a crop came from) whole groups are resampled, since items of one group are not independent;
    the statistic is then the mean over the resampled groups' items."""
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    if groups is None:
        idx = rng.integers(0, len(values), (n, len(values)))
        means = values[idx].mean(axis=1)
    else:
        labels, inverse = np.unique(np.asarray(groups), return_inverse=True)
        sums = np.bincount(inverse, weights=values, minlength=len(labels))
        counts = np.bincount(inverse, minlength=len(labels)).astype(np.float64)
        pick = rng.integers(0, len(labels), (n, len(labels)))
        means = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    lo, hi = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)
