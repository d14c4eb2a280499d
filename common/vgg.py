"""VGG-19 (Simonyan & Zisserman 2015) as one Flax module, and its weights.

Pretrained ImageNet weights cannot be downloaded on the machines this
project targets, so the project reads one `.npz` (`config.vgg19_weights`)
that `python -m common.vgg convert SRC OUT.npz` writes from the formats users
have:

* ``vgg19.npy``: the pickled dict {layer: [kernel HWIO, bias]} of
  tensorflow-vgg, used by the SRFeat and DMENet authors (BGR, Caffe means);
* Keras ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` (h5py; BGR,
  Caffe means);
* torchvision ``vgg19-*.pth`` (needs torch; RGB, ImageNet mean/std).

The module always takes RGB in [0, 1]; BGR weights get their first kernel's
input channels reversed at conversion, and the `.npz` records which
normalisation the weights expect (``caffe`` or ``torch``).

With no weights file, `load_or_init` returns seeded random weights and warns
loudly once; results made that way must be labelled as such.
"""

from __future__ import annotations

import os
import sys
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from common import weights
from common.errors import UserError

# (block, convs per block, channels)
_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))
LAYERS = tuple(f"conv{b}_{i}" for b, n, _ in _BLOCKS for i in range(1, n + 1))
CHANNELS = {f"conv{b}_{i}": c for b, n, c in _BLOCKS for i in range(1, n + 1)}
_CAFFE_MEAN_RGB = np.array([123.68, 116.779, 103.939], np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)
# torchvision `features.N` index of each conv layer
_TORCH_INDEX = dict(zip(LAYERS, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34), strict=True))


class WeightsError(UserError):
    """A VGG-19 weights file is missing or malformed; the message names it."""


def normalize(x, preprocess: str):
    """RGB [0, 1] -> the input convention of the weights."""
    if preprocess == "caffe":
        return x * 255.0 - _CAFFE_MEAN_RGB
    if preprocess == "torch":
        return (x - _TORCH_MEAN) / _TORCH_STD
    raise ValueError(f"unknown VGG preprocess {preprocess!r} (expected 'caffe' or 'torch')")


def width_of(layer: str, width: float) -> int:
    return max(1, int(round(CHANNELS[layer] * width)))


class VGG19(nn.Module):
    """VGG-19 convolutional trunk; returns {layer: post-ReLU activation} up to `upto`.

    `width` < 1 shrinks every layer (for CPU demos and tests; such a network
    cannot use pretrained weights).
    """

    upto: str = "conv5_4"
    width: float = 1.0
    preprocess: str = "caffe"

    @nn.compact
    def __call__(self, x):
        x = normalize(x, self.preprocess)
        feats = {}
        for b, n, _ in _BLOCKS:
            if b > 1:
                x = nn.max_pool(x, (2, 2), (2, 2))
            for i in range(1, n + 1):
                name = f"conv{b}_{i}"
                x = nn.relu(nn.Conv(width_of(name, self.width), (3, 3), name=name)(x))
                feats[name] = x
                if name == self.upto:
                    return feats
        return feats


def layers_upto(upto: str) -> tuple[str, ...]:
    if upto not in LAYERS:
        raise ValueError(f"unknown VGG-19 layer {upto!r}; expected one of {', '.join(LAYERS)}")
    return LAYERS[: LAYERS.index(upto) + 1]


# ----------------------------------------------------------------------------- converters


def _from_npy(path):
    try:
        d = np.load(path, allow_pickle=True, encoding="latin1").item()
    except Exception as e:  # noqa: BLE001 - any unpickling failure: name the file
        raise WeightsError(f"{path}: not a vgg19.npy dict ({type(e).__name__}: {e})") from e
    if not isinstance(d, dict):
        raise WeightsError(f"{path}: expected a pickled dict of layers, got {type(d).__name__}")
    out = {}
    for layer in LAYERS:
        if layer not in d:
            raise WeightsError(f"{path}: missing layer {layer!r}")
        k, b = d[layer][0], d[layer][1]
        out[layer] = (np.asarray(k, np.float32), np.asarray(b, np.float32))
    return out, "caffe", True


