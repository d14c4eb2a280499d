"""Each DMENet equation against a direct numpy transcription."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from methods.defocus import data as dd
from methods.defocus import model as dm


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_thin_lens_coc_eq1():
    rng = np.random.default_rng(0)
    x = rng.uniform(500, 20000, (7, 5))
    s1, d, f1 = 3000.0, 12.5, 52.0
    expected = (f1 / s1 * d) * np.abs(x - s1) / x  # c(x) = α|x − S1|/x, α = f1·D/S1
    np.testing.assert_allclose(dd.thin_lens_coc(x, s1, d, f1), expected, rtol=1e-12)
    # in focus at S1, and f1 from 1/F = 1/S1 + 1/f1
    assert dd.thin_lens_coc(np.array([s1]), s1, d, f1)[0] == 0
    F = 50.0
    np.testing.assert_allclose(1 / F, 1 / s1 + 1 / dd.image_space_focal(F, s1), rtol=1e-12)


def test_sample_coc_respects_cap():
    rng = np.random.default_rng(1)
    from configs import defocus as cfg

    lens = cfg.get_config().data.lens
    for _ in range(20):
        depth = dd.procedural_depth(rng, 48, 48)
        coc = dd.sample_coc(rng, depth, lens, width_px=lens.sensor_px)
        assert coc.min() >= 0 and coc.max() <= lens.coc_max + 1e-6


@pytest.mark.parametrize("seed", [0, 1])
def test_blur_and_aux_loss_eq2_eq3(seed):
    rng = np.random.default_rng(seed)
    n, s = 2, 32
    y = rng.uniform(0, 1, (n, s, s, 1)).astype(np.float32)
    pred = rng.uniform(0, 1, (n, s, s, 1)).astype(np.float32)
    aux = [rng.uniform(0, 1, (n, s // f, s // f, 1)).astype(np.float32) for f in (16, 8, 4, 2, 1)]
    lb = jax.jit(dm.blur_loss)(pred, y)
    la = jax.jit(dm.aux_loss)(aux, y)
    for b in range(n):
        exp_b = sum((pred[b, i, j, 0] - y[b, i, j, 0]) ** 2 for i in range(s) for j in range(s)) / (s * s)
        exp_a = 0.0
        for a in aux:
            f = s // a.shape[1]
            wl = a.shape[1]
            yl = np.array([[y[b, i * f + f // 2, j * f + f // 2, 0] for j in range(wl)] for i in range(wl)])
            exp_a += np.sum((a[b, ..., 0] - yl) ** 2) / (wl * wl)
        np.testing.assert_allclose(lb[b], exp_b, rtol=1e-5)
        np.testing.assert_allclose(la[b], exp_a, rtol=1e-5)


def test_domain_and_adversarial_loss_eq4_eq5():
    rng = np.random.default_rng(2)
    ls = rng.normal(0, 3, (3, 2, 2, 1)).astype(np.float32)
    lr = rng.normal(0, 3, (3, 2, 2, 1)).astype(np.float32)

    def eq4(logits, z):  # (z − 1)·log(1 − D) − z·log D, averaged over patches
        d = _sig(logits.astype(np.float64))
        return ((z - 1) * np.log(1 - d) - z * np.log(d)).mean(axis=(1, 2, 3))

    np.testing.assert_allclose(jax.jit(dm.domain_loss)(ls, lr), eq4(ls, 1) + eq4(lr, 0), rtol=1e-5)
    np.testing.assert_allclose(
        jax.jit(dm.adversarial_loss)(lr), (-np.log(_sig(lr.astype(np.float64)))).mean(axis=(1, 2, 3)), rtol=1e-5
    )


def test_sharpness_loss_eq6():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (2, 8, 8, 1)).astype(np.float32)
    b = (rng.uniform(size=(2, 8, 8, 1)) > 0.5).astype(np.float32)
    expected = ((_sig(logits) - b) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(jax.jit(dm.sharpness_loss)(logits, b), expected, rtol=1e-5)
    bce = -(b * np.log(_sig(logits)) + (1 - b) * np.log(1 - _sig(logits))).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(dm.sharpness_loss(logits, b, kind="bce"), bce, rtol=1e-4)
    with pytest.raises(ValueError, match="sharp_loss"):
        dm.sharpness_loss(logits, b, kind="l1")


def test_content_loss_eq7():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(2, 4, 4, 8)).astype(np.float32)
    c = rng.normal(size=(2, 4, 4, 8)).astype(np.float32)
    np.testing.assert_allclose(dm.content_loss(a, c), ((a - c) ** 2).reshape(2, -1).mean(-1), rtol=1e-5)


def test_sigma_from_coc_and_renderer_identity():
    np.testing.assert_allclose(dd.coc_to_sigma(np.array([0.0, 1.0, 5.0, 29.0])), [0, 0, 1, 7])
    rng = np.random.default_rng(5)
    img = rng.uniform(size=(24, 24, 3)).astype(np.float32)
    depth = dd.procedural_depth(rng, 24, 24)
    out, rendered = dd.render_layers(img, depth, np.zeros_like(depth), n_layers=4, kernel="gaussian")
    np.testing.assert_allclose(out, img, atol=1e-5)  # CoC 0 everywhere: nothing blurred
    coc = np.full_like(depth, 13.0)
    out, rendered = dd.render_layers(img, depth, coc, n_layers=4, kernel="gaussian")
    np.testing.assert_allclose(rendered, 13.0)
    assert out.std() < img.std() * 0.5  # uniform σ=3 blur flattens noise


def test_renderer_blurs_each_layer_over_its_box_as_over_the_whole_frame():
    """render_layers blurs each depth layer only over its box grown by the kernel's reach; a direct
    transcription that blurs every layer over the whole frame gives the same image (Gaussian: the same
    sums; disk: FFTs of other sizes), with layers touching the frame's edges and large blurs."""
    from common.data import degrade

    def whole_frame(img, depth, coc, n_layers, kernel):
        edges = np.unique(np.quantile(depth, np.linspace(0, 1, n_layers + 1)))
        layer = np.clip(np.searchsorted(edges, depth, side="right") - 1, 0, len(edges) - 2)
        color, alpha = np.zeros_like(img), np.zeros(depth.shape, np.float32)
        for k in sorted(np.unique(layer), reverse=True):
            m = (layer == k).astype(np.float32)
            c = float(coc[layer == k].mean())
            if kernel == "gaussian":
                s = float(dd.coc_to_sigma(c))
                bm, bi = degrade.gaussian_blur(m, s), degrade.gaussian_blur(img * m[..., None], s)
            else:
                bm, bi = degrade.disk_blur(m, c / 2), degrade.disk_blur(img * m[..., None], c / 2)
            color = color * (1.0 - bm[..., None]) + bi
            alpha = alpha * (1.0 - bm) + bm
        return np.clip(color / np.maximum(alpha, 1e-6)[..., None], 0.0, 1.0)

    for i in range(6):
        rng = np.random.default_rng([11, i])
        img = rng.uniform(size=(72, 60, 3)).astype(np.float32)
        depth = dd.procedural_depth(rng, 72, 60)
        coc = (depth.max() - depth) / (depth.max() - depth.min() + 1e-6) * rng.uniform(4, 40)
        for kernel, tol in (("gaussian", 1e-6), ("disk", 1e-5)):
            out, _ = dd.render_layers(img, depth, coc, n_layers=8, kernel=kernel)
            np.testing.assert_allclose(out, whole_frame(img, depth, coc, 8, kernel), atol=tol, err_msg=kernel)


