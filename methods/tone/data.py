"""Tone enhancement training data: the fixed enhancement A (the colour target I_D) and the example stream.

I_D = A(x) is a classical enhancement with FIXED parameters (`ALGORITHMS`),
strong but possibly unnatural. Each example pairs a random crop x of an
input photo (tone-degraded when ``data.degrade_inputs``) and its target A(x)
with an unpaired crop of a natural photo for D.
"""

from __future__ import annotations

import numpy as np

from common.data import degrade, pipeline
from common.errors import ConfigError

# ----------------------------------------------------------------------------- the fixed enhancement algorithms A


def _recolour(img, value, saturation: float):
    """`img` (RGB) with its HSV value replaced by `value` and its saturation times `saturation` (clipped to
    [0, 1]), hue kept: what skimage's rgb2hsv → edit → hsv2rgb gives, without the round trip through HSV.

    Each HSV channel is c = V·(1 − S·f(H)), so with V = max(c), S = (V − min(c))/V and f fixed by the hue,
    c' = V' − V'·(S'/S)·(V − c)/V. A grey pixel (S = 0, black included) becomes (V', V', V')."""
    v = img.max(axis=-1)
    chroma = v - img.min(axis=-1)
    grey = chroma <= 0
    v_safe = np.where(v > 0, v, 1.0)
    s = np.where(grey, 1.0, chroma / v_safe)
    k = np.where(grey, 0.0, np.clip(s * saturation, 0.0, 1.0) / s)  # S'/S
    rel = (v[..., None] - img) / v_safe[..., None]  # S·f(H) per channel
    return value[..., None] * (1.0 - k[..., None] * rel)


def _clahe_saturation(img, clip_limit: float = 0.02, saturation: float = 1.5):
    """CLAHE on the HSV value channel (scikit-image, as its equalize_adapthist does for RGB) + a saturation
    boost."""
    from skimage import exposure

    return _recolour(img, exposure.equalize_adapthist(img.max(axis=-1), clip_limit=clip_limit), saturation)


def _hist_eq(img, saturation: float = 1.3):
    """Global histogram equalisation of the value channel + a saturation boost."""
    from skimage import exposure

    return _recolour(img, exposure.equalize_hist(img.max(axis=-1)), saturation)


def _sigmoid_contrast(img, gain: float = 8.0, cutoff: float = 0.45, gamma: float = 0.8):
    """Gamma brightening followed by a sigmoid contrast curve (scikit-image)."""
    from skimage import exposure

    return exposure.adjust_sigmoid(exposure.adjust_gamma(img, gamma), cutoff=cutoff, gain=gain)


ALGORITHMS = {"clahe_saturation": _clahe_saturation, "hist_eq": _hist_eq, "sigmoid_contrast": _sigmoid_contrast}


def enhance(img: np.ndarray, name: str, params: dict) -> np.ndarray:
    """I_D = A(img) with the configured algorithm and fixed parameters; float32 RGB in [0, 1]."""
    if name not in ALGORITHMS:
        raise ConfigError(f"config data.algorithm={name!r}: known algorithms are {', '.join(ALGORITHMS)}")
    try:
        out = ALGORITHMS[name](np.clip(img, 0, 1).astype(np.float64), **params)
    except TypeError as e:
        raise ConfigError(f"config data.algorithm_params={params} do not fit {name!r}: {e}") from e
    return np.clip(out, 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- the training stream


def example_fn(config):
    """rng -> {"x": input crop (tone-degraded if configured), "target": A(x), "natural": unpaired photo crop}."""
    dc = config.data
    params = dict(dc.algorithm_params)
    inputs = pipeline.make_source(dc.input, min_size=dc.crop)
    naturals = pipeline.make_source(dc.natural, min_size=dc.crop)

    def fn(rng):
        (x,) = pipeline.random_crop(rng, dc.crop, inputs[int(rng.integers(len(inputs)))]["image"])
        (x,) = pipeline.random_flip_rot(rng, x)
        if dc.degrade_inputs:
            x, _ = degrade.random_tone_curve(rng, x)
        (y,) = pipeline.random_crop(rng, dc.crop, naturals[int(rng.integers(len(naturals)))]["image"])
        (y,) = pipeline.random_flip_rot(rng, y)
        return {
            "x": x.astype(np.float32),
            "target": enhance(x, dc.algorithm, params),
            "natural": y.astype(np.float32),
        }

    return fn
