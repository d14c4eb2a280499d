"""Tone enhancement training data: the fixed enhancement A (the colour target I_D) and the example stream.

I_D = A(x) is a classical enhancement with FIXED parameters (`ALGORITHMS`),
strong but possibly unnatural. Each example pairs a random crop x of an
input photo (tone-degraded when ``data.degrade_inputs``) and its target A(x)
with an unpaired crop of a natural photo for D.
"""

from __future__ import annotations

import numpy as np

from common import data, degrade
from common.errors import ConfigError

# ----------------------------------------------------------------------------- the fixed enhancement algorithms A


def _clahe_saturation(img, clip_limit: float = 0.02, saturation: float = 1.5):
    """CLAHE on the HSV value channel (scikit-image) + a saturation boost."""
    from skimage import color, exposure

    out = exposure.equalize_adapthist(img, clip_limit=clip_limit)
    hsv = color.rgb2hsv(out)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 1)
    return color.hsv2rgb(hsv)


def _hist_eq(img, saturation: float = 1.3):
    """Global histogram equalisation of the value channel + a saturation boost."""
    from skimage import color, exposure

    hsv = color.rgb2hsv(img)
    hsv[..., 2] = exposure.equalize_hist(hsv[..., 2])
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 1)
    return color.hsv2rgb(hsv)


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
    inputs = data.make_source(dc.input, min_size=dc.crop)
    naturals = data.make_source(dc.natural, min_size=dc.crop)

    def fn(rng):
        (x,) = data.random_crop(rng, dc.crop, inputs[int(rng.integers(len(inputs)))]["image"])
        (x,) = data.random_flip_rot(rng, x)
        if dc.degrade_inputs:
            x, _ = degrade.random_tone_curve(rng, x)
        (y,) = data.random_crop(rng, dc.crop, naturals[int(rng.integers(len(naturals)))]["image"])
        (y,) = data.random_flip_rot(rng, y)
        return {
            "x": x.astype(np.float32),
            "target": enhance(x, dc.algorithm, params),
            "natural": y.astype(np.float32),
        }

    return fn
