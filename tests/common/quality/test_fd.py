"""FD-VGG16 / FD-Alex: pooled features of LPIPS' trunks and their Fréchet distance."""

import numpy as np
import pytest

from common.quality import fd, fid, lpips


def _images(seed, n=4, size=40):
    rng = np.random.default_rng(seed)
    return [rng.random((size, size + 8, 3)).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("net,dim", [("vgg", 512), ("alex", 256)])
def test_features_are_the_mean_of_the_last_lpips_layer(net, dim):
    imgs = _images(0, n=2)
    f = fd.features(imgs, net)
    assert f.shape == (2, dim)
    layers = (lpips.vgg16_features if net == "vgg" else lpips.alexnet_features)(lpips.get(net).trunk, imgs[1][None])
    np.testing.assert_allclose(f[1], np.asarray(layers[-1])[0].mean(axis=(0, 1)), rtol=1e-4, atol=1e-6)
    u8 = (imgs[0] * 255).round().astype(np.uint8)  # uint8 input is scaled to [0, 1]
    np.testing.assert_allclose(fd.features([u8], net)[0], fd.features([u8 / 255.0], net)[0], rtol=1e-4, atol=1e-6)


def test_distances_are_zero_for_the_same_set_and_grow_with_a_shift():
    acc = fd.Accumulator()
    ref = _images(1)
    for img in ref:
        acc.add("truth", img)
        acc.add("same", img)
        acc.add("darker", img * 0.5)
    d = acc.distances("truth")
    assert set(d) == {"same", "darker"} and set(d["same"]) == {"fd_vgg16", "fd_alex"}
    assert abs(d["same"]["fd_vgg16"]) < 1e-6 * (1 + d["darker"]["fd_vgg16"])
    assert d["darker"]["fd_vgg16"] > 0 and d["darker"]["fd_alex"] > 0
    a, b = np.stack(acc.rows["darker", "vgg"]), np.stack(acc.rows["truth", "vgg"])
    assert d["darker"]["fd_vgg16"] == pytest.approx(
        fid.frechet_distance(*fid.statistics(a), *fid.statistics(b)), rel=1e-6
    )


def test_a_too_small_image_is_named():
    with pytest.raises(ValueError, match="at least 31 pixels"):
        fd.features([np.zeros((20, 40, 3), np.float32)], "alex")
