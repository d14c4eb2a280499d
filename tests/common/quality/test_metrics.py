"""Metrics: the bootstrap interval of a mean, against a direct numpy transcription and known cases."""

import jax.numpy as jnp
import numpy as np
import pytest

from common.quality import metrics


def _direct(values, groups, n, seed, level=0.95):
    """The percentile bootstrap written out: resample (whole groups of) items, take the mean, n times."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, np.float64)
    if groups is None:
        means = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(n)]
    else:
        labels = np.unique(groups)
        members = [np.flatnonzero(np.asarray(groups) == g) for g in labels]
        picks = rng.integers(0, len(labels), (n, len(labels)))
        means = [np.concatenate([values[members[g]] for g in p]).mean() for p in picks]
    return tuple(np.percentile(means, [50 * (1 - level), 50 * (1 + level)]))


def test_matches_the_direct_transcription_with_and_without_groups():
    v = np.random.default_rng(1).normal(size=30)
    assert np.allclose(metrics.bootstrap_mean_ci(v, n=500, seed=3), _direct(v, None, 500, 3))
    groups = np.arange(30) % 7  # unequal group sizes (5 and 4 items)
    assert np.allclose(metrics.bootstrap_mean_ci(v, groups, n=500, seed=3), _direct(v, groups, 500, 3))


def test_known_cases():
    assert metrics.bootstrap_mean_ci(np.full(10, 2.5)) == (2.5, 2.5)  # no spread, no interval
    v = np.random.default_rng(0).normal(1.0, 1.0, size=400)
    lo, hi = metrics.bootstrap_mean_ci(v)
    se = v.std() / np.sqrt(len(v))
    assert lo < v.mean() < hi and abs((hi - lo) - 2 * 1.96 * se) < 0.25 * (2 * 1.96 * se)  # ≈ the normal interval
    # items that move together in groups: the grouped interval is wider than the one that treats them as independent
    g = np.repeat(np.arange(8), 10)
    clustered = np.repeat(np.random.default_rng(2).normal(size=8), 10) + 0.01 * np.random.default_rng(3).normal(size=80)
    lo_i, hi_i = metrics.bootstrap_mean_ci(clustered)
    lo_g, hi_g = metrics.bootstrap_mean_ci(clustered, g)
    assert hi_g - lo_g > 2 * (hi_i - lo_i)


def _np_ms_ssim(a, b, size=11, sigma=1.5):
    """MS-SSIM of one (H, W, C) pair in float64, written out: Gaussian window, valid region, channel mean,
    2x2 mean pooling between the five scales, negative terms clamped to 0."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()

    def filt(img):  # separable valid filter, channel by channel
        out = np.stack(
            [np.apply_along_axis(lambda r: np.convolve(r, g, "valid"), 0, img[..., c]) for c in range(img.shape[-1])],
            -1,
        )
        return np.stack(
            [np.apply_along_axis(lambda r: np.convolve(r, g, "valid"), 1, out[..., c]) for c in range(out.shape[-1])],
            -1,
        )

    weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    c1, c2 = 0.01**2, 0.03**2
    a, b = a.astype(np.float64), b.astype(np.float64)
    result = 1.0
    for j, w in enumerate(weights):
        ma, mb = filt(a), filt(b)
        saa, sbb, sab = filt(a * a) - ma**2, filt(b * b) - mb**2, filt(a * b) - ma * mb
        cs = (2 * sab + c2) / (saa + sbb + c2)
        term = ((2 * ma * mb + c1) / (ma**2 + mb**2 + c1) * cs).mean() if j == 4 else cs.mean()
        result *= max(term, 0.0) ** w
        if j < 4:
            h, wd = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
            a = a[:h, :wd].reshape(h // 2, 2, wd // 2, 2, -1).mean(axis=(1, 3))
            b = b[:h, :wd].reshape(h // 2, 2, wd // 2, 2, -1).mean(axis=(1, 3))
    return result


def test_ms_ssim_matches_a_numpy_transcription_and_refuses_small_images():
    rng = np.random.default_rng(3)
    a = rng.random((2, 176, 184, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    b[1] = ndimage_blur(a[1])
    got = np.asarray(metrics.ms_ssim(jnp.asarray(a), jnp.asarray(b)))
    want = [_np_ms_ssim(a[i], b[i]) for i in range(2)]
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)
    assert float(metrics.ms_ssim(jnp.asarray(a[:1]), jnp.asarray(a[:1]))[0]) == pytest.approx(1.0, abs=1e-5)
    for side in (150, 175):  # 175 floors to 10 pixels at the fifth scale, under the 11-pixel window
        with pytest.raises(ValueError, match="too small for 5 scales"):
            metrics.ms_ssim(jnp.asarray(a[:, :side]), jnp.asarray(b[:, :side]))


def ndimage_blur(img):
    from scipy import ndimage

    return ndimage.gaussian_filter(img, (1.5, 1.5, 0)).astype(np.float32)
