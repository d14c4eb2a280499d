"""SRFeat training data: random HR patches and their MATLAB-bicubic LR versions."""

from __future__ import annotations

import numpy as np

from common.data import pipeline, resize


def example_fn(config):
    """rng -> {"lr", "hr"}: a random HR patch (flips/rot90) and its MATLAB-bicubic down-sampling."""
    s = config.model.scale
    hr_size = config.data.lr_size * s
    source = pipeline.make_source(config.data.train, min_size=hr_size)

    def fn(rng):
        item = source[int(rng.integers(len(source)))]
        (hr,) = pipeline.random_crop(rng, hr_size, item["image"])
        (hr,) = pipeline.random_flip_rot(rng, hr)
        lr = resize.imresize(hr, 1.0 / s)
        if config.data.quantize_lr:
            lr = resize.quantize(lr)
        return {"lr": lr.astype(np.float32), "hr": hr.astype(np.float32)}

    return fn
