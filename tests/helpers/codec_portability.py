"""Encode in one process, decode in others with other numerics; run by tests/methods/compression/test_codec.py.

    python tests/helpers/codec_portability.py encode DIR  # writes DIR/model.npz and DIR/<prior>_<i>.rjx
    python tests/helpers/codec_portability.py decode DIR  # prints one JSON line: sha256 of symbols and pixels per file

The model (parameters and the integer tables that finalize stores in a
checkpoint) travels as a file, exactly as a checkpoint would; the decoding
process may run with fast-math, one thread, several devices or another
matmul precision.
"""

import glob
import hashlib
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from configs.compression import get_config
from methods.compression import codec as mcodec
from methods.compression import model as mc


def _model(prior):
    cfg = get_config("test")
    cfg.model.prior = prior
    return cfg, mc.Nets(cfg)


def encode(out):
    import skimage.data

    photo = skimage.data.astronaut()[100:164, 150:246].astype(np.float32) / 255.0
    images = [photo, np.random.default_rng(0).random((37, 53, 3)).astype(np.float32)]
    for prior in ("hyperprior", "meanscale", "factorized"):
        cfg, nets = _model(prior)
        state = mc.init_state(jax.random.key(0), nets, cfg)
        # larger weights than at init, so that σ spreads over the scale table
        state = mc.finalize(state.replace(params=jax.tree.map(lambda a: a * 3.0, state.params)), nets=nets)
        flat = traverse_util.flatten_dict({"params": state.params, "tables": state.tables}, sep="/")
        np.savez(os.path.join(out, f"{prior}.npz"), **{k: np.asarray(v) for k, v in flat.items()})
        cd = mcodec.Codec(nets.model, state.params, tables=state.tables)
        for i, img in enumerate(images):
            with open(os.path.join(out, f"{prior}_{i}.rjx"), "wb") as f:
                f.write(cd.encode_bytes(img))


def decode(folder):
    out = {"devices": jax.device_count(), "precision": str(jax.config.jax_default_matmul_precision)}
    for prior in ("hyperprior", "meanscale", "factorized"):
        _, nets = _model(prior)
        z = np.load(os.path.join(folder, f"{prior}.npz"))
        tree = traverse_util.unflatten_dict({tuple(k.split("/")): jnp.asarray(z[k]) for k in z.files})
        cd = mcodec.Codec(nets.model, tree["params"], tables=tree["tables"])
        for path in sorted(glob.glob(os.path.join(folder, f"{prior}_*.rjx"))):
            blob = open(path, "rb").read()
            syms, h, w = cd.decode_symbols(blob, path)
            img = cd.reconstruct(syms, h, w)
            out[os.path.basename(path)] = {
                "symbols": hashlib.sha256(np.ascontiguousarray(syms["y"], np.int32).tobytes()).hexdigest()[:16],
                "pixels": hashlib.sha256(img.tobytes()).hexdigest()[:16],
                "image": img.tolist() if h * w < 4000 else None,
            }
    print(json.dumps(out))


if __name__ == "__main__":
    {"encode": encode, "decode": decode}[sys.argv[1]](sys.argv[2])
