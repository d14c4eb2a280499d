"""Learned compression training data: random crops of photos."""

from __future__ import annotations

import numpy as np

from common.data import pipeline


def example_fn(config):
    """rng -> {"image": a random crop (flipped/rotated) of a training image}."""
    dc = config.data
    source = pipeline.make_source(dc.train, min_size=dc.crop)

    def fn(rng):
        (x,) = pipeline.random_crop(rng, dc.crop, source[int(rng.integers(len(source)))]["image"])
        (x,) = pipeline.random_flip_rot(rng, x)
        return {"image": np.ascontiguousarray(x, np.float32)}

    return fn