def _datasets(group, h5py):
    """Every dataset below an HDF5 group (Keras nests them one or two levels deep)."""
    found = []
    group.visititems(lambda _, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
    return found


def _from_h5(path):
    import h5py

    out = {}
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsError(f"{path}: not an HDF5 file ({e})") from e
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        for layer in LAYERS:
            b, i = layer[4], layer[6]
            name = f"block{b}_conv{i}"
            if name not in root:
                raise WeightsError(f"{path}: missing Keras layer group {name!r}")
            g = root[name]
            arrays = [np.asarray(obj) for obj in _datasets(g, h5py)]
            kern = [a for a in arrays if a.ndim == 4]
            bias = [a for a in arrays if a.ndim == 1]
            if len(kern) != 1 or len(bias) != 1:
                raise WeightsError(f"{path}: layer {name!r} should hold one kernel and one bias")
            out[layer] = (kern[0].astype(np.float32), bias[0].astype(np.float32))
    return out, "caffe", True


def _from_pth(path):
    try:
        import torch
    except ImportError as e:
        raise WeightsError(f"{path}: converting torchvision weights needs torch (pip install .[torch])") from e
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise WeightsError(f"{path}: cannot load torch state dict ({type(e).__name__}: {e})") from e
    out = {}
    for layer, idx in _TORCH_INDEX.items():
        kw, kb = f"features.{idx}.weight", f"features.{idx}.bias"
        if kw not in sd or kb not in sd:
            raise WeightsError(f"{path}: missing {kw!r} (is this a torchvision vgg19 state dict?)")
        k = sd[kw].numpy().transpose(2, 3, 1, 0)  # OIHW -> HWIO
        out[layer] = (k.astype(np.float32), sd[kb].numpy().astype(np.float32))
    return out, "torch", False


def convert(src: str, dst: str) -> None:
    """Converts vgg19.npy / Keras .h5 / torchvision .pth into the project's .npz."""
    if not os.path.isfile(src):
        raise WeightsError(f"{src}: no such weights file")
    ext = os.path.splitext(src)[1].lower()
    reader = {
        ".npy": _from_npy,
        ".h5": _from_h5,
        ".hdf5": _from_h5,
        ".pth": _from_pth,
        ".pt": _from_pth,
    }.get(ext)
    if reader is None:
        raise WeightsError(f"{src}: unknown weights format {ext!r} (expected .npy, .h5 or .pth)")
    layers, preprocess, bgr = reader(src)
    arrays = {}
    for layer, (k, b) in layers.items():
        if layer == "conv1_1" and bgr:
            k = k[:, :, ::-1, :]  # the module feeds RGB
        arrays[f"{layer}/kernel"] = np.ascontiguousarray(k)
        arrays[f"{layer}/bias"] = b
    _check_shapes(arrays, src, width=1.0)
    np.savez(dst, __preprocess__=np.array(preprocess), **arrays)


def _expected_shapes(width: float):
    shapes, cin = {}, 3
    for layer in LAYERS:
        c = width_of(layer, width)
        shapes[f"{layer}/kernel"] = (3, 3, cin, c)
        shapes[f"{layer}/bias"] = (c,)
        cin = c
    return shapes


def _check_shapes(arrays, path, width):
    for key, shape in _expected_shapes(width).items():
        if key not in arrays:
            raise WeightsError(f"{path}: missing array {key!r}")
        if tuple(arrays[key].shape) != shape:
            raise WeightsError(f"{path}: {key!r} has shape {tuple(arrays[key].shape)}, expected {shape}")


def load(path: str) -> tuple[dict, str]:
    """Reads a converted `.npz` -> (Flax variables {'params': ...}, preprocess)."""
    if not os.path.isfile(path):
        raise WeightsError(
            f"{path}: VGG-19 weights file not found. Convert the weights you have with "
            "`python -m common.vgg convert SRC OUT.npz`, or leave config.vgg19_weights empty "
            "to run with random VGG weights."
        )
    try:
        z = np.load(path, allow_pickle=False)
        arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001
        raise WeightsError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from e
    if "__preprocess__" not in arrays:
        raise WeightsError(f"{path}: missing '__preprocess__' (write it with `python -m common.vgg convert`)")
    _check_shapes(arrays, path, width=1.0)
    params = {layer: {"kernel": arrays[f"{layer}/kernel"], "bias": arrays[f"{layer}/bias"]} for layer in LAYERS}
    return {"params": params}, str(arrays["__preprocess__"])


_warned = False


def load_or_init(
    path: str | None, *, width: float = 1.0, seed: int = 0, random_init: str = "lecun"
) -> tuple[dict, str, bool]:
    """Pretrained variables from `path`, or seeded random ones (warned once).

    `random_init` picks the random kernels: ``lecun`` (flax's default; deep
    activations shrink ~2x per layer, so conv5_4 features are ~1e-5 of the
    input) or ``he`` (variance 2/fan_in, which keeps activations at the
    input's scale through the ReLUs, the better stand-in for a feature loss
    calibrated on pretrained weights). Returns (variables, preprocess, pretrained).
    """
    global _warned
    if path:
        if width != 1.0:
            raise WeightsError(f"{path}: pretrained VGG-19 weights need model width 1.0, the config asks for {width}")
        variables, pre = load(path)
        return variables, pre, True
    if not _warned:
        msg = (
            "\n" + "!" * 78 + "\n!! No VGG-19 weights given (config.vgg19_weights is empty): using SEEDED "
            "RANDOM\n!! VGG-19 weights. Feature losses and encoders are not ImageNet-pretrained;\n"
            "!! label results made this way. See README 'VGG-19 weights'.\n" + "!" * 78
        )
        warnings.warn(msg, stacklevel=2)
        print(msg, file=sys.stderr)
        _warned = True
    variables = VGG19(width=width).init(jax.random.key(seed), jnp.zeros((1, 32, 32, 3)))
    if random_init == "he":
        variables = jax.tree_util.tree_map_with_path(
            lambda p, v: v * np.sqrt(2.0) if jax.tree_util.keystr(p).endswith("['kernel']") else v, variables
        )
    elif random_init != "lecun":
        raise ValueError(f"random_init must be 'lecun' or 'he', got {random_init!r}")
    return jax.tree.map(np.asarray, variables), "caffe", False


def main(argv=None):
    weights.convert_cli(
        argv,
        prog="python -m common.vgg",
        description=__doc__.split("\n\n")[0],
        what=".npy / .h5 / .pth VGG-19",
        convert=convert,
    )


if __name__ == "__main__":
    main()