def test_synthetic_example_label_matches_rendering():
    from common.data import pipeline
    from configs import defocus as cfg

    c = cfg.get_config("test").data
    src = pipeline.BuiltinSource("astronaut,stereo_motorcycle")
    for i in range(4):
        ex = dd.synthetic_example(np.random.default_rng(i), src, c)
        chex.assert_shape(ex["image"], (c.crop, c.crop, 3))
        chex.assert_shape(ex["label"], (c.crop, c.crop, 1))
        assert 0 <= ex["label"].min() and ex["label"].max() <= 1
        pr = dd.proxy_real_example(np.random.default_rng(i), src, c)
        assert set(np.unique(pr["mask"])) <= {0.0, 1.0}


def test_metrics_against_references():
    from skimage.metrics import structural_similarity

    from common.quality import metrics

    rng = np.random.default_rng(6)
    a = rng.uniform(size=(2, 40, 40, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    mse = ((a - b) ** 2).reshape(2, -1).mean(-1)
    np.testing.assert_allclose(metrics.psnr(jnp.asarray(a), jnp.asarray(b)), 10 * np.log10(1 / mse), rtol=1e-5)
    ref = [
        structural_similarity(
            a[i], b[i], channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        for i in range(2)
    ]
    # skimage averages over the full image with cropped borders (pad = 5); compare the same region
    ours = np.asarray(metrics.ssim(jnp.asarray(a), jnp.asarray(b)))
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 0, 1, 1, 0, 0])
    # thresholds: P@1=1, R=1/3; P@3=2/3, R=2/3; P@4=3/4, R=1 → AP = 1/3·1 + 1/3·2/3 + 1/3·3/4
    np.testing.assert_allclose(metrics.average_precision(scores, labels), (1 + 2 / 3 + 3 / 4) / 3)
