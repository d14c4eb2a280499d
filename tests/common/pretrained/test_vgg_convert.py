"""VGG weights converters (npy dict, Keras h5, torchvision) and their errors."""

import os

import jax
import numpy as np
import pytest
from PIL import Image

from common.pretrained import vgg


def _save(path, arr, mode=None):
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return str(path)


def _fake_layers(seed=0):
    rng = np.random.default_rng(seed)
    out, cin = {}, 3
    for layer in vgg.LAYERS:
        c = vgg.CHANNELS[layer]
        out[layer] = (
            rng.normal(size=(3, 3, cin, c)).astype(np.float32) * 0.01,
            rng.normal(size=(c,)).astype(np.float32),
        )
        cin = c
    return out


def test_convert_npy_dict_format(tmp_path):
    layers = _fake_layers()
    d = {k: [w, b] for k, (w, b) in layers.items()}
    d["fc6"] = [np.zeros((2, 2), np.float32), np.zeros(2, np.float32)]  # ignored
    np.save(tmp_path / "vgg19.npy", d, allow_pickle=True)
    vgg.convert(str(tmp_path / "vgg19.npy"), str(tmp_path / "w.npz"))
    variables, pre = vgg.load(str(tmp_path / "w.npz"))
    assert pre == "caffe"
    p = variables["params"]
    np.testing.assert_array_equal(p["conv1_1"]["kernel"], layers["conv1_1"][0][:, :, ::-1])  # BGR -> RGB
    np.testing.assert_array_equal(p["conv5_4"]["bias"], layers["conv5_4"][1])
    # the module runs with them and conv1_1 on an RGB input equals the BGR kernel on a BGR input
    import jax.numpy as jnp

    x = np.random.default_rng(1).uniform(size=(1, 16, 16, 3)).astype(np.float32)
    feats = vgg.VGG(upto="conv1_1").apply(variables, jnp.asarray(x))
    xb = (x * 255.0 - np.array([123.68, 116.779, 103.939], np.float32))[..., ::-1]

    ref = jax.lax.conv_general_dilated(
        jnp.asarray(xb), layers["conv1_1"][0], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    np.testing.assert_allclose(feats["conv1_1"], np.maximum(ref + layers["conv1_1"][1], 0), rtol=1e-4, atol=1e-3)


def test_convert_keras_h5_format(tmp_path):
    import h5py

    layers = _fake_layers(1)
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        for layer, (w, b) in layers.items():
            name = f"block{layer[4]}_conv{layer[6]}"
            g = f.create_group(name)
            g.attrs["weight_names"] = [f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()]
            g.create_dataset(f"{name}_W_1:0", data=w)
            g.create_dataset(f"{name}_b_1:0", data=b)
    vgg.convert(str(path), str(tmp_path / "w.npz"))
    variables, pre = vgg.load(str(tmp_path / "w.npz"))
    np.testing.assert_array_equal(variables["params"]["conv3_2"]["kernel"], layers["conv3_2"][0])


def test_convert_torchvision_pth(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install .[torch]")
    layers = _fake_layers(2)
    sd = {}
    for layer, idx in vgg._TORCH_INDEX.items():
        w, b = layers[layer]
        sd[f"features.{idx}.weight"] = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
        sd[f"features.{idx}.bias"] = torch.from_numpy(b)
    torch.save(sd, tmp_path / "vgg19-dcbb9e9d.pth")
    vgg.convert(str(tmp_path / "vgg19-dcbb9e9d.pth"), str(tmp_path / "w.npz"))
    variables, pre = vgg.load(str(tmp_path / "w.npz"))
    assert pre == "torch"
    np.testing.assert_array_equal(variables["params"]["conv1_1"]["kernel"], layers["conv1_1"][0])


def test_missing_and_malformed_weights(tmp_path):
    with pytest.raises(vgg.WeightsError, match="not found"):
        vgg.load(str(tmp_path / "none.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(vgg.WeightsError, match="bad.npz"):
        vgg.load(str(bad))
    np.savez(tmp_path / "partial.npz", __preprocess__=np.array("caffe"), **{"conv1_1/kernel": np.zeros((3, 3, 3, 64))})
    with pytest.raises(vgg.WeightsError, match="missing array 'conv1_1/bias'"):
        vgg.load(str(tmp_path / "partial.npz"))
    layers = _fake_layers()
    arrays = {f"{k}/kernel": w for k, (w, _) in layers.items()} | {f"{k}/bias": b for k, (_, b) in layers.items()}
    arrays["conv2_1/kernel"] = np.zeros((3, 3, 64, 100), np.float32)
    np.savez(tmp_path / "shape.npz", __preprocess__=np.array("caffe"), **arrays)
    with pytest.raises(vgg.WeightsError, match="conv2_1/kernel"):
        vgg.load(str(tmp_path / "shape.npz"))
    with pytest.raises(vgg.WeightsError, match="unknown weights format"):
        open(tmp_path / "x.bin", "wb").write(b"1")
        vgg.convert(str(tmp_path / "x.bin"), str(tmp_path / "y.npz"))
    assert os.path.exists(tmp_path / "x.bin")
